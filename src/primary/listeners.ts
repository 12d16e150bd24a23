// How the primary listens: a list of listening sockets that it owns for its
// whole life (Node's cluster closes the port when the last worker leaves,
// refusing connections), made one of three ways, all feeding the same
// dispatcher:
//
// - bound here: LISTEN's HOST:PORT and unix:/path addresses (or PORT/HOST);
// - inherited from systemd socket activation (LISTEN_FDS, fd 3 onward);
// - handed over by the primary this one replaces (`baton upgrade`), as extra
//   stdio descriptors.
//
// Sockets are accepted paused, so the primary never reads a byte: it only
// passes them on.
import { unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { ListenAddress } from '../config.js';
import type { ListenerInfo } from '../protocol.js';
import { claimSocketPath, listenUnix } from './unix-socket.js';

export type ListenerSource = 'bound' | 'systemd' | 'upgrade';

export interface Listener {
  readonly info: ListenerInfo;
  readonly source: ListenerSource;
  /** systemd's name for it (LISTEN_FDNAMES). */
  readonly name?: string;
  readonly server: Server;
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

const BACKLOG = 2048;

function infoOf(server: Server, fallback?: ListenerInfo): ListenerInfo {
  const addr = server.address();
  if (typeof addr === 'string') return { kind: 'unix', path: addr };
  if (addr) return { kind: 'tcp', host: addr.address, port: addr.port };
  if (fallback) return fallback;
  throw new Error('a listening socket without an address');
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

export class Listeners {
  private handedOver = false;
  private accepting = false;

  private constructor(
    readonly list: readonly Listener[],
    /** Unix socket files this primary created: removed at exit, unless handed over. */
    private readonly ownedPaths: readonly string[],
    /** Inherited from an upgrade: listen() on the descriptors only when told to (start()). */
    private readonly pending: readonly { server: Server; fd: number }[],
  ) {}

  get info(): ListenerInfo[] {
    return this.list.map((l) => l.info);
  }

  /** Listening handles, in order, for a new primary's stdio. */
  get handles(): unknown[] {
    return this.list.map((l) => (l.server as unknown as { _handle: unknown })._handle);
  }

  /** Binds `addresses` (LISTEN, or PORT/HOST). A live Unix socket is never stolen (exit 4). */
  static async bind(addresses: readonly ListenAddress[], unixMode: number, onConnection: (socket: Socket, index: number) => void, onError: (err: Error) => void): Promise<Listeners> {
    const list: Listener[] = [];
    const owned: string[] = [];
    try {
      for (const [index, addr] of addresses.entries()) {
        const server = createServer({ pauseOnConnect: true, noDelay: true }, (s) => onConnection(s, index));
        if (addr.kind === 'tcp') {
          await listenOn(server, { host: addr.host, port: addr.port, backlog: BACKLOG }).catch((err: NodeJS.ErrnoException) => {
            throw new ListenError(`cannot listen on ${addr.host}:${addr.port}: ${err.message}`, 4);
          });
        } else {
          await claimSocketPath(addr.path,
            `cannot listen on unix:${addr.path}: a live process answers on it (another baton?)`,
            `cannot listen on unix:${addr.path}: it exists and is not a socket`).catch((err: Error) => { throw new ListenError(err.message, 4); });
          await listenUnix(server, addr.path, unixMode, BACKLOG).catch((err: NodeJS.ErrnoException) => {
            throw new ListenError(`cannot listen on unix:${addr.path}: ${err.message}`, 4);
          });
          owned.push(addr.path);
        }
        server.on('error', onError);
        list.push({ info: addr.kind === 'unix' ? addr : infoOf(server), source: 'bound', server });
      }
    } catch (err) {
      for (const l of list) l.server.close();
      for (const path of owned) { try { unlinkSync(path); } catch { /* gone */ } }
      throw err;
    }
    const listeners = new Listeners(list, owned, []);
    listeners.accepting = true;
    return listeners;
  }

  /**
   * systemd socket activation: LISTEN_PID is this process and LISTEN_FDS
   * counts the descriptors from fd 3. Undefined if not activated. The
   * variables are removed from `env`: a worker's fd 3 is its IPC channel,
   * and nothing below the primary must think it was activated.
   */
  static async fromSystemd(env: NodeJS.ProcessEnv, onConnection: (socket: Socket, index: number) => void, onError: (err: Error) => void): Promise<Listeners | undefined> {
    const pid = env.LISTEN_PID;
    const count = env.LISTEN_FDS;
    const names = (env.LISTEN_FDNAMES ?? '').split(':');
    delete env.LISTEN_PID;
    delete env.LISTEN_FDS;
    delete env.LISTEN_FDNAMES;
    if (pid === undefined || count === undefined || Number(pid) !== process.pid) return undefined;
    const n = Number(count);
    if (!Number.isInteger(n) || n < 1) throw new ListenError(`LISTEN_FDS=${JSON.stringify(count)}: expected the number of sockets systemd passed`, 78);
    const list: Listener[] = [];
    for (let i = 0; i < n; i++) {
      const fd = 3 + i;
      const name = names[i] || undefined;
      if (name === 'connection') {
        throw new ListenError(`fd ${fd} is a connection, not a listening socket: baton needs Accept=no (the default) in its .socket unit, not Accept=yes`, 78);
      }
      const server = createServer({ pauseOnConnect: true, noDelay: true }, (s) => onConnection(s, i));
      await listenOn(server, { fd, backlog: BACKLOG }).catch((err: NodeJS.ErrnoException) => {
        throw new ListenError(`cannot listen on the socket systemd passed as fd ${fd}${name ? ` (${name})` : ''}: ${err.message}: baton needs a listening socket, Accept=no (the default) in its .socket unit, not Accept=yes`, 78);
      });
      server.on('error', onError);
      list.push({ info: infoOf(server), source: 'systemd', ...(name ? { name } : {}), server });
    }
    const listeners = new Listeners(list, [], []);
    listeners.accepting = true;
    return listeners;
  }

  /**
   * The listeners a replaced primary handed over. They accept only once
   * start() is called: until this primary's first generation is ready, the
   * old one keeps accepting on the same sockets.
   */
  static fromUpgrade(handed: readonly HandedOverListener[], onConnection: (socket: Socket, index: number) => void, onError: (err: Error) => void): Listeners {
    const list: Listener[] = [];
    const pending: { server: Server; fd: number }[] = [];
    for (const [index, h] of handed.entries()) {
      const server = createServer({ pauseOnConnect: true, noDelay: true }, (s) => onConnection(s, index));
      server.on('error', onError);
      list.push({ info: h.info, source: h.source, ...(h.name ? { name: h.name } : {}), server });
      pending.push({ server, fd: h.fd });
    }
    // The files of unix sockets are this primary's to remove now.
    const owned = handed.filter((h) => h.info.kind === 'unix' && h.source === 'bound').map((h) => (h.info as { path: string }).path);
    return new Listeners(list, owned, pending);
  }

  /** Starts accepting on handed-over descriptors (a no-op for the others). */
  async start(): Promise<void> {
    if (this.accepting) return;
    this.accepting = true;
    for (const { server, fd } of this.pending) await listenOn(server, { fd, backlog: BACKLOG });
  }

  /** Stops accepting; the sockets' files stay (a shutdown removes them with cleanup()). */
  stopAccepting(): void {
    for (const l of this.list) if (l.server.listening) l.server.close();
  }

  /** A new primary owns them now: nothing of them is removed at exit. */
  handOver(): void {
    this.handedOver = true;
  }

  /** At exit: removes the Unix socket files this primary created. */
  cleanup(): void {
    if (this.handedOver) return;
    for (const path of this.ownedPaths) {
      try { unlinkSync(path); } catch { /* already gone */ }
    }
  }
}
