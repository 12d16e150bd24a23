// Per-worker request metrics. Each worker counts into its own prom-client
// registry and pushes it to the primary (with its counters) every second and
// once more just before a drained exit; the primary aggregates. Nothing is
// asked of a worker at scrape time, so a draining or dying worker can never
// stall a scrape.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Histogram, Registry } from 'prom-client';

export const STATS_INTERVAL_MS = 1000;

export class WorkerMetrics {
  private readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'baton_http_requests_total',
    help: 'HTTP requests answered by the app, by status code ("aborted": the client left first).',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: 'baton_http_request_duration_seconds',
    help: 'Time from request to the end of the response.',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  /** Call when a request reaches the app. */
  observe(_req: IncomingMessage, res: ServerResponse): void {
    const start = process.hrtime.bigint();
    res.once('close', () => {
      this.requests.inc({ code: res.writableFinished ? String(res.statusCode) : 'aborted' });
      this.duration.observe(Number(process.hrtime.bigint() - start) / 1e9);
    });
  }

  snapshot(): Promise<unknown[]> {
    return this.registry.getMetricsAsJSON();
  }
}
