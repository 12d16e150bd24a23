// Upgrading the primary itself (baton's own code, or Node) without closing
// the port, as nginx's USR2 binary upgrade and Cloudflare's tableflip do.
//
// The running ("old") primary starts a new one from the code on disk now,
// with the Node binary asked for, handing it everything it needs to start
// without a conflict: its listening sockets, the control socket and the
// metrics port (as extra stdio descriptors; both processes can accept on
// them during the hand-over, so no connection is refused), NOTIFY_SOCKET,
// the TLS session-ticket keys (over IPC: never on disk), its arguments,
// execArgv, environment and working directory. Then:
//
//   old                                  new
//   spawn(fds, ipc) ───────────────────► load config, boot generation 1
//   ◄──────────────────────────── serving (accepts on the sockets now)
//   stop accepting, close control/metrics
//   handover ──────────────────────────► take control socket, metrics, PID
//                                        file, systemd MAINPID=, READY=1
//   ◄──────────────────────────────── owner
//   drain workers as on a reload, exit 0
//
// If the new primary fails before it serves (bad config, a generation that
// cannot boot, not serving in time), the old one kills it and goes on as if
// nothing happened. If the old one dies first (SIGKILL), a new primary that
// does not serve yet exits; one that serves takes over alone.
import { spawn, type ChildProcess } from 'node:child_process';
import type { ListenerInfo } from '../protocol.js';
import type { HandedOverListener, ListenerSource } from './listeners.js';

/** Bump on any incompatible change to the messages below or to the inherited environment. */
export const UPGRADE_PROTOCOL = 1;
/** The environment variable a new primary finds its inheritance in. */
export const INHERIT_ENV = 'BATON_UPGRADE';

/** What a new primary inherits (JSON in BATON_UPGRADE; the descriptors are in its stdio). */
export interface Inheritance {
  readonly protocol: number;
  readonly listeners: readonly HandedOverListener[];
  readonly control: { readonly fd: number; readonly path: string };
  readonly metrics?: { readonly fd: number };
  /** The old primary's last generation: numbering goes on from it. */
  readonly generation: number;
  readonly notifySocket?: string;
  readonly previous: { readonly pid: number; readonly node: string };
}

/** Old → new. */
export type ToNewPrimary =
  | { readonly type: 'upgrade-keys'; readonly ticketKeys: string }
  /** The old primary no longer accepts, nor answers on the control socket: take them. */
  | { readonly type: 'upgrade-handover' };

/** New → old. */
export type ToOldPrimary =
  /** The first generation is ready and the new primary accepts connections. */
  | { readonly type: 'upgrade-serving'; readonly protocol: number; readonly pid: number; readonly node: string }
  /** It cannot start: `exitCode` is what it exits with (78: config). */
  | { readonly type: 'upgrade-failed'; readonly reason: string; readonly exitCode: number }
  /** It owns the control socket, metrics, the PID file and (under systemd) MAINPID. */
  | { readonly type: 'upgrade-owner' };

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

export function parseToOld(x: unknown): ToOldPrimary | undefined {
  if (!isObject(x)) return undefined;
  if (x.type === 'upgrade-serving' && typeof x.pid === 'number' && typeof x.node === 'string' && typeof x.protocol === 'number') {
    return { type: 'upgrade-serving', protocol: x.protocol, pid: x.pid, node: x.node };
  }
  if (x.type === 'upgrade-failed' && typeof x.reason === 'string' && typeof x.exitCode === 'number') return { type: 'upgrade-failed', reason: x.reason, exitCode: x.exitCode };
  if (x.type === 'upgrade-owner') return { type: 'upgrade-owner' };
  return undefined;
}

export function parseToNew(x: unknown): ToNewPrimary | undefined {
  if (!isObject(x)) return undefined;
  if (x.type === 'upgrade-keys' && typeof x.ticketKeys === 'string') return { type: 'upgrade-keys', ticketKeys: x.ticketKeys };
  if (x.type === 'upgrade-handover') return { type: 'upgrade-handover' };
  return undefined;
}

/** What the old primary hands over. */
export interface Handover {
  readonly listeners: readonly { readonly handle: unknown; readonly info: ListenerInfo; readonly source: ListenerSource; readonly name?: string }[];
  readonly control: { readonly handle: unknown; readonly path: string };
  readonly metrics?: { readonly handle: unknown };
  readonly generation: number;
  readonly notifySocket?: string;
  readonly ticketKeys: string;
  /** The new primary's script, arguments and working directory. */
  readonly entry: string;
  readonly args: readonly string[];
  readonly cwd: string;
}

export interface LaunchEvents {
  serving(pid: number, node: string): void;
  failed(reason: string, exitCode: number): void;
  owner(): void;
}

/** The old primary's side: the new primary it started. */
export class NewPrimary {
  private settled = false;
  private serving = false;

  private constructor(private readonly child: ChildProcess, private readonly events: LaunchEvents) {}

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /**
   * Starts `node` on this primary's own entry and arguments, in its working
   * directory and environment, with the handover's descriptors as stdio 4
   * onward (0-2: the same stdio; 3: the IPC channel).
   */
  static launch(node: string, handover: Handover, events: LaunchEvents): NewPrimary {
    const fds: unknown[] = [];
    const fdOf = (handle: unknown): number => { fds.push(handle); return 3 + fds.length; };
    const inheritance: Inheritance = {
      protocol: UPGRADE_PROTOCOL,
      listeners: handover.listeners.map((l) => ({ fd: fdOf(l.handle), info: l.info, source: l.source, ...(l.name ? { name: l.name } : {}) })),
      control: { fd: fdOf(handover.control.handle), path: handover.control.path },
      ...(handover.metrics ? { metrics: { fd: fdOf(handover.metrics.handle) } } : {}),
      generation: handover.generation,
      ...(handover.notifySocket ? { notifySocket: handover.notifySocket } : {}),
      previous: { pid: process.pid, node: process.version },
    };
    const child = spawn(node, [...process.execArgv, handover.entry, ...handover.args], {
      cwd: handover.cwd,
      env: { ...process.env, PWD: handover.cwd, [INHERIT_ENV]: JSON.stringify(inheritance) },
      stdio: [0, 1, 2, 'ipc', ...fds] as Parameters<typeof spawn>[2]['stdio'],
    });
    const launched = new NewPrimary(child, events);
    child.on('message', (raw: unknown) => launched.onMessage(raw));
    child.on('error', (err) => launched.fail(`cannot start ${node}: ${err.message}`, 1));
    child.on('exit', (code, signal) => {
      if (!launched.serving) launched.fail(`the new primary exited ${signal ? `on ${signal}` : `with code ${code}`} before it served`, code ?? 1);
    });
    child.send({ type: 'upgrade-keys', ticketKeys: handover.ticketKeys } satisfies ToNewPrimary);
    return launched;
  }

  private onMessage(raw: unknown): void {
    const msg = parseToOld(raw);
    if (!msg) return;
    switch (msg.type) {
      case 'upgrade-serving':
        if (msg.protocol !== UPGRADE_PROTOCOL) {
          return this.fail(`the new primary speaks upgrade protocol ${msg.protocol}, this one ${UPGRADE_PROTOCOL}: restart baton instead`, 1);
        }
        if (this.settled) return;
        this.settled = true;
        this.serving = true;
        return this.events.serving(msg.pid, msg.node);
      case 'upgrade-failed':
        return this.fail(msg.reason, msg.exitCode);
      case 'upgrade-owner':
        return this.events.owner();
    }
  }

  private fail(reason: string, exitCode: number): void {
    if (this.settled) return;
    this.settled = true;
    this.kill();
    this.events.failed(reason, exitCode);
  }

  /** Not serving in time. */
  timeout(ms: number): void {
    this.fail(`the new primary was not serving within ${ms} ms`, 1);
  }

  /** Rolls back: the new primary and, through their IPC channels, its workers go. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  handOver(): void {
    if (this.child.connected) this.child.send({ type: 'upgrade-handover' } satisfies ToNewPrimary);
  }
}

/** The new primary's side: what it inherited, read (and removed) from the environment. */
export function readInheritance(env: NodeJS.ProcessEnv): Inheritance | undefined {
  const raw = env[INHERIT_ENV];
  delete env[INHERIT_ENV];
  if (raw === undefined) return undefined;
  const parsed = JSON.parse(raw) as Inheritance;
  if (parsed.protocol !== UPGRADE_PROTOCOL) throw new Error(`the old primary speaks upgrade protocol ${parsed.protocol}, this one ${UPGRADE_PROTOCOL}`);
  return parsed;
}

/** The new primary's channel to the old one. */
export class OldPrimary {
  private ticketKeys: string | undefined;

  constructor(private readonly events: { handover(): void; gone(): void }) {
    process.on('message', (raw: unknown) => {
      const msg = parseToNew(raw);
      if (msg?.type === 'upgrade-keys') this.ticketKeys = msg.ticketKeys;
      else if (msg?.type === 'upgrade-handover') this.events.handover();
    });
    // The old primary exited (after the hand-over) or was killed.
    process.on('disconnect', () => this.events.gone());
  }

  /** The ticket keys, once the old primary's first message came (it is sent at spawn). */
  keys(): Promise<string | undefined> {
    if (this.ticketKeys !== undefined || !process.connected) return Promise.resolve(this.ticketKeys);
    return new Promise((resolve) => {
      const done = (): void => { clearTimeout(timer); resolve(this.ticketKeys); };
      const timer = setTimeout(done, 2000);
      process.on('message', function once(raw: unknown) {
        if (parseToNew(raw)?.type !== 'upgrade-keys') return;
        process.off('message', once);
        setImmediate(done);
      });
    });
  }

  send(msg: ToOldPrimary): Promise<void> {
    return new Promise((resolve) => {
      if (!process.connected || !process.send) return resolve();
      process.send(msg, undefined, {}, () => resolve());
    });
  }

  /** Lets the process exit without waiting on the channel. */
  release(): void {
    if (process.connected) process.disconnect();
  }
}
