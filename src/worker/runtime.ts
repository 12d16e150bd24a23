// A worker's life: hello → init (config snapshot) → build the app → ready →
// serve sockets the primary hands over → drain → exit.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from '../config.js';
import { createLogger, flushOutput, serializeError, setOutputBound, type Logger } from '../log.js';
import { parsePrimaryMessage, PROTOCOL_VERSION, type PrimaryMessage, type WorkerMessage } from '../protocol.js';
import { loadApp, type AppHandle } from './app-host.js';
import { ConnectionTracker, TrackedResponse } from './drain.js';
import { STATS_INTERVAL_MS, WorkerMetrics } from './metrics.js';
import { warmUp } from './warm-up.js';

type InitMessage = Extract<PrimaryMessage, { type: 'init' }>;

function send(msg: WorkerMessage): void {
  process.send?.(msg);
}

/** Reports a boot failure or crash to the primary, then exits. */
function die(err: unknown, log?: Logger): Promise<never> {
  const error = serializeError(err);
  log?.fatal({ err: error }, 'worker failed');
  if (!log) process.stderr.write(`baton worker ${process.pid}: ${error.stack ?? error.message}\n`);
  send({ type: 'fatal', error });
  return exitAfterFlush(1);
}

/** Exits once this worker's log lines are out (or a stalled stdout had its chance). */
function exitAfterFlush(code: number): Promise<never> {
  return flushOutput().then(() => process.exit(code));
}

function waitForInit(): Promise<InitMessage> {
  return new Promise((resolve) => {
    const onMessage = (raw: unknown): void => {
      const msg = parsePrimaryMessage(raw);
      if (msg?.type !== 'init') return;
      process.off('message', onMessage);
      resolve(msg);
    };
    process.on('message', onMessage);
  });
}

export async function runWorker(): Promise<void> {
  if (!process.send) {
    process.stderr.write('baton: dist/worker.js is started by the primary; run node dist/primary.js\n');
    process.exit(2);
  }
  let log: Logger | undefined;
  process.on('uncaughtException', (err) => void die(err, log));
  process.on('unhandledRejection', (err) => void die(err, log));

  send({ type: 'hello', protocol: PROTOCOL_VERSION });
  const init = await waitForInit();
  if (init.protocol !== PROTOCOL_VERSION) {
    return die(new Error(`primary speaks IPC protocol ${init.protocol}, this worker speaks ${PROTOCOL_VERSION}: restart the primary to run this code`));
  }
  const { config, generation, workerId, configVersion, output } = init;
  setOutputBound(config.logBufferBytes);
  log = createLogger({ role: 'worker', level: config.logLevel, format: output.format, colors: output.colors, generation: () => generation });
  // The app's own keys reach it in process.env too, as apps expect.
  for (const [k, v] of Object.entries(config.env)) process.env[k] = v;

  let app: AppHandle;
  try {
    app = await loadApp({ config, generation, workerId, log });
  } catch (err) {
    return die(err, log);
  }
  await serve(app, { config, generation, workerId, configVersion }, log);
}

/** `url` is `path`, with or without a query string (no allocation: this runs per request). */
function isPath(url: string, path: string): boolean {
  return url.startsWith(path) && (url.length === path.length || url.charCodeAt(path.length) === 63 /* ? */);
}

interface Identity {
  readonly config: Config;
  readonly generation: number;
  readonly workerId: number;
  readonly configVersion: number;
}

async function serve(app: AppHandle, id: Identity, log: Logger): Promise<void> {
  const tracker = new ConnectionTracker(id.config.keepAliveTimeoutMs, id.config.drainSpreadMs);
  const metrics = new WorkerMetrics();
  const pushStats = async (): Promise<void> => {
    const snapshot = metrics.snapshot();
    const { served, inFlight, sockets } = tracker.stats;
    // Resolves once written, so a process.exit() after it cannot cut it off.
    await new Promise<void>((resolve) => {
      const msg: WorkerMessage = { type: 'stats', served, inFlight, connections: sockets, metrics: snapshot };
      if (!process.connected || !process.send) return resolve();
      process.send(msg, undefined, {}, () => resolve());
    });
  };
  // unref: the stats timer must never keep a drained worker alive.
  setInterval(() => void pushStats(), STATS_INTERVAL_MS).unref();
  const health = (res: ServerResponse): void => {
    const { inFlight, sockets, served } = tracker.stats;
    const body = JSON.stringify({
      status: tracker.draining ? 'draining' : 'ok',
      pid: process.pid, generation: id.generation, workerId: id.workerId, configVersion: id.configVersion,
      // Not counting this health request itself.
      inFlight: inFlight - 1, connections: sockets, served,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  // Not ready once the whole server is stopping; a drain for a reload or a
  // scale-down is not that (a load balancer would mark the instance down).
  let unready = false;
  const readiness = (res: ServerResponse): void => {
    const body = JSON.stringify({ ready: !unready, pid: process.pid, generation: id.generation });
    res.writeHead(unready ? 503 : 200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const { healthPath, readyPath } = id.config;
  // Requests are timed and counted only for a metrics endpoint that exists:
  // two clock reads per request measured ~8% more CPU per keep-alive
  // request (METRICS_PORT cannot change on a reload, so all workers agree).
  const observer = id.config.metricsPort === undefined ? undefined : metrics;
  const server = createServer({ ServerResponse: TrackedResponse }, (req: IncomingMessage, res: TrackedResponse) => {
    const url = req.url ?? '/';
    const probe = req.method !== 'GET' && req.method !== 'HEAD' ? undefined
      : isPath(url, healthPath) ? health : isPath(url, readyPath) ? readiness : undefined;
    if (probe) {
      tracker.beginRequest(req, res); // probes are not counted in the request metrics
      return probe(res);
    }
    tracker.beginRequest(req, res, observer);
    app.handler(req, res);
  });
  server.keepAliveTimeout = id.config.keepAliveTimeoutMs;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // A client that resets or sends garbage: answer 400 if we still can.
    if (err.code !== 'ECONNRESET' && socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  // The server never listens (the primary owns the port), but 'listening'
  // starts Node's connection bookkeeping: header/request timeouts depend on it.
  server.emit('listening');

  let exiting = false;
  const exit = async (): Promise<void> => {
    if (exiting) return;
    exiting = true;
    try {
      await app.close?.();
    } catch (err) {
      log.error({ err: serializeError(err) }, 'app close hook failed');
    }
    log.info({ served: tracker.stats.served }, 'worker drained, exiting');
    // The final counts, so the primary's counters lose nothing of this worker.
    await pushStats();
    await exitAfterFlush(0);
  };

  process.on('message', (raw: unknown, handle: unknown) => {
    const msg = parsePrimaryMessage(raw);
    if (!msg) return;
    switch (msg.type) {
      case 'conn': {
        // Acknowledge first: until then the primary keeps its copy of the
        // socket, to hand it to another worker if this one dies.
        send({ type: 'ack', id: msg.id });
        if (!handle) return;
        const socket = handle as Socket;
        tracker.addSocket(socket);
        server.emit('connection', socket);
        return;
      }
      case 'unready':
        unready = true;
        return;
      case 'drain':
        if (msg.reason === 'shutdown') unready = true;
        if (tracker.drain(msg.reason, () => void exit())) log.info({ reason: msg.reason, ...tracker.stats }, 'draining');
        return;
      case 'init':
        return;
    }
  });

  // Compile the HTTP path before clients arrive (see warm-up.ts).
  const warmStart = performance.now();
  try {
    await warmUp(server, id.config.healthPath);
    log.debug({ ms: Math.round(performance.now() - warmStart) }, 'warmed up');
  } catch (err) {
    log.warn({ err: serializeError(err) }, 'warm-up failed; serving without it');
  }
  tracker.forgetServed();
  send({ type: 'ready', protocol: PROTOCOL_VERSION });
  log.debug({ workerId: id.workerId, configVersion: id.configVersion }, 'worker ready');
}
