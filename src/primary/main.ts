// The primary's start-up: flags, config, the control socket, the listening
// sockets, signals, then the supervisor takes over. Everything after start-up
// happens in the supervisor's event loop. A primary started by `baton
// upgrade` inherits its sockets from the one it replaces (upgrade.ts) and
// takes the control socket, metrics and PID file over once it serves.
import { readFileSync, realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_ENV_FILE, describeConfig, LOG_FORMATS, loadConfig, redacted, shadowedKeys, type Config, type ConfigKey, type ListenAddress, type LoadResult } from '../config.js';
import { appDirOf, runtimeBase, runtimePath, workerEntryFor } from '../runtime-paths.js';
import type { ListenerInfo } from '../protocol.js';
import { createLogger, flushOutput, outputStyle, reassertNonblockingOutput, serializeError, setOutputBound, stderr, stdout, usesPrettyLogs } from '../log.js';
import { withTls } from '../tls-material.js';
import { HandOverDispatcher, type Dispatch, type RawConnection } from './dispatcher.js';
import { SharedAccept } from './shared-accept.js';
import { ChangeWatcher } from './change-watcher.js';
import { createBootPriority } from './boot-priority.js';
import { ControlSocketInUse, inheritedControlServer, startControlServer, type ControlHandler, type ControlServer } from './control-server.js';
import { ListenError, Listeners } from './listeners.js';
import { PrimaryMetrics, serveMetrics } from './metrics.js';
import { SystemdNotifier } from './notify.js';
import { EXIT, realClock, Supervisor, type ReloadOutcome, type Upgrader } from './supervisor.js';
import { TicketKeys } from './ticket-keys.js';
import { NewPrimary, OldPrimary, readInheritance, UPGRADE_PROTOCOL, type Inheritance } from './upgrade.js';
import { clusterSpawner } from './worker-handle.js';

export const USAGE = `Usage: node dist/primary.js [options] [APP]

APP: the app module to serve, the short form of --app (APP_MODULE).

Options (each overrides the environment and the .env file):
  --app PATH        APP_MODULE: the app module (relative to APP_DIR)
  --port N          PORT: TCP port to listen on (0 = a free port)
  --host ADDR       HOST: address to listen on
  --workers N       WORKERS: worker processes per generation
  --env-file PATH   ENV_FILE: the .env file to read (default ./.env)
  --watch           WATCH: reload when the .env file (and WATCH_PATHS) change
  -h, --help        show this help

Signals: HUP = rolling reload; TERM, INT, QUIT = ordered shutdown (twice = force);
USR2 = upgrade the primary itself (baton upgrade); TTIN/TTOU = one worker more/less.
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
      watch: { type: 'boolean' },
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
  if (values.watch) flags.WATCH = 'on';
  return { flags, envFile: values['env-file'], help: values.help ?? false };
}

/** LISTEN, or the single PORT/HOST listener. */
function addresses(c: Config): readonly ListenAddress[] {
  return c.listen ?? [{ kind: 'tcp', host: c.host, port: c.port }];
}

function describeListener(l: ListenerInfo): string {
  return l.kind === 'unix' ? `unix:${l.path}` : l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** This primary's own arguments (after `baton start`, or after dist/primary.js). */
function primaryArgs(argv: readonly string[]): string[] {
  const script = argv[1] ?? '';
  return /cli\.js$/.test(script) && argv[2] === 'start' ? argv.slice(3) : argv.slice(2);
}

/** How long an old primary waits for its successor to say it owns everything, before exiting anyway. */
const OWNER_ACK_MS = 5000;

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
  // Started by `baton upgrade`: what the old primary handed over.
  let inheritance: Inheritance | undefined;
  try {
    inheritance = readInheritance(environment);
  } catch (err) {
    process.stderr.write(`baton: cannot take over from the old primary: ${(err as Error).message}\n`);
    process.exit(EXIT.failed);
  }
  // APP_DIR (a symlink, perhaps) and the .env file in it are found anew at
  // every reload (runtime-paths.ts).
  const appDir = appDirOf(args.flags.APP_DIR ?? environment.APP_DIR, environment);
  const envFile = resolve(appDir, args.envFile ?? environment.ENV_FILE ?? DEFAULT_ENV_FILE);
  const ownWorkerEntry = fileURLToPath(new URL('../worker.js', import.meta.url));
  const load = (): LoadResult => {
    const result = loadConfig({ envFile, environment, flags: args.flags, cwd: appDir });
    if (!result.ok) return result;
    const given = result.loaded.config.appDir;
    let dir: string;
    try {
      dir = realpathSync(resolve(appDir, given || '.'));
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message;
      return { ok: false, envFile: result.loaded.envFile, errors: [{ key: 'APP_DIR', message: `APP_DIR ${given || appDir}: ${why}` }] };
    }
    const placed = { ...result, loaded: Object.freeze({ ...result.loaded, place: { dir, workerEntry: workerEntryFor(dir, ownWorkerEntry) } }) };
    // Certificate paths are taken against the app's directory too.
    return withTls(placed, dir);
  };
  const first = load();
  const format = first.ok ? first.loaded.config.logFormat : LOG_FORMATS.find((f) => f === environment.LOG_FORMAT) ?? 'auto';
  const log = createLogger({ role: 'primary', level: 'info', format, generation: () => supervisor?.generation ?? 0 });
  const old = inheritance ? new OldPrimary({ handover: () => takeOver('handover'), gone: () => oldGone() }) : undefined;

  // Resources to release on every exit path, newest first.
  const cleanups: (() => void)[] = [];
  const exit = (code: number): Promise<never> => {
    for (const cleanup of cleanups.reverse()) {
      try { cleanup(); } catch { /* exiting anyway */ }
    }
    return exitAfterFlush(code);
  };
  /** A start-up that cannot go on: said in the log, to the old primary of an upgrade, and in the exit code. */
  const fatal = async (code: number, reason: string, fields: Record<string, unknown> = {}): Promise<never> => {
    log.fatal(fields, reason);
    if (old) await old.send({ type: 'upgrade-failed', reason, exitCode: code });
    return exit(code);
  };

  log.info({ node: process.version, envFile, appDir, cwd: process.cwd(), ...(inheritance ? { upgradingFrom: inheritance.previous } : {}) }, 'starting up');
  if (!first.ok) {
    for (const e of first.errors) log.fatal({ key: e.key, envFile: first.envFile }, `invalid config: ${e.message}`);
    stderr().write(`baton: invalid config:\n${first.errors.map((e) => `  ${e.message}`).join('\n')}\n`);
    return fatal(EXIT.config, `invalid config: ${first.errors.map((e) => e.message).join('; ')}`);
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
  const c = loaded.config;
  // Fixed for the primary's life, in a place that outlives a release switch.
  const base = runtimeBase(envFile, appDir);
  const controlSocketPath = runtimePath(base, c.controlSocket);
  const pidFile = runtimePath(base, c.pidFile);

  // The control socket first: a second primary started in the same
  // directory is refused here, before it touches anything else.
  let handleControl: ControlHandler = () => ({ ok: false, kind: 'rejected', reason: 'starting up' });
  const onControlError = (err: Error): void => log.error({ err: serializeError(err) }, 'control socket error');
  let control: ControlServer;
  if (inheritance) {
    control = inheritedControlServer(inheritance.control.fd, inheritance.control.path, (req) => handleControl(req), onControlError);
  } else {
    try {
      control = await startControlServer(controlSocketPath, (req) => handleControl(req), onControlError);
    } catch (err) {
      if (err instanceof ControlSocketInUse) {
        stderr().write(`baton: refusing to start: ${err.message}\n`);
        return fatal(EXIT.listenFailed, `refusing to start: ${err.message}`, { controlSocket: controlSocketPath });
      }
      return fatal(EXIT.listenFailed, `cannot listen on control socket ${controlSocketPath}: ${(err as Error).message}`, { err: serializeError(err) });
    }
  }
  const controlPath = inheritance?.control.path ?? controlSocketPath;
  let handedOver = false;
  // An upgrading primary owns the control socket's file only once it took
  // over: one that fails before leaves it to the old primary, which serves on.
  let ownsControlFile = !inheritance;
  cleanups.push(() => {
    control.close();
    if (!handedOver && ownsControlFile) control.removeFile();
  });

  // The dispatch seam (dispatcher.ts): the primary hands connections over,
  // or the workers accept from the sockets themselves.
  let listeners!: Listeners;
  const dispatcher: Dispatch = c.dispatch === 'shared' ? new SharedAccept(() => listeners.handles, { polling: (i) => listeners.polling(i), adopt: (i, copy) => listeners.adopt(i, copy) }) : new HandOverDispatcher(c.sticky === 'ip');
  const onConnection = (conn: RawConnection, index: number): void => dispatcher.accept(conn, index);
  const onListenError = (err: Error): void => log.error({ err: serializeError(err) }, 'listener error');
  try {
    if (inheritance) listeners = Listeners.fromUpgrade(c.dispatch, inheritance.listeners, onConnection, onListenError);
    else {
      const activated = await Listeners.fromSystemd(c.dispatch, environment, onConnection, onListenError);
      if (activated) {
        listeners = activated;
        log.info({ listeners: activated.list.map((l) => ({ ...l.info, ...(l.name ? { name: l.name } : {}) })) },
          `socket activation: serving ${activated.list.length} socket(s) systemd passed (${activated.list.map((l) => l.name ?? describeListener(l.info)).join(', ')}); PORT, HOST and LISTEN are not used`);
      } else listeners = await Listeners.bind(c.dispatch, addresses(c), c.unixSocketMode, onConnection, onListenError);
    }
  } catch (err) {
    const code = err instanceof ListenError ? err.exitCode : EXIT.listenFailed;
    return fatal(code, (err as Error).message, { err: serializeError(err) });
  }
  cleanups.push(() => listeners.cleanup());
  const listenerInfo = listeners.info;
  if (c.sticky === 'ip' && listenerInfo.some((l) => l.kind === 'unix')) {
    return fatal(EXIT.config, 'STICKY=ip cannot route the connections of a Unix socket (a client there has no address): use TCP listeners only');
  }
  const firstTcp = listenerInfo.find((l): l is Extract<ListenerInfo, { kind: 'tcp' }> => l.kind === 'tcp');
  log.info({ ...(firstTcp ? { host: firstTcp.host, port: firstTcp.port } : {}), listeners: listenerInfo, dispatch: c.dispatch, ...(c.sticky === 'ip' ? { sticky: 'ip' } : {}) },
    inheritance ? 'listening (handed over: accepting once generation 1 serves)' : 'listening');

  const notifier = SystemdNotifier.fromEnvironment(environment, log, inheritance?.notifySocket);
  if (inheritance) notifier?.holdReady();
  const ticketKeys = new TicketKeys(inheritance ? Buffer.from((await old?.keys()) ?? '', 'base64') : undefined);
  cleanups.push(() => ticketKeys.stop());

  const metrics = c.metricsPort === undefined ? undefined : new PrimaryMetrics({
    generation: () => sup.generation,
    workers: () => sup.workers,
    waitingConnections: () => dispatcher.stats.waiting,
    dispatchedConnections: () => dispatcher.stats.dispatched,
    certificateExpiry: () => sup.tls?.validTo,
  });
  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  const startMetrics = async (where: { host: string; port: number } | { fd: number }): Promise<boolean> => {
    if (!metrics) return true;
    try {
      metricsServer = await serveMetrics(metrics, where, (err) => log.error({ err: serializeError(err) }, 'metrics error'));
      cleanups.push(() => metricsServer?.server.close());
      log.info(metricsServer.address, 'metrics at /metrics');
      return true;
    } catch (err) {
      await fatal(EXIT.listenFailed, `cannot listen on metrics ${c.metricsHost}:${c.metricsPort}: ${(err as Error).message}`, { err: serializeError(err) });
      return false;
    }
  };

  // The upgrade of this primary, once it runs (`baton upgrade`, SIGUSR2).
  let successor: NewPrimary | undefined;
  let successorTimer: NodeJS.Timeout | undefined;
  let ownerAcked: () => void = () => {};
  const owner = new Promise<void>((resolve) => { ownerAcked = resolve; });
  const upgrader: Upgrader = {
    start(node, generation) {
      successor = NewPrimary.launch(node, {
        listeners: listeners.list.map((l, i) => ({ handle: listeners.handles[i], info: l.info, source: l.source, ...(l.name ? { name: l.name } : {}) })),
        control: { handle: control.handle, path: controlPath },
        ...(metricsServer ? { metrics: { handle: (metricsServer.server as unknown as { _handle: unknown })._handle } } : {}),
        generation,
        ...(notifier ? { notifySocket: notifier.socket } : {}),
        ticketKeys: ticketKeys.base64,
        // The code on disk now: baton as the serving generation found it
        // (in APP_DIR when installed there: a release layout), in APP_DIR.
        entry: join(dirname(sup.place?.workerEntry ?? ownWorkerEntry), 'primary.js'),
        args: primaryArgs(process.argv),
        cwd: appDir,
      }, {
        serving: (pid, nodeVersion) => {
          // It serves: the boot deadline is over, whatever the hand-over waits for.
          clearTimeout(successorTimer);
          sup.enqueue({ type: 'upgrade-serving', pid, node: nodeVersion });
        },
        failed: (reason, exitCode) => { clearTimeout(successorTimer); sup.enqueue({ type: 'upgrade-failed', reason, exitCode }); },
        owner: () => ownerAcked(),
      });
      // The child reset O_NONBLOCK on the stdout it shares with this process.
      reassertNonblockingOutput();
      const ms = sup.config.readyTimeoutMs + 10_000;
      successorTimer = setTimeout(() => successor?.timeout(ms), ms);
    },
    abort() {
      clearTimeout(successorTimer);
      successor?.kill();
    },
    handOver() {
      clearTimeout(successorTimer);
      handedOver = true;
      listeners.stopAccepting();
      listeners.handOver();
      control.close();
      metricsServer?.server.close();
      successor?.handOver();
    },
  };

  const sup: Supervisor = new Supervisor({
    spawner: clusterSpawner(ownWorkerEntry),
    bootPriority: createBootPriority({ warn: (msg) => log.warn(msg) }),
    clock: realClock,
    loadConfig: load,
    environment,
    dispatcher,
    stopAccepting: () => listeners.stopAccepting(),
    stopAcceptingAfterSweep: (done) => listeners.stopAcceptingAfterSweep(done, dispatcher.stopWorkersAccepting?.bind(dispatcher)),
    address: () => firstTcp ? { host: firstTcp.host, port: firstTcp.port } : { host: '', port: 0 },
    listeners: () => listenerInfo,
    ticketKeys: () => ticketKeys.base64,
    log,
    exit: (code) => void (async () => {
      // Let systemd hear STOPPING=1 before the process is gone; after a
      // hand-over, let the new primary become the unit's main process first.
      await (notifier?.flushed() ?? Promise.resolve());
      if (sup.upgraded) await Promise.race([owner, new Promise((r) => setTimeout(r, OWNER_ACK_MS).unref())]);
      await exit(code);
    })(),
    logOutput: () => stdout().stats,
    output: outputStyle,
    upgrader,
    ...(inheritance ? { lastGeneration: inheritance.generation, upgradedFrom: inheritance.previous } : {}),
    observers: [metrics, notifier, {
      // The log level follows the serving config in the supervisor; the bound here.
      reloadEnded: (o: ReloadOutcome) => {
        if (!o.ok) return;
        setOutputBound(sup.config.logBufferBytes);
        rotateTicketKeys();
        watchAsConfigured();
      },
      ready: () => {
        if (inheritance) return void serving();
        // systemd's sockets are accepted from once a worker can serve (listeners.ts).
        try {
          listeners.start();
        } catch (err) {
          log.fatal({ err: serializeError(err) }, `cannot accept on the inherited sockets: ${(err as Error).message}`);
          sup.enqueue({ type: 'stop-now', source: 'listen failed' });
        }
      },
      startupFailed: (reason: string) => { if (old) void old.send({ type: 'upgrade-failed', reason, exitCode: EXIT.bootFailed }); },
    }].filter((o) => o !== undefined),
  }, loaded);
  supervisor = sup;
  const rotateTicketKeys = (): void => ticketKeys.schedule(sup.config.tlsTicketRotateMs, (keys) => {
    log.info({ everyMs: sup.config.tlsTicketRotateMs }, 'TLS session-ticket keys rotated');
    sup.broadcast({ type: 'ticket-keys', keys });
  });
  rotateTicketKeys();
  // WATCH follows the serving config: a reload may turn it on or off.
  const watcher = new ChangeWatcher(
    (what) => sup.enqueue({ type: 'reload', source: `watch: ${what.slice(0, 3).join(', ')}${what.length > 3 ? ` and ${what.length - 3} more` : ''}` }),
    (problem) => log.warn(problem),
  );
  cleanups.push(() => watcher.stop());
  const watchAsConfigured = (): void => {
    const cfg = sup.config;
    const dir = sup.place?.dir ?? appDir;
    const changed = watcher.configure({
      enabled: cfg.watch, envFile,
      paths: cfg.watchPaths.map((p) => resolve(dir, p)),
      ownFiles: [basename(controlSocketPath), basename(pidFile)],
    });
    if (changed && (cfg.watch || watching)) log.info({ envFile, paths: cfg.watchPaths }, cfg.watch ? 'watching for changes: they reload' : 'stopped watching for changes');
    watching = cfg.watch;
  };
  let watching = false;
  watchAsConfigured();

  // ---- a new primary of an upgrade ------------------------------------------
  let isServing = false;
  let tookOver = false;
  /** Generation 1 is ready: accept on the handed-over sockets and tell the old primary. */
  const serving = async (): Promise<void> => {
    listeners.start();
    isServing = true;
    log.info({ listeners: listenerInfo }, 'serving on the handed-over sockets: asking the old primary to hand over');
    await old?.send({ type: 'upgrade-serving', protocol: UPGRADE_PROTOCOL, pid: process.pid, node: process.version });
  };
  /** The old primary stopped accepting and answering (or died): this one owns everything now. */
  const takeOver = async (why: 'handover' | 'old primary gone'): Promise<void> => {
    if (tookOver) return;
    tookOver = true;
    ownsControlFile = true;
    listeners.takeOwnership();
    await control.start();
    if (inheritance?.metrics && !(await startMetrics({ fd: inheritance.metrics.fd }))) return;
    writePidFile(pidFile);
    cleanups.push(() => removePidFile(pidFile));
    notifier?.takeOver();
    await (notifier?.flushed() ?? Promise.resolve());
    log.info({ why, previous: inheritance?.previous }, 'upgrade complete: this primary owns the sockets, the control socket and the PID file');
    await old?.send({ type: 'upgrade-owner' });
    old?.release();
  };
  const oldGone = (): void => {
    if (tookOver) return;
    if (isServing) {
      log.warn('the old primary is gone before handing over: taking over alone');
      void takeOver('old primary gone');
      return;
    }
    // Never two half-primaries: one that does not serve yet gives up.
    log.error('the old primary is gone before this one served: giving up');
    sup.enqueue({ type: 'stop-now', source: 'old primary gone' });
  };

  if (!inheritance) {
    writePidFile(pidFile);
    cleanups.push(() => removePidFile(pidFile));
    if (c.metricsPort !== undefined && !(await startMetrics({ host: c.metricsHost, port: c.metricsPort }))) return;
  }

  handleControl = (req) => {
    switch (req.cmd) {
      case 'status':
        return { ok: true, cmd: 'status', status: sup.status(metricsServer?.address ?? null) };
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
      case 'upgrade':
        return new Promise((resolve) => sup.enqueue({
          type: 'upgrade', source: 'baton upgrade', ...(req.node ? { node: req.node } : {}),
          reply: (o) => resolve(o.ok ? { ok: true, cmd: 'upgrade', pid: o.pid, node: o.node } : { ok: false, kind: o.kind, reason: o.reason, exitCode: o.exitCode }),
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
  // nginx's and unicorn's convention: USR2 starts a new primary.
  process.on('SIGUSR2', () => sup.enqueue({ type: 'upgrade', source: 'SIGUSR2' }));
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
