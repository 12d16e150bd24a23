// The primary's start-up: flags, config, the listening socket, signals, then
// the supervisor takes over. Everything after start-up happens in the
// supervisor's event loop.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_ENV_FILE, describeConfig, LOG_FORMATS, loadConfig, redacted, shadowedKeys, type ConfigKey } from '../config.js';
import { createLogger, flushOutput, outputStyle, serializeError, setOutputBound, stderr, stdout, usesPrettyLogs } from '../log.js';
import { Dispatcher } from './dispatcher.js';
import { ControlSocketInUse, startControlServer, type ControlHandler } from './control-server.js';
import { listen, type Listener } from './listener.js';
import { PrimaryMetrics, serveMetrics } from './metrics.js';
import { SystemdNotifier } from './notify.js';
import { TicketKeys } from './ticket-keys.js';
import { withTls } from '../tls-material.js';
import { EXIT, realClock, Supervisor, type ReloadOutcome } from './supervisor.js';
import { clusterSpawner } from './worker-handle.js';

export const USAGE = `Usage: node dist/primary.js [options] [APP]

APP: the app module to serve, the short form of --app (APP_MODULE).

Options (each overrides the environment and the .env file):
  --app PATH        APP_MODULE: the app module (relative to APP_DIR)
  --port N          PORT: TCP port to listen on (0 = a free port)
  --host ADDR       HOST: address to listen on
  --workers N       WORKERS: worker processes per generation
  --env-file PATH   ENV_FILE: the .env file to read (default ./.env)
  -h, --help        show this help

Signals: HUP = rolling reload; TERM, INT, QUIT = ordered shutdown (twice = force).
`;

interface Args {
  readonly flags: Partial<Record<ConfigKey, string>>;
  readonly envFile: string | undefined;
  readonly help: boolean;
}

export function parsePrimaryArgs(argv: readonly string[]): Args {
  const { values, positionals } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: true,
    options: {
      app: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      workers: { type: 'string' },
      'env-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (positionals.length > 1) throw new Error(`one app module at most, got ${positionals.length}: ${positionals.join(' ')}`);
  if (positionals.length === 1 && values.app !== undefined) throw new Error('give the app either as --app or as an argument, not both');
  const flags: Partial<Record<ConfigKey, string>> = {};
  const app = values.app ?? positionals[0];
  if (app !== undefined) flags.APP_MODULE = app;
  if (values.port !== undefined) flags.PORT = values.port;
  if (values.host !== undefined) flags.HOST = values.host;
  if (values.workers !== undefined) flags.WORKERS = values.workers;
  return { flags, envFile: values['env-file'], help: values.help ?? false };
}

export async function runPrimary(argv: readonly string[]): Promise<void> {
  let args: Args;
  try {
    args = parsePrimaryArgs(argv);
  } catch (err) {
    process.stderr.write(`baton: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(EXIT.usage);
  }
  if (args.help) {
    process.stdout.write(USAGE);
    process.exit(EXIT.ok);
  }

  let supervisor: Supervisor | undefined;
  const environment = process.env;
  const envFile = args.envFile ?? environment.ENV_FILE ?? DEFAULT_ENV_FILE;
  const load = () => withTls(loadConfig({ envFile, environment, flags: args.flags }), process.cwd());
  const first = load();
  const format = first.ok ? first.loaded.config.logFormat : LOG_FORMATS.find((f) => f === environment.LOG_FORMAT) ?? 'auto';
  const log = createLogger({ role: 'primary', level: 'info', format, generation: () => supervisor?.generation ?? 0 });

  log.info({ node: process.version, envFile, cwd: process.cwd() }, 'starting up');
  if (!first.ok) {
    for (const e of first.errors) log.fatal({ key: e.key, envFile: first.envFile }, `invalid config: ${e.message}`);
    stderr().write(`baton: invalid config:\n${first.errors.map((e) => `  ${e.message}`).join('\n')}\n`);
    return exitAfterFlush(EXIT.config);
  }
  const loaded = first.loaded;
  log.level = loaded.config.logLevel;
  setOutputBound(loaded.config.logBufferBytes);
  if (!loaded.fileFound) log.info({ envFile: loaded.envFile }, 'no .env file: using defaults and the environment');
  // A person reads pretty logs: the keys that differ from their defaults.
  // Machines get the whole snapshot.
  if (usesPrettyLogs(format)) log.info(`config loaded: ${describeConfig(loaded)}`);
  else log.info({ config: redacted(loaded.config), sources: loaded.sources }, 'config loaded');
  for (const warning of loaded.warnings ?? []) log.warn(warning);
  if (loaded.tls) log.info({ certFile: loaded.tls.certFile, subject: loaded.tls.subject, serialNumber: loaded.tls.serialNumber, validTo: loaded.tls.validTo, http2: loaded.config.http2 }, 'TLS on every TCP listener');
  const shadowed = shadowedKeys(loaded, environment);
  if (shadowed.length > 0) log.info({ keys: shadowed }, 'these .env keys are overridden by the environment or flags');

  // Resources to release on every exit path, newest first.
  const cleanups: (() => void)[] = [];
  const exit = (code: number): Promise<never> => {
    for (const cleanup of cleanups.reverse()) {
      try { cleanup(); } catch { /* exiting anyway */ }
    }
    return exitAfterFlush(code);
  };
  const bindFailed = (what: string, err: unknown): Promise<never> => {
    const e = serializeError(err);
    log.fatal({ err: e }, `cannot listen on ${what}: ${e.message}`);
    return exit(EXIT.listenFailed);
  };
  const c = loaded.config;

  // The control socket first: a second primary started in the same
  // directory is refused here, before it touches anything else.
  let handleControl: ControlHandler = () => ({ ok: false, kind: 'rejected', reason: 'starting up' });
  try {
    const control = await startControlServer(c.controlSocket, (req) => handleControl(req),
      (err) => log.error({ err: serializeError(err) }, 'control socket error'));
    cleanups.push(() => control.close());
  } catch (err) {
    if (err instanceof ControlSocketInUse) {
      log.fatal({ controlSocket: c.controlSocket }, `refusing to start: ${err.message}`);
      stderr().write(`baton: refusing to start: ${err.message}\n`);
      return exit(EXIT.listenFailed);
    }
    return bindFailed(`control socket ${c.controlSocket}`, err);
  }

  const dispatcher = new Dispatcher();
  let listener!: Listener;
  try {
    listener = await listen(c.host, c.port, (s) => dispatcher.accept(s, 0),
      (err) => log.error({ err: serializeError(err) }, 'listener error'));
  } catch (err) {
    return bindFailed(`${c.host}:${c.port}`, err);
  }

  log.info(listener.address, 'listening');
  writePidFile(c.pidFile);
  cleanups.push(() => removePidFile(c.pidFile));

  const metrics = c.metricsPort === undefined ? undefined : new PrimaryMetrics({
    generation: () => sup.generation,
    workers: () => sup.workers,
    waitingConnections: () => dispatcher.stats.waiting,
    certificateExpiry: () => sup.tls?.validTo,
  });
  const notifier = SystemdNotifier.fromEnvironment(environment, log);
  const ticketKeys = new TicketKeys();
  cleanups.push(() => ticketKeys.stop());
  const sup: Supervisor = new Supervisor({
    spawner: clusterSpawner(fileURLToPath(new URL('../worker.js', import.meta.url))),
    clock: realClock,
    loadConfig: load,
    environment,
    dispatcher,
    stopAccepting: () => listener.close(),
    address: () => listener.address,
    listeners: () => [{ kind: 'tcp', ...listener.address }],
    ticketKeys: () => ticketKeys.base64,
    log,
    // Let systemd hear STOPPING=1 before the process is gone.
    exit: (code) => void (notifier?.flushed() ?? Promise.resolve()).then(() => exit(code)),
    logOutput: () => stdout().stats,
    output: outputStyle,
    observers: [metrics, notifier, {
      // The log level follows the serving config in the supervisor; the bound here.
      reloadEnded: (o: ReloadOutcome) => {
        if (!o.ok) return;
        setOutputBound(sup.config.logBufferBytes);
        rotateTicketKeys();
      },
    }].filter((o) => o !== undefined),
  }, loaded);
  supervisor = sup;
  const rotateTicketKeys = (): void => ticketKeys.schedule(sup.config.tlsTicketRotateMs, (keys) => {
    log.info({ everyMs: sup.config.tlsTicketRotateMs }, 'TLS session-ticket keys rotated');
    sup.broadcast({ type: 'ticket-keys', keys });
  });
  rotateTicketKeys();

  let metricsAddress: { host: string; port: number } | null = null;
  if (metrics) {
    try {
      const served = await serveMetrics(metrics, c.metricsHost, c.metricsPort ?? 0, (err) => log.error({ err: serializeError(err) }, 'metrics error'));
      metricsAddress = served.address;
      cleanups.push(() => served.server.close());
      log.info(metricsAddress, 'metrics at /metrics');
    } catch (err) {
      return bindFailed(`metrics ${c.metricsHost}:${c.metricsPort}`, err);
    }
  }

  handleControl = (req) => {
    switch (req.cmd) {
      case 'status':
        return { ok: true, cmd: 'status', status: sup.status(metricsAddress) };
      case 'stop':
        sup.enqueue({ type: 'stop', source: 'baton stop' });
        return { ok: true, cmd: 'stop', pid: process.pid };
      case 'reload':
        return new Promise((resolve) => sup.enqueue({
          type: 'reload', source: 'baton reload',
          reply: (o) => resolve(o.ok ? { ok: true, cmd: 'reload', generation: o.generation, durationMs: o.durationMs } : { ok: false, kind: o.kind, reason: o.reason, ...(o.errors ? { errors: o.errors } : {}) }),
        }));
      case 'scale':
        return new Promise((resolve) => sup.enqueue({
          type: 'scale', source: 'baton scale', to: req.workers,
          reply: (o) => resolve(o.ok ? { ok: true, cmd: 'scale', workers: o.workers } : { ok: false, kind: 'rejected', reason: o.reason }),
        }));
    }
  };

  // Handlers only enqueue: the supervisor's loop decides, logs and acts.
  process.on('SIGHUP', () => sup.enqueue({ type: 'reload', source: 'SIGHUP' }));
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) {
    process.on(signal, () => sup.enqueue({ type: 'stop', source: signal }));
  }
  // gunicorn's convention: TTIN adds a worker, TTOU removes one.
  process.on('SIGTTIN', () => sup.enqueue({ type: 'scale', source: 'SIGTTIN', delta: +1 }));
  process.on('SIGTTOU', () => sup.enqueue({ type: 'scale', source: 'SIGTTOU', delta: -1 }));
  process.on('uncaughtException', (err) => {
    log.fatal({ err: serializeError(err) }, 'primary crashed');
    // Workers notice the closed IPC channel and exit on their own.
    void exit(EXIT.failed);
  });
  sup.start();
}

/** Exits once stdout and stderr took what is queued, or after EXIT_FLUSH_MS (a stalled reader). */
function exitAfterFlush(code: number): Promise<never> {
  return flushOutput().then(() => process.exit(code));
}

function writePidFile(path: string): void {
  writeFileSync(path, `${process.pid}\n`);
}

/** Removes the PID file if it is still ours (a newer primary may have replaced it). */
function removePidFile(path: string): void {
  if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
}
