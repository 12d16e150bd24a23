// The primary's lifecycle, as one state machine fed by one queue.
//
// Signal handlers, worker messages, worker exits and timers only enqueue
// events; `handle` takes them one at a time and is the only place the state
// changes. Design statement: at most one generation is booting at a time, and
// the serving generation is retired only once every worker of its successor
// is ready.
//
//   state      | reload            | upgrade           | stop                 | unplanned worker exit
//   starting   | remember one      | refuse            | abort boot, exit 0   | exit 3 with its error
//   running    | start reload      | start upgrade     | drain all, exit 0    | respawn with backoff
//   reloading  | remember one      | refuse            | abandon, drain all   | new gen: roll back; old: respawn
//   (switching)| remember one      | refuse            | drain all            | respawn
//   upgrading  | refuse            | refuse            | kill new primary,    | respawn with backoff
//              |                   |                   |   drain all          |
//   stopping   | ignore, log       | refuse            | 2nd = stop-now       | count it down
//
// `switching` is the end of a reload with DISPATCH=shared: the new
// generation serves, and the reload completes once the old one's workers
// have stopped accepting from the shared socket.
//
// An upgrade ends in `stopping` too once the new primary serves: this one
// drains its workers as on a reload (no readiness 503, no shutdown delay)
// and exits 0, leaving the shared sockets and files to its successor. With
// DISPATCH=shared it hands over the control socket (and answers `baton
// upgrade`) once its workers have stopped accepting, as a reload completes.
import { availableParallelism } from 'node:os';
import { diffConfig, shadowedKeys, type ConfigError, type LoadedConfig, type LoadResult, type LogFormat } from '../config.js';
import type { Logger } from '../log.js';
import type { ReloadRecord, StatusSnapshot, WorkerStatus } from '../control.js';
import { parseWorkerMessage, PROTOCOL_VERSION, type DrainReason, type ListenerInfo, type PrimaryMessage, type WorkerMessage } from '../protocol.js';
import { Backoff } from './backoff.js';
import type { BootPriority } from './boot-priority.js';
import type { Dispatch } from './dispatcher.js';
import { Generation } from './generation.js';
import { WorkerHandle, type Spawner } from './worker-handle.js';

export type State = 'starting' | 'running' | 'reloading' | 'upgrading' | 'stopping' | 'stopped';

export type ReloadOutcome =
  | { readonly ok: true; readonly generation: number; readonly durationMs: number }
  | { readonly ok: false; readonly kind: 'rejected' | 'failed' | 'abandoned'; readonly reason: string; readonly errors?: readonly ConfigError[] };

export type ScaleOutcome = { readonly ok: true; readonly workers: number } | { readonly ok: false; readonly reason: string };

export type UpgradeOutcome =
  | { readonly ok: true; readonly pid: number; readonly node: string }
  /** `exitCode`: what `baton upgrade` exits with (78: the new primary's config is invalid). */
  | { readonly ok: false; readonly kind: 'rejected' | 'failed' | 'abandoned'; readonly reason: string; readonly exitCode: number };

/** Starting a new primary (upgrade.ts), behind a seam. */
export interface Upgrader {
  /** Starts the new primary; its progress comes back as 'upgrade-serving' / 'upgrade-failed' events. */
  start(node: string, generation: number): void;
  /** Rolls back: kills the new primary. */
  abort(): void;
  /** It serves: stop accepting and answering, and let it take over. */
  handOver(): void;
}

/** Commands come from signals and the control socket. */
export type Command =
  | { readonly type: 'reload'; readonly source: string; readonly reply?: (outcome: ReloadOutcome) => void }
  | { readonly type: 'stop'; readonly source: string }
  | { readonly type: 'stop-now'; readonly source: string }
  /** Set the worker count (`to`) or change it by `delta`; never below 1. */
  | { readonly type: 'scale'; readonly source: string; readonly to?: number; readonly delta?: number; readonly reply?: (outcome: ScaleOutcome) => void }
  /** Replace this primary by a new one started with `node` (default: this Node). */
  | { readonly type: 'upgrade'; readonly source: string; readonly node?: string; readonly reply?: (outcome: UpgradeOutcome) => void };

/** What metrics and the service manager want to hear about; all optional. */
export interface SupervisorObserver {
  /** The first generation serves. */
  ready?(generation: number): void;
  /** A reload begins (before its config is read: it may still be rejected). */
  reloadStarted?(): void;
  reloadEnded?(outcome: ReloadOutcome): void;
  stopping?(): void;
  workerRespawned?(): void;
  workerMetrics?(worker: WorkerHandle, metrics: readonly unknown[]): void;
  workerExited?(worker: WorkerHandle): void;
  /** The first generation could not boot (before the exit). */
  startupFailed?(reason: string): void;
}

type Event =
  | Command
  | { readonly type: 'worker-message'; readonly worker: WorkerHandle; readonly msg: WorkerMessage }
  | { readonly type: 'worker-exit'; readonly worker: WorkerHandle; readonly code: number | null; readonly signal: string | null }
  | { readonly type: 'ready-deadline'; readonly worker: WorkerHandle }
  | { readonly type: 'drain-deadline'; readonly worker: WorkerHandle }
  | { readonly type: 'respawn'; readonly generation: number }
  | { readonly type: 'shutdown-delay-over' }
  | { readonly type: 'accept-swept'; readonly accepted: number; readonly ms: number }
  | { readonly type: 'old-stopped-accepting'; readonly generation: number; readonly late: readonly WorkerHandle[] }
  | { readonly type: 'force-exit' }
  | { readonly type: 'upgrade-serving'; readonly pid: number; readonly node: string }
  | { readonly type: 'upgrade-failed'; readonly reason: string; readonly exitCode: number };

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

export interface SupervisorDeps {
  readonly spawner: Spawner;
  readonly clock: Clock;
  /** Re-reads and validates the config (the .env file). */
  readonly loadConfig: () => LoadResult;
  readonly environment: Readonly<Record<string, string | undefined>>;
  readonly dispatcher: Dispatch;
  /** Closes the listening sockets. */
  readonly stopAccepting: () => void;
  /** Closes them after accepting what is queued on them (a graceful shutdown); then `done`. */
  readonly stopAcceptingAfterSweep?: (done: (sweep: { readonly accepted: number; readonly ms: number }) => void) => void;
  readonly address: () => { host: string; port: number };
  /** Every address the primary listens on (workers index into it). */
  readonly listeners: () => readonly ListenerInfo[];
  /** The current TLS session-ticket keys (base64), for new workers. */
  readonly ticketKeys: () => string;
  readonly log: Logger;
  readonly exit: (code: number) => void;
  readonly observers?: readonly SupervisorObserver[];
  /** How workers format their log lines (the primary's stdout decides; theirs is a pipe to it). */
  readonly output: (format: LogFormat) => { readonly format: 'json' | 'pretty'; readonly colors: boolean };
  /** The primary's log output, for status. */
  readonly logOutput: () => StatusSnapshot['logOutput'];
  /** How many workers of a reload's generation boot at once (default: half the CPUs, at least 1). */
  readonly bootConcurrency?: number;
  /** Lowers a reload's booting workers' CPU priority (BOOT_NICE) and raises it back once they are ready. */
  readonly bootPriority?: BootPriority;
  /** Starts a new primary on `baton upgrade`; without it upgrades are refused. */
  readonly upgrader?: Upgrader;
  /** Generations are numbered after this one (a new primary goes on from its predecessor's). */
  readonly lastGeneration?: number;
  /** The primary this one replaced, for status. */
  readonly upgradedFrom?: { readonly pid: number; readonly node: string };
}

/** Exit codes, as documented in the README. */
export const EXIT = { ok: 0, failed: 1, usage: 2, bootFailed: 3, listenFailed: 4, config: 78 } as const;

/** A worker that stayed up this long resets the respawn backoff. */
const STABLE_MS = 10_000;
/** After a forced stop, exit even if some exit event never comes. */
const FORCE_EXIT_MS = 5_000;

export class Supervisor {
  private state: State = 'starting';
  private current: Generation | undefined;
  private next: Generation | undefined;
  /** Serving, in `reloading`: the reload completes once its predecessor's workers stopped accepting (DISPATCH=shared). */
  private switching: Generation | undefined;
  private readonly live = new Set<WorkerHandle>();
  private readonly retiring = new Map<number, { since: number; remaining: number }>();
  private readonly queue: Event[] = [];
  private scheduled = false;
  private generationSeq = 0;
  private workerSeq = 0;
  private configVersion = 1;
  private loaded: LoadedConfig;
  /** One reload remembered while another runs; its waiters share its outcome. */
  private queuedReload: { sources: string[]; replies: ((o: ReloadOutcome) => void)[] } | undefined;
  private activeReplies: ((o: ReloadOutcome) => void)[] = [];
  private exitCode: number = EXIT.ok;
  private stopStartedAt = 0;
  /** Stopping, but still serving while load balancers notice (SHUTDOWN_DELAY_MS). */
  private delayingStop = false;
  /** A graceful shutdown is accepting what is queued before the port closes. */
  private sweeping = false;
  private readonly backoff = new Backoff(100, 10_000);
  /** A count set by scaling; holds across reloads until WORKERS changes. */
  private scaleOverride: number | undefined;
  private lastReload: ReloadRecord | null = null;
  private upgradeReply: ((o: UpgradeOutcome) => void) | undefined;
  /** The new primary serves; it gets the control socket once this one's workers stopped accepting. */
  private pendingHandOver: { readonly pid: number; readonly node: string } | undefined;
  /** Draining because a new primary took over (not a shutdown). */
  private handedOver = false;
  private readonly startedAt: number;

  private readonly bootConcurrency: number;

  constructor(private readonly deps: SupervisorDeps, initial: LoadedConfig) {
    this.loaded = initial;
    this.generationSeq = deps.lastGeneration ?? 0;
    this.bootConcurrency = deps.bootConcurrency ?? Math.max(1, Math.floor(availableParallelism() / 2));
    this.startedAt = deps.clock.now();
  }

  get currentState(): State {
    return this.state;
  }

  /** Serving, and keeping its generation whole (respawns). */
  private get serving(): boolean {
    return this.state === 'running' || this.state === 'reloading' || this.state === 'upgrading';
  }

  /** A new primary took over: shared sockets and files are its now. */
  get upgraded(): boolean {
    return this.handedOver;
  }

  /** Every live worker, of any generation. */
  get workers(): readonly WorkerHandle[] {
    return [...this.live];
  }

  /** The serving config. */
  get config(): LoadedConfig['config'] {
    return this.loaded.config;
  }

  /** Where the serving generation runs from, and its worker code. */
  get place(): LoadedConfig['place'] {
    return this.loaded.place;
  }

  /** The serving generation (or the booting first one), for log lines. */
  get generation(): number {
    return this.current?.id ?? this.next?.id ?? 0;
  }

  start(): void {
    this.next = this.newGeneration(this.loaded, this.configVersion, this.startedAt);
    this.fill(this.next);
  }

  /** The only way in: safe to call from a signal handler (it does nothing else). */
  enqueue(event: Command | Event): void {
    this.queue.push(event);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.run());
  }

  private run(): void {
    this.scheduled = false;
    for (let ev = this.queue.shift(); ev; ev = this.queue.shift()) this.handle(ev);
  }

  private handle(ev: Event): void {
    const log = this.deps.log;
    switch (ev.type) {
      case 'reload':
        log.info({ source: ev.source, state: this.state }, 'reload requested');
        return this.onReload(ev.source, ev.reply);
      case 'stop':
        log.info({ source: ev.source, state: this.state }, 'stop requested');
        if (this.state === 'stopping') return this.stopNow(`second ${ev.source}`);
        return this.beginStop(ev.source);
      case 'stop-now':
        return this.stopNow(ev.source);
      case 'scale':
        return this.onScale(ev);
      case 'upgrade':
        log.info({ source: ev.source, state: this.state, node: ev.node }, 'upgrade requested');
        return this.onUpgrade(ev);
      case 'upgrade-serving':
        return this.onUpgradeServing(ev.pid, ev.node);
      case 'upgrade-failed':
        return this.onUpgradeFailed(ev.reason, ev.exitCode);
      case 'worker-message':
        return this.onWorkerMessage(ev.worker, ev.msg);
      case 'worker-exit':
        return this.onWorkerExit(ev.worker, ev.code, ev.signal);
      case 'ready-deadline':
        if (ev.worker.state !== 'booting') return;
        ev.worker.failure = `worker ${ev.worker.pid} not ready within ${ev.worker.gen.config.readyTimeoutMs} ms`
          + (ev.worker.waitingForListen ? ': the app never called listen() (a drop-in app must listen on its port; a factory app must export createApp or a default request listener)' : '');
        return ev.worker.proc.kill();
      case 'drain-deadline':
        if (ev.worker.state !== 'draining') return;
        log.warn({ workerId: ev.worker.id, workerPid: ev.worker.pid, workerGeneration: ev.worker.gen.id, drainTimeoutMs: this.loaded.config.drainTimeoutMs },
          'worker did not drain in time; killing it');
        if (this.state === 'stopping') this.exitCode = EXIT.failed;
        return ev.worker.proc.kill();
      case 'respawn':
        if (this.current?.id === ev.generation && this.serving) this.fill(this.current);
        return;
      case 'shutdown-delay-over':
        if (this.state === 'stopping' && this.delayingStop) this.closeAndDrain();
        return;
      case 'accept-swept':
        if (this.state !== 'stopping' || !this.sweeping) return;
        this.deps.log.info({ sweptConnections: ev.accepted, sweepMs: ev.ms }, 'stopped accepting new connections');
        return this.drainAll();
      case 'old-stopped-accepting':
        if (this.state === 'stopping') {
          if (!this.pendingHandOver) return;
          this.warnLate(ev.late, 'handing over without them');
          return this.completeHandOver();
        }
        if (this.state !== 'reloading' || this.switching?.id !== ev.generation) return;
        this.warnLate(ev.late, 'the reload completes without them');
        return this.completeReload(this.switching);
      case 'force-exit':
        if (this.state !== 'stopped') this.finish();
        return;
    }
  }

  // ---- reload -------------------------------------------------------------

  private onReload(source: string, reply?: (o: ReloadOutcome) => void): void {
    switch (this.state) {
      case 'running':
        if (reply) this.activeReplies.push(reply);
        return this.startReload();
      case 'starting':
      case 'reloading': {
        // Coalesce: however many arrive, one more reload runs afterwards,
        // and it reads the newest config.
        this.queuedReload ??= { sources: [], replies: [] };
        this.queuedReload.sources.push(source);
        if (reply) this.queuedReload.replies.push(reply);
        this.deps.log.info({ source, state: this.state }, 'reload queued: it runs when the current one ends');
        return;
      }
      case 'upgrading':
        this.deps.log.warn({ source }, 'reload refused: an upgrade of the primary is in progress');
        reply?.({ ok: false, kind: 'rejected', reason: 'an upgrade of the primary is in progress: reload once it has ended' });
        return;
      case 'stopping':
      case 'stopped':
        this.deps.log.warn({ source }, 'reload ignored: shutting down');
        reply?.({ ok: false, kind: 'rejected', reason: 'shutting down' });
        return;
    }
  }

  // ---- upgrade of the primary ---------------------------------------------

  private onUpgrade(cmd: Extract<Command, { type: 'upgrade' }>): void {
    const refuse = (reason: string): void => {
      this.deps.log.warn({ source: cmd.source }, `upgrade refused: ${reason}`);
      cmd.reply?.({ ok: false, kind: 'rejected', reason, exitCode: EXIT.failed });
    };
    const upgrader = this.deps.upgrader;
    if (!upgrader) return refuse('this primary cannot be upgraded in place');
    if (process.pid === 1) return refuse('this primary is PID 1 (a container): it cannot be replaced in place; roll out a new image instead');
    switch (this.state) {
      case 'running': break;
      case 'reloading': return refuse('a reload is in progress: upgrade once it has ended');
      case 'upgrading': return refuse('an upgrade is already in progress');
      case 'starting': return refuse('still starting up');
      default: return refuse('shutting down');
    }
    const node = cmd.node ?? process.execPath;
    this.state = 'upgrading';
    this.upgradeReply = cmd.reply;
    this.deps.log.info({ node, generation: this.generationSeq }, 'upgrade started: starting a new primary');
    upgrader.start(node, this.generationSeq);
  }

  private onUpgradeServing(pid: number, node: string): void {
    if (this.state !== 'upgrading') return;
    const log = this.deps.log;
    log.info({ newPrimary: pid, node }, 'the new primary serves: handing over, draining this one');
    // As on a reload: the new primary serves, this one's workers drain.
    this.state = 'stopping';
    this.handedOver = true;
    this.stopStartedAt = this.deps.clock.now();
    this.endPendingReloads('the primary was upgraded');
    this.deps.stopAccepting();
    // The hand-over (and the reply: `upgrade complete`) waits, as a
    // reload's `reload complete` does, until none of this primary's workers
    // can take a new connection.
    this.pendingHandOver = { pid, node };
    if (!this.current || !this.retireWatchingAccept(this.current, this.current.id)) this.completeHandOver();
    if (this.live.size === 0) this.finish();
  }

  /** Give the new primary the control socket, metrics and PID file, and answer `baton upgrade`. */
  private completeHandOver(): void {
    const pending = this.pendingHandOver;
    if (!pending) return;
    this.pendingHandOver = undefined;
    this.deps.upgrader?.handOver();
    this.upgradeReply?.({ ok: true, ...pending });
    this.upgradeReply = undefined;
  }

  private onUpgradeFailed(reason: string, exitCode: number): void {
    if (this.state !== 'upgrading') return;
    this.state = 'running';
    const kind = exitCode === EXIT.config ? 'rejected' : 'failed';
    this.deps.log.error({ reason, exitCode }, `upgrade ${kind}: ${reason}; this primary keeps serving`);
    this.upgradeReply?.({ ok: false, kind, reason, exitCode: exitCode === EXIT.config ? EXIT.config : EXIT.failed });
    this.upgradeReply = undefined;
  }

  private startReload(): void {
    const log = this.deps.log;
    const current = this.current;
    if (!current) return;
    const requestedAt = this.deps.clock.now();
    this.tell((o) => o.reloadStarted?.());
    const result = this.deps.loadConfig();
    if (!result.ok) {
      const reason = result.errors.map((e) => e.message).join('; ');
      log.error({ envFile: result.envFile, errors: result.errors }, `reload rejected: ${reason}`);
      return this.endReload({ ok: false, kind: 'rejected', reason, errors: result.errors });
    }
    const diff = diffConfig(current.loaded, result.loaded, this.deps.environment);
    if (Boolean(current.loaded.tls) !== Boolean(result.loaded.tls)) {
      const reason = `turning TLS ${result.loaded.tls ? 'on' : 'off'} (TLS_CERT_FILE, TLS_KEY_FILE) changes what the listening port speaks; restart baton to apply it`;
      log.error({ keys: ['TLS_CERT_FILE', 'TLS_KEY_FILE'] }, `reload rejected: ${reason}`);
      return this.endReload({ ok: false, kind: 'rejected', reason });
    }
    if (diff.restartOnly.length > 0) {
      const reason = `${diff.restartOnly.join(', ')} cannot change on reload (the listening socket is kept for the primary's life); restart baton to apply it`;
      log.error({ keys: diff.restartOnly }, `reload rejected: ${reason}`);
      return this.endReload({ ok: false, kind: 'rejected', reason });
    }
    for (const warning of result.loaded.warnings ?? []) log.warn(warning);
    for (const key of diff.shadowed) {
      log.warn({ key }, `${key} changed in the .env file but the environment (or a flag) sets it: the file's value is ignored`);
    }
    if (diff.changed.length > 0) this.configVersion++;
    if (diff.changed.includes('WORKERS') && this.scaleOverride !== undefined) {
      log.info({ scaled: this.scaleOverride, workers: result.loaded.config.workers }, 'WORKERS changed in the config: it replaces the scaled count');
      this.scaleOverride = undefined;
    }
    this.state = 'reloading';
    this.next = this.newGeneration(result.loaded, this.configVersion, requestedAt);
    log.info({ newGeneration: this.next.id, configVersion: this.configVersion, changed: diff.changed, workers: this.next.size, ...(result.loaded.place ? { dir: result.loaded.place.dir, workerEntry: result.loaded.place.workerEntry } : {}) }, 'reload started');
    this.fill(this.next);
  }

  /** The booting generation is all ready: it serves, its predecessor drains. */
  private promote(gen: Generation): void {
    const log = this.deps.log;
    const old = this.current;
    this.current = gen;
    this.next = undefined;
    this.loaded = gen.loaded;
    log.level = gen.config.logLevel;
    this.deps.dispatcher.setTargets(gen.ready());
    if (old) {
      // The reload is complete (and says so) once none of the old workers
      // can take a new connection; until then the state stays `reloading`.
      if (!this.retireWatchingAccept(old, gen.id)) return this.completeReload(gen);
      this.switching = gen;
      return;
    }
    this.state = 'running';
    log.info({ ...this.deps.address(), listeners: this.deps.listeners(), ...this.readyFields(gen) }, 'ready');
    this.tell((o) => o.ready?.(gen.id));
    this.runQueuedReload();
  }

  /**
   * Drains `gen` as a reload does. DISPATCH=shared: its serving workers
   * accept from the shared socket until they read their drain, so
   * `old-stopped-accepting` (for `generation`: the one that switches in, or
   * on an upgrade `gen` itself) comes once none of them can (true); false
   * when there is nothing to wait for.
   */
  private retireWatchingAccept(gen: Generation, generation: number): boolean {
    const serving = [...gen.workers].filter((w) => w.state === 'ready');
    this.retire(gen, 'reload');
    const { dispatcher } = this.deps;
    if (!dispatcher.whenStoppedAccepting || serving.length === 0) return false;
    dispatcher.whenStoppedAccepting(serving, (late) => this.enqueue({ type: 'old-stopped-accepting', generation, late }));
    return true;
  }

  /** Old workers the primary did not hear from within the deadline (stuck in a request). */
  private warnLate(late: readonly WorkerHandle[], outcome: string): void {
    if (late.length === 0) return;
    this.deps.log.warn({ workerPids: late.map((w) => w.pid), workerGeneration: late[0]?.gen.id },
      `old workers did not confirm they stopped accepting: ${outcome} (each takes new connections until it reads its drain)`);
  }

  private completeReload(gen: Generation): void {
    this.switching = undefined;
    const fields = this.readyFields(gen);
    this.deps.log.info(fields, 'reload complete');
    this.endReload({ ok: true, generation: gen.id, durationMs: fields.durationMs });
  }

  private readyFields(gen: Generation): { workers: number[]; configVersion: number; durationMs: number } {
    return { workers: gen.ready().map((w) => w.pid), configVersion: gen.configVersion, durationMs: Math.round(this.deps.clock.now() - gen.requestedAt) };
  }

  private failGeneration(gen: Generation, reason: string): void {
    const log = this.deps.log;
    this.next = undefined;
    for (const w of gen.workers) this.abandon(w);
    if (this.state === 'starting') {
      log.fatal({ reason }, `startup failed: ${reason}`);
      this.tell((o) => o.startupFailed?.(reason));
      return this.stopNow('startup failed', EXIT.bootFailed);
    }
    log.error({ failedGeneration: gen.id, reason }, `reload failed: ${reason}; generation ${this.current?.id} keeps serving`);
    this.endReload({ ok: false, kind: 'failed', reason });
  }

  private endReload(outcome: ReloadOutcome): void {
    if (this.state === 'reloading') this.state = 'running';
    this.lastReload = outcome.ok
      ? { ok: true, generation: outcome.generation, durationMs: outcome.durationMs, at: Date.now() }
      : { ok: false, reason: outcome.reason, at: Date.now() };
    this.tell((o) => o.reloadEnded?.(outcome));
    for (const reply of this.activeReplies.splice(0)) reply(outcome);
    this.runQueuedReload();
  }

  private runQueuedReload(): void {
    const queued = this.queuedReload;
    if (!queued || this.state !== 'running') return;
    this.queuedReload = undefined;
    this.activeReplies.push(...queued.replies);
    this.deps.log.info({ sources: queued.sources }, 'running queued reload');
    this.startReload();
  }

  // ---- workers ------------------------------------------------------------

  private tell(fn: (o: SupervisorObserver) => void): void {
    for (const o of this.deps.observers ?? []) fn(o);
  }

  private newGeneration(loaded: LoadedConfig, configVersion: number, requestedAt: number): Generation {
    return new Generation(++this.generationSeq, loaded, configVersion, this.scaleOverride ?? loaded.config.workers, requestedAt);
  }

  /** Spawns workers until `gen` has its full size. */
  private fill(gen: Generation): void {
    // A generation booting beside a serving one starts a few workers at a
    // time: a booting Node process takes a whole core for ~70 ms, and the
    // serving workers need the rest to keep their latency.
    const limit = gen === this.next && this.current ? this.bootConcurrency : Infinity;
    let booting = [...gen.workers].filter((w) => w.state === 'booting').length;
    while (gen.workers.size < gen.size && booting < limit) {
      this.spawn(gen);
      booting++;
    }
  }

  private spawn(gen: Generation): WorkerHandle {
    const { clock, spawner } = this.deps;
    let worker!: WorkerHandle;
    const proc = spawner.spawn({
      message: (raw, handle) => {
        const msg = parseWorkerMessage(raw);
        if (!msg) {
          handle?.close();
          return;
        }
        // Stats and the data path change no state: handled at once.
        if (msg.type === 'stats') {
          worker.stats = { served: msg.served, inFlight: msg.inFlight, connections: msg.connections, upgraded: msg.upgraded };
          this.tell((o) => o.workerMetrics?.(worker, msg.metrics));
        } else if (msg.type === 'stopped-accepting') {
          this.deps.dispatcher.stoppedAccepting?.(worker);
        } else if (msg.type === 'listener') {
          if (!handle) return;
          if (this.deps.dispatcher.listenerCopy) this.deps.dispatcher.listenerCopy(worker, msg.listener, handle);
          else handle.close();
        } else if (msg.type === 'load') {
          this.deps.dispatcher.load?.(worker, msg.open);
        } else if (msg.type === 'forward') {
          if (!handle) return;
          if (this.deps.dispatcher.forwarded) this.deps.dispatcher.forwarded(worker, handle, msg.listener, msg.open);
          else handle.close();
        } else this.enqueue({ type: 'worker-message', worker, msg });
      },
      exit: (code, signal) => this.enqueue({ type: 'worker-exit', worker, code, signal }),
      error: (err) => this.deps.log.error({ err: err.message, workerId: worker.id }, 'worker process error'),
    }, gen.loaded.place, gen.config.workerNodeFlags);
    worker = new WorkerHandle(++this.workerSeq, gen, proc, clock.now());
    // Beside a serving generation, booting must not take the CPU it needs.
    if (gen === this.next && this.current && gen.config.bootNice > 0 && this.deps.bootPriority) {
      this.deps.bootPriority.lower(proc.pid, gen.config.bootNice);
      worker.niced = true;
    }
    gen.workers.add(worker);
    this.live.add(worker);
    worker.timer = clock.setTimeout(() => this.enqueue({ type: 'ready-deadline', worker }), gen.config.readyTimeoutMs);
    this.deps.log.debug({ workerId: worker.id, workerPid: worker.pid, workerGeneration: gen.id }, 'worker forked');
    return worker;
  }

  private onWorkerMessage(worker: WorkerHandle, msg: WorkerMessage): void {
    const log = this.deps.log;
    switch (msg.type) {
      case 'hello':
        // Again: threads the process started before the first renice kept their priority.
        if (worker.niced) this.deps.bootPriority?.lower(worker.pid, worker.gen.config.bootNice);
        if (msg.protocol !== PROTOCOL_VERSION) {
          worker.failure = `worker speaks IPC protocol ${msg.protocol}, this primary speaks ${PROTOCOL_VERSION}: restart the primary to run the new code`;
          worker.proc.kill();
          return;
        }
        {
          const tls = worker.gen.loaded.tls;
          worker.proc.send({
            type: 'init', protocol: PROTOCOL_VERSION, generation: worker.gen.id, workerId: worker.id, configVersion: worker.gen.configVersion, config: worker.gen.config,
            output: this.deps.output(worker.gen.config.logFormat), listeners: this.deps.listeners(),
            ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}), ticketKeys: this.deps.ticketKeys(),
          });
          if (this.state === 'starting') this.deps.dispatcher.booting?.(worker);
        }
        return;
      case 'fatal':
        worker.failure = msg.error.message;
        log.error({ workerId: worker.id, workerPid: worker.pid, workerGeneration: worker.gen.id, error: msg.error }, `worker failed: ${msg.error.message}`);
        return;
      case 'ready':
        if (worker.state !== 'booting' || worker.planned) return;
        this.deps.clock.clearTimeout(worker.timer);
        if (worker.niced) {
          this.deps.bootPriority?.restore(worker.pid);
          worker.niced = false;
        }
        worker.state = 'ready';
        worker.readyAt = this.deps.clock.now();
        log.debug({ workerId: worker.id, workerPid: worker.pid, workerGeneration: worker.gen.id }, 'worker ready');
        if (worker.gen === this.next) {
          if (worker.gen.ready().length >= worker.gen.size) this.promote(worker.gen);
          else this.fill(worker.gen);
        } else if (worker.gen === this.current) {
          this.deps.dispatcher.add(worker);
        }
        return;
      case 'waiting-for-listen':
        worker.waitingForListen = true;
        return;
      case 'closing':
        // The app closed its own server: the worker drains and exits; the
        // generation gets a replacement.
        if (worker.state !== 'ready') return;
        log.warn({ workerId: worker.id, workerPid: worker.pid, workerGeneration: worker.gen.id }, 'the app closed its server: the worker drains and is replaced');
        this.drain(worker, 'scale-down', false);
        if (worker.gen === this.current && this.serving) this.fill(worker.gen);
        return;
      case 'forced-close':
        log.warn({ workerId: worker.id, workerPid: worker.pid, workerGeneration: worker.gen.id, closed: msg.closed }, `worker closed ${msg.closed} connections still open at the drain deadline`);
        if (this.state === 'stopping') this.exitCode = EXIT.failed;
        return;
      case 'stats':
      case 'load':
      case 'forward':
      case 'listener':
      case 'stopped-accepting':
        return;
    }
  }

  private onWorkerExit(worker: WorkerHandle, code: number | null, signal: string | null): void {
    const { clock, dispatcher, log } = this.deps;
    const wasState = worker.state;
    clock.clearTimeout(worker.timer);
    worker.state = 'exited';
    worker.gen.workers.delete(worker);
    this.live.delete(worker);
    dispatcher.workerGone(worker);
    this.tell((o) => o.workerExited?.(worker));

    const fields = { workerId: worker.id, workerPid: worker.pid, workerGeneration: worker.gen.id, code, signal, planned: worker.planned };
    if (worker.planned) log.info(fields, 'worker exited');
    else log.warn({ ...fields, reason: worker.failure }, 'worker exited unexpectedly');

    if (wasState === 'draining') this.countRetired(worker);

    if (!worker.planned) {
      if (worker.gen === this.next) {
        this.failGeneration(worker.gen, worker.failure ?? describeExit(worker.pid, code, signal));
      } else if (worker.gen === this.current && this.serving) {
        this.scheduleRespawn(worker);
      }
    }
    if ((this.state === 'stopping') && this.live.size === 0) this.finish();
  }

  private scheduleRespawn(worker: WorkerHandle): void {
    const { clock, log } = this.deps;
    if (worker.readyAt !== undefined && clock.now() - worker.readyAt >= STABLE_MS) this.backoff.reset();
    const delayMs = this.backoff.next();
    const generation = worker.gen.id;
    log.warn({ workerGeneration: generation, delayMs }, 'respawning worker');
    this.tell((o) => o.workerRespawned?.());
    clock.setTimeout(() => this.enqueue({ type: 'respawn', generation }), delayMs);
  }

  /** Stop routing to `worker`, ask it to drain (unless it asked itself), and kill it at the deadline. */
  private drain(worker: WorkerHandle, reason: DrainReason, tell = true): void {
    const { clock, dispatcher } = this.deps;
    dispatcher.remove(worker);
    worker.gen.workers.delete(worker);
    worker.planned = true;
    if (worker.state === 'booting') return this.abandon(worker);
    if (worker.state !== 'draining') {
      worker.state = 'draining';
      clock.clearTimeout(worker.timer);
      worker.timer = clock.setTimeout(() => this.enqueue({ type: 'drain-deadline', worker }), this.loaded.config.drainTimeoutMs);
    }
    if (tell) worker.proc.send({ type: 'drain', reason });
  }

  /** A worker that never served: kill it, its exit is expected. */
  private abandon(worker: WorkerHandle): void {
    worker.planned = true;
    worker.gen.workers.delete(worker);
    this.deps.clock.clearTimeout(worker.timer);
    worker.proc.kill();
  }

  private retire(gen: Generation, reason: DrainReason): void {
    const workers = [...gen.workers];
    for (const w of workers) this.drain(w, reason);
    // Booting workers were killed, not drained: only drainers are waited for.
    const remaining = workers.filter((w) => w.state === 'draining').length;
    if (remaining > 0) this.retiring.set(gen.id, { since: this.deps.clock.now(), remaining });
  }

  private countRetired(worker: WorkerHandle): void {
    const entry = this.retiring.get(worker.gen.id);
    if (!entry || --entry.remaining > 0) return;
    this.retiring.delete(worker.gen.id);
    this.deps.log.info({ retiredGeneration: worker.gen.id, durationMs: Math.round(this.deps.clock.now() - entry.since) }, 'generation retired');
  }

  // ---- scaling ------------------------------------------------------------

  private onScale(cmd: Extract<Command, { type: 'scale' }>): void {
    const log = this.deps.log;
    if (this.state === 'stopping' || this.state === 'stopped') {
      log.warn({ source: cmd.source }, 'scale ignored: shutting down');
      cmd.reply?.({ ok: false, reason: 'shutting down' });
      return;
    }
    const from = this.targetWorkers;
    const to = Math.max(1, Math.min(1024, cmd.to ?? from + (cmd.delta ?? 0)));
    this.scaleOverride = to;
    if (to !== from) log.info({ source: cmd.source, from, to }, 'scaling workers');
    else log.info({ source: cmd.source, workers: to }, to === 1 && (cmd.delta ?? 0) < 0 ? 'scale ignored: never below 1 worker' : 'scale: already at that count');
    if (this.current) this.resize(this.current, to);
    if (this.next) this.resize(this.next, to);
    cmd.reply?.({ ok: true, workers: to });
  }

  /** The count a new generation gets now. */
  private get targetWorkers(): number {
    return this.scaleOverride ?? this.loaded.config.workers;
  }

  private resize(gen: Generation, size: number): void {
    gen.size = size;
    this.fill(gen);
    // Remove booting workers first (they serve nothing), then the oldest.
    const byPreference = [...gen.workers].sort((a, b) => (a.state === 'booting' ? 0 : 1) - (b.state === 'booting' ? 0 : 1) || a.id - b.id);
    for (const w of byPreference.slice(0, Math.max(0, gen.workers.size - size))) {
      if (w.state === 'booting') this.abandon(w);
      else this.drain(w, 'scale-down');
    }
    if (gen === this.next && gen.ready().length >= gen.size) this.promote(gen);
  }

  /** Sends `msg` to every live worker (ticket-key rotation). */
  broadcast(msg: PrimaryMessage): void {
    for (const w of this.live) if (w.state !== 'exited') w.proc.send(msg);
  }

  /** The serving generation's TLS material, for metrics (cert expiry). */
  get tls(): LoadedConfig['tls'] {
    return this.current?.loaded.tls ?? this.loaded.tls;
  }

  /** A read-only snapshot for `baton status`. */
  status(metrics: { host: string; port: number } | null): StatusSnapshot {
    const now = this.deps.clock.now();
    const workers: WorkerStatus[] = [...this.live].map((w) => ({
      id: w.id, pid: w.pid, generation: w.gen.id,
      // Live workers are never 'exited'.
      state: w.state === 'booting' ? 'starting' : w.state as 'ready' | 'draining',
      uptimeMs: Math.round(now - w.startedAt),
      served: w.stats.served, inFlight: w.stats.inFlight, upgraded: w.stats.upgraded,
      dir: w.gen.loaded.place?.dir ?? process.cwd(),
    }));
    return {
      pid: process.pid,
      state: this.state,
      generation: this.current?.id ?? 0,
      configVersion: this.current?.configVersion ?? 0,
      targetWorkers: this.targetWorkers,
      workers,
      lastReload: this.lastReload,
      uptimeMs: Math.round(now - this.startedAt),
      memory: (({ rss, heapUsed, heapTotal }) => ({ rss, heapUsed, heapTotal }))(process.memoryUsage()),
      logOutput: this.deps.logOutput(),
      listeners: this.deps.listeners(),
      appDir: (this.current ?? this.next)?.loaded.place?.dir ?? process.cwd(),
      metrics,
      upgradedFrom: this.deps.upgradedFrom ?? null,
      node: process.version,
    };
  }

  // ---- shutdown -----------------------------------------------------------

  private beginStop(source: string): void {
    const log = this.deps.log;
    const was = this.state;
    if (was === 'upgrading') {
      log.warn('upgrade abandoned: shutting down');
      this.deps.upgrader?.abort();
      this.upgradeReply?.({ ok: false, kind: 'abandoned', reason: 'shutting down', exitCode: EXIT.failed });
      this.upgradeReply = undefined;
    }
    this.state = 'stopping';
    this.stopStartedAt = this.deps.clock.now();
    log.info({ source, was }, 'shutdown started');
    this.tell((o) => o.stopping?.());
    this.endPendingReloads('shutting down');
    this.switching = undefined;
    if (this.next) {
      if (was === 'reloading') log.warn({ abandonedGeneration: this.next.id }, 'reload abandoned: shutting down');
      for (const w of this.next.workers) this.abandon(w);
      this.next = undefined;
    }
    const delayMs = this.loaded.config.shutdownDelayMs;
    if (delayMs > 0 && this.current) {
      // Keep serving, but tell probes we are going, so that load balancers
      // and Kubernetes endpoints stop routing here before the port closes.
      this.delayingStop = true;
      for (const w of this.live) w.proc.send({ type: 'unready' });
      log.info({ delayMs }, 'shutdown delay: still serving, readiness answers 503');
      this.deps.clock.setTimeout(() => this.enqueue({ type: 'shutdown-delay-over' }), delayMs);
      return;
    }
    this.closeAndDrain();
  }

  /** Stop accepting, then drain every worker; exit once all are gone. */
  private closeAndDrain(): void {
    this.delayingStop = false;
    if (this.deps.stopAcceptingAfterSweep) {
      // The connections accepted in the sweep go to the serving workers,
      // which are told to drain only after it: they answer them with
      // Connection: close.
      this.sweeping = true;
      this.deps.stopAcceptingAfterSweep((sweep) => this.enqueue({ type: 'accept-swept', ...sweep }));
      return;
    }
    this.deps.stopAccepting();
    this.drainAll();
  }

  private drainAll(): void {
    this.sweeping = false;
    this.deps.dispatcher.closeWaiting();
    // Workers already draining from a reload: their idle sockets can go now.
    for (const w of this.live) if (w.state === 'draining') w.proc.send({ type: 'drain', reason: 'shutdown' });
    if (this.current) this.retire(this.current, 'shutdown');
    if (this.live.size === 0) this.finish();
  }

  /**
   * Kill every worker and exit with `exitCode` once they are gone: a second
   * stop signal, or a first generation that cannot boot.
   */
  private stopNow(source: string, exitCode: number = EXIT.failed): void {
    const log = this.deps.log;
    if (this.state === 'stopped') return;
    if (exitCode === EXIT.failed) log.warn({ source, workers: this.live.size }, 'forced shutdown: killing workers');
    if (this.state === 'upgrading') this.deps.upgrader?.abort();
    if (this.state !== 'stopping') {
      this.stopStartedAt = this.deps.clock.now();
      this.tell((o) => o.stopping?.());
    }
    this.delayingStop = false;
    this.sweeping = false;
    // Both are idempotent: a forced stop may come before or after them.
    this.deps.stopAccepting();
    this.deps.dispatcher.closeWaiting();
    this.state = 'stopping';
    this.exitCode = exitCode;
    this.next = undefined;
    this.endPendingReloads(exitCode === EXIT.bootFailed ? 'startup failed' : 'shutting down');
    for (const w of this.live) this.abandon(w);
    if (this.live.size === 0) return this.finish();
    this.deps.clock.setTimeout(() => this.enqueue({ type: 'force-exit' }), FORCE_EXIT_MS);
  }

  private endPendingReloads(reason: string): void {
    const replies = [...this.activeReplies.splice(0), ...(this.queuedReload?.replies ?? [])];
    this.queuedReload = undefined;
    for (const reply of replies) reply({ ok: false, kind: 'abandoned', reason });
  }

  private finish(): void {
    // Every worker is gone: none accepts any more.
    this.completeHandOver();
    this.state = 'stopped';
    const durationMs = Math.round(this.deps.clock.now() - this.stopStartedAt);
    const msg = this.handedOver ? (this.exitCode === EXIT.ok ? 'handed over to the new primary: exiting' : 'handed over to the new primary: exiting with errors')
      : this.exitCode === EXIT.ok ? 'shutdown complete' : 'shutdown complete with errors';
    this.deps.log.info({ exitCode: this.exitCode, durationMs }, msg);
    this.deps.exit(this.exitCode);
  }
}

function describeExit(pid: number, code: number | null, signal: string | null): string {
  return signal ? `worker ${pid} was killed by ${signal} before it was ready` : `worker ${pid} exited with code ${code} before it was ready`;
}
