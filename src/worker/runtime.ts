// A worker's life: hello → init (config snapshot) → load the app (a factory,
// or a drop-in app whose listen() is captured) → ready → serve sockets the
// primary hands over → drain → exit.
import type { Server } from 'node:http';
import type { Config } from '../config.js';
import { registerDrain } from '../drain-signal.js';
import { createLogger, flushOutput, serializeError, setOutputBound, type Logger } from '../log.js';
import { parsePrimaryMessage, PROTOCOL_VERSION, type ListenerInfo, type PrimaryMessage, type WorkerMessage } from '../protocol.js';
import { appName, loadApp, type AppContext, type AppHandle } from './app-host.js';
import { ConnectionTracker } from './drain.js';
import { ListenCapture } from './listen-capture.js';
import { STATS_INTERVAL_MS, WorkerMetrics } from './metrics.js';
import { createFactoryServer, ServerHost } from './server-host.js';
import { SharedAcceptor } from './shared-accept.js';
import { heldSignalHandlers, runHeldSignalHandlers } from './signals.js';
import { warmUp } from './warm-up.js';

type InitMessage = Extract<PrimaryMessage, { type: 'init' }>;

/** While draining with long-lived connections open, say how many every this often. */
const LONG_LIVED_REPORT_MS = 5000;
/** How long a failing worker waits for its reason to be written to the primary. */
const FATAL_SEND_MS = 1000;
/** The app's own SIGTERM handlers (run after the drain) get this long to exit the process themselves. */
const HELD_HANDLERS_MS = 2000;

function send(msg: WorkerMessage): void {
  process.send?.(msg);
}

/**
 * A message to the primary, with a raw handle if any (it goes as
 * 'net.Native': Node does not close this process's copy); `done` once
 * written, or with the error if there is no channel.
 */
function sendWith(msg: WorkerMessage, handle?: unknown, done?: (err: Error | null) => void): void {
  if (!process.connected || !process.send) return done?.(new Error('no channel to the primary'));
  const write = process.send as (m: WorkerMessage, h: unknown, o: object, cb: (err: Error | null) => void) => boolean;
  write.call(process, msg, handle, {}, (err) => done?.(err));
}

/**
 * DISPATCH=shared, at a cold start: the primary accepts on its own socket
 * until it holds a copy it need not poll; this worker's copy is one. Once
 * written, the message holds its own descriptor: this one closes (the
 * worker gets the socket to accept on when it serves).
 */
function sendListenerCopy(listener: number, handle: unknown): void {
  sendWith({ type: 'listener', listener }, handle, () => (handle as { close(): void }).close());
}

/** Reports a boot failure or crash to the primary, then exits. */
function die(err: unknown, log?: Logger): Promise<never> {
  const error = serializeError(err);
  log?.fatal({ err: error }, 'worker failed');
  if (!log) process.stderr.write(`baton worker ${process.pid}: ${error.stack ?? error.message}\n`);
  // Written before the exit: a message sent while a handle (DISPATCH=shared's
  // listener copy, a forward) waits for its acknowledgement is queued
  // behind it, and an exit now would lose the reason.
  const written = new Promise<void>((resolve) => {
    setTimeout(resolve, FATAL_SEND_MS).unref();
    sendWith({ type: 'fatal', error }, undefined, () => resolve());
  });
  return written.then(() => exitAfterFlush(1));
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

/**
 * How long before the primary's drain deadline (when it SIGKILLs) the worker
 * closes what is still open itself, so that it can say so and exit cleanly.
 */
export function closeMarginMs(drainTimeoutMs: number): number {
  // At least 250 ms: the worker's exit (app close hook, final stats, output
  // flush) must fit before the primary's SIGKILL on a busy machine too.
  return Math.min(1000, Math.max(250, Math.round(drainTimeoutMs / 10)));
}

/** Long-lived connections must all have been told before the worker's own deadline. */
export function longLivedSpreadMs(config: Config): number {
  return Math.max(0, Math.min(config.drainSpreadUpgradedMs, Math.floor((config.drainTimeoutMs - closeMarginMs(config.drainTimeoutMs)) * 0.8)));
}

export async function runWorker(): Promise<void> {
  if (!process.send) {
    process.stderr.write('baton: dist/worker.js is started by the primary; run node dist/primary.js\n');
    process.exit(2);
  }
  let log: Logger | undefined;
  process.on('uncaughtException', (err) => void die(err, log));
  process.on('unhandledRejection', (err) => void die(err, log));

  // DISPATCH=shared asks a first-generation worker for a copy of each
  // listening socket right after init (in the same read, often), while the
  // app still loads: answered from here, whenever it comes.
  process.on('message', (raw: unknown, handle: unknown) => {
    const msg = parsePrimaryMessage(raw);
    if (msg?.type === 'copy-listener' && handle) sendListenerCopy(msg.listener, handle);
  });
  send({ type: 'hello', protocol: PROTOCOL_VERSION });
  const init = await waitForInit();
  if (init.protocol !== PROTOCOL_VERSION) {
    return die(new Error(`primary speaks IPC protocol ${init.protocol}, this worker speaks ${PROTOCOL_VERSION}: restart the primary to run this code`));
  }
  const { config, generation, workerId, output, listeners } = init;
  setOutputBound(config.logBufferBytes);
  const logger = createLogger({ role: 'worker', level: config.logLevel, format: output.format, colors: output.colors, generation: () => generation });
  log = logger;
  // The app's own keys reach it in process.env too, as apps expect, and a
  // drop-in app finds the port it should listen on where it looks for it.
  for (const [k, v] of Object.entries(config.env)) process.env[k] = v;
  const tcp = listeners.find((l): l is Extract<ListenerInfo, { kind: 'tcp' }> => l.kind === 'tcp');
  if (tcp) {
    process.env.PORT = String(tcp.port);
    process.env.HOST = tcp.host;
  }
  process.env.BATON_GENERATION = String(generation);
  process.env.BATON_WORKER_ID = String(workerId);

  let host: ServerHost | undefined;
  const tracker = new ConnectionTracker({
    idleTimeoutMs: () => host?.keepAliveTimeoutMs() ?? config.keepAliveTimeoutMs,
    shutdownIdleMs: config.shutdownIdleCloseMs,
    spreadMs: config.drainSpreadMs,
    longLivedSpreadMs: longLivedSpreadMs(config),
  });
  registerDrain(tracker);

  // A drop-in app may call listen() while it is imported: capture first.
  const appClosing: (() => void)[] = [];
  let onAppClose: () => void = () => {};
  let captured!: (server: Server) => void;
  const capturedServer = new Promise<Server>((resolve) => { captured = resolve; });
  const capture = new ListenCapture(listeners, config.port, {
    captured: (server) => captured(server as Server),
    closeRequested: (_server, done) => {
      appClosing.push(done);
      onAppClose();
    },
    refused: (err) => void die(err, logger),
  });
  capture.install();

  const factory = createFactoryServer(config.keepAliveTimeoutMs);
  const ctx: AppContext = {
    config, generation, workerId, log: logger,
    server: factory.server, signal: tracker.signal, drainSignal: (req) => tracker.signalFor(req),
  };
  let app: AppHandle | undefined;
  let server: Server;
  try {
    const loaded = await loadApp(ctx, () => capture.target !== undefined);
    if (loaded.kind === 'factory') {
      app = loaded.handle;
      factory.setHandler(app.handler);
      server = factory.server;
    } else {
      if (!loaded.listened) {
        // Until the app listens it gets no traffic; one that never does fails
        // its boot at READY_TIMEOUT_MS, and the primary says why.
        send({ type: 'waiting-for-listen' });
        logger.debug(`${appName(config.appModule)} has not called listen() yet: waiting for it`);
      }
      server = await capturedServer;
    }
  } catch (err) {
    return die(err, logger);
  }
  // Requests are timed and counted only for a metrics endpoint that exists:
  // two clock reads per request measured ~8% more CPU per keep-alive
  // request (METRICS_PORT cannot change on a reload, so all workers agree).
  const metrics = new WorkerMetrics();
  let unready = false;
  try {
    host = new ServerHost(server, app ? 'factory' : 'captured', {
      listeners, tracker,
      gate: probes(tracker, init, () => unready, config.metricsPort === undefined ? undefined : metrics),
      tls: init.tls ? { cert: init.tls.cert, key: init.tls.key, minVersion: config.tlsMinVersion, http2: config.http2 } : undefined,
      ticketKeys: Buffer.from(init.ticketKeys, 'base64'),
      tlsFailed: () => metrics.tlsHandshakeFailed(),
      appHandler: app?.handler,
    });
  } catch (err) {
    return die(err, logger);
  }
  if (!app && heldSignalHandlers() > 0) logger.debug({ handlers: heldSignalHandlers() }, 'the app\'s own SIGINT/SIGTERM handlers are held: they run once this worker has drained');
  serve(host, { init, app, tracker, metrics, log: logger, appClosing, setAppClose: (fn) => { onAppClose = fn; }, setUnready: () => { unready = true; } });
}

/** Answers for HEALTH_PATH and READY_PATH, written by baton whatever the app. */
function probes(tracker: ConnectionTracker, init: InitMessage, isUnready: () => boolean, observer: WorkerMetrics | undefined) {
  const { generation, workerId, configVersion } = init;
  const json = (res: import('node:http').ServerResponse | import('node:http2').Http2ServerResponse, status: number, body: string): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  return {
    healthPath: init.config.healthPath,
    readyPath: init.config.readyPath,
    observer,
    health: (res: Parameters<typeof json>[0]) => {
      const { inFlight, sockets, served, upgraded } = tracker.stats;
      json(res, 200, JSON.stringify({
        status: tracker.draining ? 'draining' : 'ok',
        pid: process.pid, generation, workerId, configVersion,
        // Not counting this health request itself.
        inFlight: inFlight - 1, connections: sockets, upgraded, served,
      }));
    },
    // Not ready once the whole server is stopping; a drain for a reload or a
    // scale-down is not that (a load balancer would mark the instance down).
    readiness: (res: Parameters<typeof json>[0]) => {
      const unready = isUnready();
      json(res, unready ? 503 : 200, JSON.stringify({ ready: !unready, pid: process.pid, generation }));
    },
  };
}

interface Serving {
  readonly init: InitMessage;
  readonly app: AppHandle | undefined;
  readonly tracker: ConnectionTracker;
  readonly metrics: WorkerMetrics;
  readonly log: Logger;
  /** Callbacks of the app's own server.close(cb): they run once the worker has drained. */
  readonly appClosing: (() => void)[];
  setAppClose(fn: () => void): void;
  setUnready(): void;
}

function serve(host: ServerHost, s: Serving): void {
  const { init, app, tracker, metrics, log } = s;
  const { config } = init;
  // DISPATCH=shared: this worker accepts itself, and forwards what is above its share.
  const acceptor = config.dispatch === 'shared' ? new SharedAcceptor({
    open: () => tracker.open,
    draining: () => tracker.draining,
    keep: (conn, listener) => host.feed(host.socketFor(conn, listener), listener),
    send: sendWith,
    error: (err) => log.error({ err: serializeError(err) }, 'accept failed'),
  }) : undefined;
  if (acceptor) tracker.onOpenChange = () => acceptor.reporter.changed();
  const pushStats = async (): Promise<void> => {
    const snapshot = metrics.snapshot();
    const { served, inFlight, sockets, upgraded } = tracker.stats;
    // Resolves once written, so a process.exit() after it cannot cut it off.
    await new Promise<void>((resolve) => {
      sendWith({ type: 'stats', served, inFlight, connections: sockets, upgraded, metrics: snapshot }, undefined, () => resolve());
    });
  };
  // unref: the stats timer must never keep a drained worker alive.
  setInterval(() => void pushStats(), STATS_INTERVAL_MS).unref();

  let exiting = false;
  const exit = async (): Promise<void> => {
    if (exiting) return;
    exiting = true;
    try {
      await app?.close?.();
    } catch (err) {
      log.error({ err: serializeError(err) }, 'app close hook failed');
    }
    log.info({ served: tracker.stats.served }, 'worker drained, exiting');
    // The final counts, so the primary's counters lose nothing of this worker.
    await pushStats();
    await flushOutput();
    // A drop-in app's own shutdown code runs now, once: its server.close()
    // callbacks, then its SIGTERM handlers (which usually end in
    // process.exit()). They get a moment; then the worker exits anyway.
    for (const done of s.appClosing.splice(0)) done();
    s.setAppClose(() => { for (const done of s.appClosing.splice(0)) done(); });
    if (runHeldSignalHandlers() > 0) await new Promise((r) => setTimeout(r, HELD_HANDLERS_MS).unref());
    await exitAfterFlush(0);
  };

  let deadline: NodeJS.Timeout | undefined;
  let report: NodeJS.Timeout | undefined;
  // Shared accept queue: stop taking connections; what is queued stays for
  // the others. Once, and said to the primary: a reload completes, and a
  // shutdown sweeps, only when no worker can take a connection any more.
  let acceptStopped = false;
  const stopAccepting = (sweep: boolean): void => {
    if (!acceptor || acceptStopped) return;
    acceptStopped = true;
    const handles = acceptor.stop();
    const close = (): void => {
      for (const handle of handles) handle.close();
      send({ type: 'stopped-accepting' });
    };
    // After a sweep (as the primary does, listeners.ts): the last process
    // to close the socket resets what is queued on it. At a shutdown the
    // primary closes last, but not if this worker could not answer its
    // stop-accepting in time. What it accepts meanwhile is answered with
    // Connection: close.
    if (sweep && handles.length > 0) setImmediate(() => setImmediate(close));
    else close();
  };
  const drain = (reason: Parameters<ConnectionTracker['drain']>[0]): void => {
    stopAccepting(true);
    if (!tracker.drain(reason, () => { clearTimeout(deadline); clearInterval(report); void exit(); })) return;
    log.info({ reason, ...tracker.stats }, 'draining');
    // Shortly before the primary's deadline, close what is still open (a
    // WebSocket whose app never closes it), say so, and exit cleanly.
    clearTimeout(deadline);
    deadline = setTimeout(() => {
      const { longLived } = tracker.stats;
      const closed = tracker.closeAll();
      if (closed > 0) {
        log.warn({ closed, longLived, drainTimeoutMs: config.drainTimeoutMs }, `closed ${closed} connections still open at the drain deadline`);
        send({ type: 'forced-close', closed });
      }
    }, config.drainTimeoutMs - closeMarginMs(config.drainTimeoutMs));
    deadline.unref();
    report ??= setInterval(() => {
      const { longLived, sockets } = tracker.stats;
      if (longLived > 0) log.info({ longLived, connections: sockets }, `still draining: ${longLived} long-lived connections open`);
    }, LONG_LIVED_REPORT_MS);
    report.unref();
  };
  // The app closed its own server (not at our asking): this worker drains,
  // and the primary starts a replacement.
  s.setAppClose(() => {
    if (tracker.draining) return;
    log.info('the app closed its server: draining this worker');
    send({ type: 'closing' });
    drain('scale-down');
  });

  const onMessage = (raw: unknown, handle: unknown): void => {
    const msg = parsePrimaryMessage(raw);
    if (!msg) return;
    switch (msg.type) {
      case 'conn': {
        // Node's channel has acknowledged the handle already (the primary
        // closes its copy on that; worker-handle.ts).
        if (!handle) return;
        // A raw handle, as a listening socket's accept gives it.
        host.feed(host.socketFor(handle, msg.listener), msg.listener);
        return;
      }
      case 'accept':
        // DISPATCH=shared: accept from this listening socket until drained.
        // The primary sends it once it counts this worker as serving (ready).
        if (!handle || !acceptor) return;
        if (tracker.draining || acceptStopped) (handle as { close(): void }).close();
        else acceptor.start(handle, msg.listener);
        return;
      case 'peers':
        acceptor?.peers(msg.min);
        return;
      case 'stop-accepting':
        // A shutdown: the primary sweeps what is queued and closes the port last.
        stopAccepting(false);
        return;
      case 'unready':
        s.setUnready();
        return;
      case 'ticket-keys':
        host.setTicketKeys(Buffer.from(msg.keys, 'base64'));
        return;
      case 'drain':
        if (msg.reason === 'shutdown') s.setUnready();
        drain(msg.reason);
        return;
      case 'init':
      case 'copy-listener': // answered since the start (runWorker)
        return;
    }
  };
  process.on('message', onMessage);

  void (async () => {
    // Compile the HTTP path before clients arrive (see warm-up.ts).
    const warmStart = performance.now();
    try {
      await warmUp(host.tcpEntry, config.healthPath);
      log.debug({ ms: Math.round(performance.now() - warmStart) }, 'warmed up');
    } catch (err) {
      log.warn({ err: serializeError(err) }, 'warm-up failed; serving without it');
    }
    tracker.forgetServed();
    send({ type: 'ready', protocol: PROTOCOL_VERSION });
    log.debug({ workerId: init.workerId, configVersion: init.configVersion, app: host.kind }, 'worker ready');
  })();
}
