// How the primary listens: a list of listening sockets that it owns for its
// whole life (Node's cluster closes the port when the last worker leaves,
// refusing connections), made one of three ways, all feeding the same
// workers:
//
// - bound here: LISTEN's HOST:PORT and unix:/path addresses (or PORT/HOST);
// - inherited from systemd socket activation (LISTEN_FDS, fd 3 onward);
// - handed over by the primary this one replaces (`baton upgrade`), as extra
//   stdio descriptors.
//
// With DISPATCH=primary the primary accepts on them and hands the raw
// connection handles to the dispatcher (it never reads a byte). With
// DISPATCH=shared it only holds them: the serving workers listen on their
// copies and accept (shared-accept.ts), so the primary never polls them.
import { lookup } from 'node:dns/promises';
import { chmodSync, renameSync, unlinkSync } from 'node:fs';
import net, { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { errnoMessage } from '../errno.js';
import type { ListenAddress } from '../config.js';
import type { ListenerInfo } from '../protocol.js';
import type { RawConnection } from './dispatcher.js';
import { claimSocketPath, listenUnix } from './unix-socket.js';

export type ListenerSource = 'bound' | 'systemd' | 'upgrade';
export type AcceptMode = 'primary' | 'shared';

export interface Listener {
  readonly info: ListenerInfo;
  readonly source: ListenerSource;
  /** systemd's name for it (LISTEN_FDNAMES). */
  readonly name?: string;
}

/** What a replaced primary passes on for one listener: its descriptor's place in the new one's stdio. */
export interface HandedOverListener {
  readonly fd: number;
  readonly info: ListenerInfo;
  readonly source: ListenerSource;
  readonly name?: string;
}

export class ListenError extends Error {
  constructor(message: string, readonly exitCode: 4 | 78) {
    super(message);
  }
}

/** What the shutdown sweep accepted before the port closed, and how long it took. */
export interface SweepResult {
  readonly accepted: number;
  readonly ms: number;
}

export type OnConnection = (conn: RawConnection, index: number) => void;

const BACKLOG = 2048;

interface RawHandle extends RawConnection {
  fd: number;
  /** Starts polling: connections come to onconnection (a libuv error code, or 0). */
  listen(backlog: number): number;
  getsockname?(out: { address?: string; port?: number }): number;
  onconnection: ((err: number, conn: RawConnection) => void) | null;
}

/** node:net's own way to make a listening handle without listening on it (as cluster's SCHED_NONE does). */
const createServerHandle = (net as unknown as {
  _createServerHandle(address: string | null, port: number, addressType: number, fd?: number, flags?: number): RawHandle | number;
})._createServerHandle;

interface Entry extends Listener {
  /** Primary mode: the server that accepts. */
  readonly server?: Server;
  /** Shared mode: the raw handle the workers listen on. */
  handle?: RawHandle;
  /** Shared mode, bound here: this primary accepts on it until a worker hands back a copy it can hold unpolled (adopt). */
  polling?: boolean;
}

function tcpInfoOf(handle: { getsockname?(out: { address?: string; port?: number }): number }, fallback: ListenerInfo): ListenerInfo {
  const out: { address?: string; port?: number } = {};
  if (handle.getsockname && handle.getsockname(out) === 0 && out.address !== undefined && out.port !== undefined) return { kind: 'tcp', host: out.address, port: out.port };
  return fallback;
}

function infoOfServer(server: Server, fallback?: ListenerInfo): ListenerInfo {
  const addr = server.address();
  if (typeof addr === 'string' && addr !== '') return { kind: 'unix', path: addr };
  if (addr && typeof addr === 'object') return { kind: 'tcp', host: addr.address, port: addr.port };
  return fallback ?? { kind: 'unix', path: '(inherited)' };
}

function listenOn(server: Server, options: Parameters<Server['listen']>[0]): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Primary mode: the listening handle hands us raw connections, no net.Socket made. */
/** The longest a shutdown keeps accepting what was queued before it closes the ports. */
const SWEEP_MAX_MS = 250;

/** Connections accepted by this process (the shutdown's sweep watches it). */
let acceptedCount = 0;

function takeConnections(handle: RawHandle, index: number, onConnection: OnConnection, onError: (err: Error) => void): void {
  handle.onconnection = (err, conn) => {
    if (err) return onError(Object.assign(new Error(`accept failed: ${errnoMessage(err)}`), { errno: err }));
    acceptedCount++;
    onConnection(conn, index);
  };
}

/** A listener that accepts only from start(): a handed-over descriptor, or a systemd socket (its raw handle). */
interface Pending {
  readonly handle: RawHandle;
  readonly index: number;
  readonly refuse: (why: string) => ListenError;
}

export class Listeners {
  private handedOver = false;
  private accepting = false;

  private constructor(
    private readonly mode: AcceptMode,
    private readonly entries: readonly Entry[],
    /** Unix socket files this primary created: removed at exit, unless handed over. */
    private readonly ownedPaths: readonly string[],
    /** Inherited (primary mode): accepted from only once start() is called. */
    private readonly pending: readonly Pending[],
    private readonly onConnection: OnConnection,
    private readonly onError: (err: Error) => void,
    /** False for inherited sockets until the hand-over (takeOwnership). */
    private owning = true,
  ) {}

  get list(): readonly Listener[] {
    return this.entries;
  }

  get info(): ListenerInfo[] {
    return this.entries.map((l) => l.info);
  }

  /** Listening handles, in order: for the workers (shared mode) and for a new primary's stdio. */
  get handles(): unknown[] {
    return this.entries.map((l) => l.handle ?? (l.server as unknown as { _handle: unknown })._handle);
  }

  /** Binds `addresses` (LISTEN, or PORT/HOST). A live Unix socket is never stolen (exit 4). */
  static async bind(mode: AcceptMode, addresses: readonly ListenAddress[], unixMode: number, onConnection: OnConnection, onError: (err: Error) => void): Promise<Listeners> {
    const entries: Entry[] = [];
    const owned: string[] = [];
    const fail = (): void => {
      for (const e of entries) { e.server?.close(); e.handle?.close(); }
      for (const path of owned) { try { unlinkSync(path); } catch { /* gone */ } }
    };
    try {
      for (const [index, addr] of addresses.entries()) {
        if (addr.kind === 'unix') {
          await claimSocketPath(addr.path,
            `cannot listen on unix:${addr.path}: a live process answers on it (another baton?)`,
            `cannot listen on unix:${addr.path}: it exists and is not a socket`).catch((err: Error) => { throw new ListenError(err.message, 4); });
        }
        if (mode === 'shared') {
          // Listening from now: the port must not refuse while the first
          // workers boot. Node cannot listen without polling, so this
          // primary accepts (the dispatcher holds those for the first ready
          // worker) until a worker hands back a copy of the socket (adopt).
          const entry = await Listeners.bindShared(addr, unixMode);
          entries.push(entry);
          const handle = entry.handle as RawHandle;
          const err = handle.listen(BACKLOG);
          if (err) throw new ListenError(`cannot listen on ${addr.kind === 'tcp' ? `${addr.host}:${addr.port}` : `unix:${addr.path}`}: listen ${errnoMessage(err)}`, 4);
          takeConnections(handle, index, onConnection, onError);
          entry.polling = true;
        } else {
          const server = createServer({ noDelay: true });
          if (addr.kind === 'tcp') {
            await listenOn(server, { host: addr.host, port: addr.port, backlog: BACKLOG }).catch((err: NodeJS.ErrnoException) => {
              throw new ListenError(`cannot listen on ${addr.host}:${addr.port}: ${err.message}`, 4);
            });
          } else {
            await listenUnix(server, addr.path, unixMode, BACKLOG).catch((err: NodeJS.ErrnoException) => {
              throw new ListenError(`cannot listen on unix:${addr.path}: ${err.message}`, 4);
            });
          }
          server.on('error', onError);
          takeConnections((server as unknown as { _handle: RawHandle })._handle, index, onConnection, onError);
          entries.push({ info: addr.kind === 'unix' ? addr : infoOfServer(server), source: 'bound', server });
        }
        if (addr.kind === 'unix') owned.push(addr.path);
      }
    } catch (err) {
      fail();
      throw err;
    }
    const listeners = new Listeners(mode, entries, owned, [], onConnection, onError);
    listeners.accepting = true;
    return listeners;
  }

  /** Shared mode: a bound socket, not listened on here (the workers listen on their copies). */
  private static async bindShared(addr: ListenAddress, unixMode: number): Promise<Entry> {
    if (addr.kind === 'tcp') {
      const { address, family } = await lookup(addr.host).catch((err: Error) => { throw new ListenError(`cannot listen on ${addr.host}:${addr.port}: ${err.message}`, 4); });
      const handle = createServerHandle(address, addr.port, family);
      if (typeof handle === 'number') throw new ListenError(`cannot listen on ${addr.host}:${addr.port}: bind ${errnoMessage(handle)}`, 4);
      return { info: tcpInfoOf(handle, { kind: 'tcp', host: address, port: addr.port }), source: 'bound', handle };
    }
    // As in listenUnix: bound under a temporary name, renamed into place.
    const tmp = join(dirname(addr.path), `.baton-${process.pid}-${Date.now() % 1e6}.sock`);
    const umask = process.umask(~unixMode & 0o777);
    let handle: RawHandle | number;
    try {
      handle = createServerHandle(tmp, -1, -1);
    } finally {
      process.umask(umask);
    }
    if (typeof handle === 'number') throw new ListenError(`cannot listen on unix:${addr.path}: bind ${errnoMessage(handle)}`, 4);
    chmodSync(tmp, unixMode);
    renameSync(tmp, addr.path);
    return { info: addr, source: 'bound', handle };
  }

  /**
   * systemd socket activation: LISTEN_PID is this process and LISTEN_FDS
   * counts the descriptors from fd 3. Undefined if not activated. The
   * variables are removed from `env`: a worker's fd 3 is its IPC channel,
   * and nothing below the primary must think it was activated.
   */
  static async fromSystemd(mode: AcceptMode, env: NodeJS.ProcessEnv, onConnection: OnConnection, onError: (err: Error) => void): Promise<Listeners | undefined> {
    const pid = env.LISTEN_PID;
    const count = env.LISTEN_FDS;
    const names = (env.LISTEN_FDNAMES ?? '').split(':');
    delete env.LISTEN_PID;
    delete env.LISTEN_FDS;
    delete env.LISTEN_FDNAMES;
    if (pid === undefined || count === undefined || Number(pid) !== process.pid) return undefined;
    const n = Number(count);
    if (!Number.isInteger(n) || n < 1) throw new ListenError(`LISTEN_FDS=${JSON.stringify(count)}: expected the number of sockets systemd passed`, 78);
    const entries: Entry[] = [];
    const pending: Pending[] = [];
    for (let i = 0; i < n; i++) {
      const fd = 3 + i;
      const name = names[i] || undefined;
      const refuse = (why: string): ListenError => new ListenError(`cannot listen on the socket systemd passed as fd ${fd}${name ? ` (${name})` : ''}: ${why}: baton needs a listening socket, Accept=no (the default) in its .socket unit, not Accept=yes`, 78);
      if (name === 'connection') throw refuse('it is a connection');
      // Shared mode: held, never polled here (the workers listen on their
      // copies). Primary mode: accepted from only once the first generation
      // is ready (start()); until then connections wait in the kernel's
      // queue, which outlives this process: one stopped before it served (a
      // restart behind the .socket unit) leaves them to the next instance
      // instead of taking them and closing them unanswered.
      const handle = reopen(fd);
      const peer: { address?: string } = {};
      if (handle.getpeername?.(peer) === 0) throw refuse('it is a connection');
      entries.push({ info: tcpInfoOf(handle, { kind: 'unix', path: name ?? `fd ${fd}` }), source: 'systemd', ...(name ? { name } : {}), handle });
      if (mode === 'primary') pending.push({ handle, index: i, refuse });
    }
    const listeners = new Listeners(mode, entries, [], pending, onConnection, onError);
    if (mode === 'shared') listeners.accepting = true;
    return listeners;
  }

  /**
   * The listeners a replaced primary handed over. In primary mode they
   * accept only once start() is called: until this primary's first
   * generation is ready, the old one keeps accepting on the same sockets.
   */
  static fromUpgrade(mode: AcceptMode, handed: readonly HandedOverListener[], onConnection: OnConnection, onError: (err: Error) => void): Listeners {
    const entries: Entry[] = [];
    const pending: Pending[] = [];
    for (const [index, h] of handed.entries()) {
      const handle = reopen(h.fd);
      entries.push({ info: h.info, source: h.source, ...(h.name ? { name: h.name } : {}), handle });
      if (mode === 'primary') pending.push({ handle, index, refuse: (why) => new ListenError(`cannot accept on the socket the old primary handed over (fd ${h.fd}): ${why}`, 4) });
    }
    // The files of unix sockets are this primary's to remove now.
    const owned = handed.filter((h) => h.info.kind === 'unix' && h.source === 'bound').map((h) => (h.info as { path: string }).path);
    return new Listeners(mode, entries, owned, pending, onConnection, onError, false);
  }

  /** Shared mode: whether this primary still accepts on listener `index` itself (it wants a copy back). */
  polling(index: number): boolean {
    return this.entries[index]?.polling === true;
  }

  /**
   * Shared mode: `copy` is a descriptor of listener `index`'s socket that a
   * worker sent back. Held from now on instead of the one this primary
   * polls, which closes: the socket stays open and listening (the copy
   * and the workers' keep it), and what comes queues for the workers.
   * Returns false if it was not wanted (the caller closes it).
   */
  adopt(index: number, copy: unknown): boolean {
    const entry = this.entries[index];
    // At a shutdown it polls on purpose (the sweep), and keeps what it has.
    if (!entry?.polling || !entry.handle || this.sweeping || this.closed.has(entry.handle)) return false;
    const old = entry.handle;
    entry.handle = copy as RawHandle;
    entry.polling = false;
    old.onconnection = null;
    this.closed.add(old);
    old.close();
    return true;
  }

  /** Starts accepting on handed-over descriptors and systemd sockets (a no-op for the others). */
  start(): void {
    if (this.accepting) return;
    this.accepting = true;
    for (const p of this.pending) {
      if (this.closed.has(p.handle)) continue; // stopped before it started
      const err = p.handle.listen(BACKLOG);
      if (err) throw p.refuse(errnoMessage(err));
      takeConnections(p.handle, p.index, this.onConnection, this.onError);
    }
  }

  /**
   * Stops accepting: closes this primary's servers, and in shared mode its
   * copies of the sockets (the workers close theirs as they drain), so the
   * port closes and new connections are refused. The sockets' files stay
   * (cleanup() removes them).
   */
  stopAccepting(): void {
    this.sweeping = false;
    for (const e of this.entries) {
      if (e.server?.listening) e.server.close();
      if (e.handle && !this.closed.has(e.handle)) {
        this.closed.add(e.handle);
        e.handle.close();
      }
    }
  }

  private readonly closed = new Set<RawHandle>();
  private sweeping = false;

  /**
   * Stops accepting after a last sweep of the kernel's accept queues, then
   * calls `done`. Closing a listening socket resets the connections queued
   * on it, whose clients may already have sent a request (nginx answers a
   * POST so reset with 502, and does not retry it): those that arrived
   * while this process was busy starting the shutdown are accepted first.
   * libuv accepts one connection per event-loop turn here, so the sweep
   * goes on turn after turn while turns still accept, for at most
   * SWEEP_MAX_MS. What arrives in the microseconds between its last turn
   * and the close is reset, as with any server that closes its port. In
   * shared mode the workers accept: `othersStopped` calls back once they
   * have closed their copies, and the sweep starts then (this primary
   * accepts meanwhile too, and is the last to close).
   */
  stopAcceptingAfterSweep(done: (sweep: SweepResult) => void, othersStopped?: (then: () => void) => void): void {
    this.sweeping = true;
    if (this.mode === 'shared') {
      // The workers accept here: this primary accepts too (its connections
      // go to the serving workers), until they have closed their copies;
      // then it sweeps, and closes the port last. Not a systemd socket:
      // systemd holds it open, so what is queued there is not reset but
      // left to the next instance.
      this.entries.forEach((e, index) => {
        if (!e.handle || e.polling || e.source === 'systemd' || this.closed.has(e.handle)) return;
        if (e.handle.listen(BACKLOG) !== 0) return;
        takeConnections(e.handle, index, this.onConnection, this.onError);
        e.polling = true;
      });
      if (othersStopped) return othersStopped(() => this.sweep(done));
    }
    this.sweep(done);
  }

  private sweep(done: (sweep: SweepResult) => void): void {
    const started = performance.now();
    const until = started + SWEEP_MAX_MS;
    const first = acceptedCount;
    let seen = acceptedCount;
    let idleTurns = 0;
    const turn = (): void => {
      const result = (): SweepResult => ({ accepted: acceptedCount - first, ms: Math.round(performance.now() - started) });
      // A forced stop meanwhile has closed them already.
      if (!this.sweeping) return done(result());
      if (acceptedCount !== seen) {
        seen = acceptedCount;
        idleTurns = 0;
      } else idleTurns++;
      // Two turns in a row that accepted nothing: the queues are empty.
      if (idleTurns >= 2 || performance.now() >= until) {
        this.stopAccepting();
        return done(result());
      }
      setImmediate(turn);
    };
    setImmediate(turn);
  }

  /** A new primary owns them now: nothing of them is removed at exit. */
  handOver(): void {
    this.handedOver = true;
  }

  /**
   * An upgrading primary owns the inherited socket files only once the old
   * one handed over: one that fails before must leave them to the old one.
   */
  takeOwnership(): void {
    this.owning = true;
  }

  get dispatchMode(): AcceptMode {
    return this.mode;
  }

  /** At exit: removes the Unix socket files this primary created. */
  cleanup(): void {
    this.stopAccepting();
    if (this.handedOver || !this.owning) return;
    for (const path of this.ownedPaths) {
      try { unlinkSync(path); } catch { /* already gone */ }
    }
  }
}

/** A listening socket's descriptor as a handle that nobody polls (shared mode). */
function reopen(fd: number): RawHandle {
  const handle = createServerHandle(null, 0, -1, fd);
  if (typeof handle === 'number') throw new ListenError(`cannot use the inherited socket fd ${fd}: ${errnoMessage(handle)}`, 78);
  return handle;
}
