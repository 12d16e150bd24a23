// Prometheus metrics served by the primary. Request metrics come from the
// workers' pushed registries: live workers' latest snapshots plus the folded
// final counts of every worker that has exited, so counters only ever grow
// (a reload is not a counter reset) and a scrape never waits on a worker.
import { createServer, type Server } from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { ReloadOutcome, SupervisorObserver } from './supervisor.js';
import type { WorkerHandle } from './worker-handle.js';

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export interface MetricsSource {
  generation(): number;
  workers(): readonly WorkerHandle[];
  waitingConnections(): number;
  /** Connections the primary handed to a worker since start. */
  dispatchedConnections(): number;
  /** When the serving certificate expires (TLS on), for an alert well before it does. */
  certificateExpiry(): Date | undefined;
}

export class PrimaryMetrics implements SupervisorObserver {
  private readonly registry = new Registry();
  private readonly live = new Map<WorkerHandle, MetricsJson>();
  /** Sum of the final snapshots of every exited worker. */
  private retired: MetricsJson = [];
  /** Folds run one after another, so none is lost. */
  private folding: Promise<void> = Promise.resolve();
  private readonly reloads = new Counter({ name: 'baton_reloads_total', help: 'Reloads by outcome: success, failed (rolled back), rejected (invalid config), abandoned.', labelNames: ['outcome'] as const, registers: [this.registry] });
  private readonly reloadDuration = new Histogram({ name: 'baton_reload_duration_seconds', help: 'Successful reloads: from the request to reload complete (the new generation serving, and with DISPATCH=shared no old worker accepting).', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] });
  private readonly restarts = new Counter({ name: 'baton_worker_restarts_total', help: 'Workers respawned after an unplanned exit.', registers: [this.registry] });

  constructor(source: MetricsSource) {
    new Gauge({ name: 'baton_generation', help: 'The serving generation.', registers: [this.registry], collect() { this.set(source.generation()); } });
    new Gauge({
      name: 'baton_workers', help: 'Live workers by state.', labelNames: ['state'] as const, registers: [this.registry],
      collect() {
        const counts = { starting: 0, ready: 0, draining: 0 };
        for (const w of source.workers()) {
          if (w.state === 'booting') counts.starting++;
          else if (w.state !== 'exited') counts[w.state]++;
        }
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new Gauge({ name: 'baton_http_requests_in_flight', help: 'Requests in flight in all workers (as of their last report, at most 1 s old).', registers: [this.registry], collect() { this.set(source.workers().reduce((n, w) => n + w.stats.inFlight, 0)); } });
    new Gauge({
      name: 'baton_connections_upgraded', help: 'Upgraded (WebSocket) connections each live worker holds (as of its last report).', labelNames: ['worker', 'generation'] as const, registers: [this.registry],
      collect() {
        this.reset();
        for (const w of source.workers()) this.set({ worker: String(w.id), generation: String(w.gen.id) }, w.stats.upgraded);
      },
    });
    new Gauge({
      name: 'baton_tls_certificate_expiry_seconds', help: 'When the serving TLS certificate expires (Unix time, seconds); absent without TLS.', registers: [this.registry],
      collect() {
        this.reset();
        const at = source.certificateExpiry();
        if (at) this.set(Math.floor(at.getTime() / 1000));
      },
    });
    new Counter({ name: 'baton_connections_dispatched_total', help: 'Connections the primary handed to a worker: every one with DISPATCH=primary; with DISPATCH=shared, those a worker accepted above its share and forwarded for a less-loaded one.', registers: [this.registry], collect() { this.reset(); this.inc(source.dispatchedConnections()); } });
    new Gauge({ name: 'baton_connections_waiting', help: 'Accepted connections waiting in the primary for a worker to take them.', registers: [this.registry], collect() { this.set(source.waitingConnections()); } });
  }

  reloadEnded(outcome: ReloadOutcome): void {
    this.reloads.inc({ outcome: outcome.ok ? 'success' : outcome.kind });
    if (outcome.ok) this.reloadDuration.observe(outcome.durationMs / 1000);
  }

  workerRespawned(): void {
    this.restarts.inc();
  }

  workerMetrics(worker: WorkerHandle, metrics: readonly unknown[]): void {
    this.live.set(worker, metrics as MetricsJson);
  }

  workerExited(worker: WorkerHandle): void {
    const last = this.live.get(worker);
    if (!last) return;
    this.folding = this.folding.then(async () => {
      this.retired = await AggregatorRegistry.aggregate([this.retired, last]).getMetricsAsJSON() as MetricsJson;
      this.live.delete(worker);
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    await this.folding;
    const requests = AggregatorRegistry.aggregate([this.retired, ...this.live.values()]);
    const merged = Registry.merge([requests as Registry, this.registry]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }
}

/** GET /metrics on host:port (or an inherited descriptor); resolves with the bound address. */
export function serveMetrics(metrics: PrimaryMetrics, where: { host: string; port: number } | { fd: number }, onError: (err: Error) => void): Promise<{ server: Server; address: { host: string; port: number } }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?', 1)[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    metrics.render().then(({ contentType, body }) => {
      res.writeHead(200, { 'content-type': contentType }).end(body);
    }, (err: Error) => {
      onError(err);
      res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => {
      server.off('error', reject);
      server.on('error', onError);
      const addr = server.address();
      resolve({ server, address: typeof addr === 'object' && addr ? { host: addr.address, port: addr.port } : { host: '', port: 0 } });
    });
  });
}
