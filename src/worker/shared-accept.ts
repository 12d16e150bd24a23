// DISPATCH=shared, in a worker: accept from the listening sockets the
// primary shares, and keep what this worker's share allows (see
// accept-balance.ts); the rest goes to the primary, unread, for a peer.
// Raw libuv handles, as the primary's own listeners take them: a
// connection is forwarded before any stream or parser exists for it.
import { errnoMessage } from '../errno.js';
import type { WorkerMessage } from '../protocol.js';
import { AcceptBalance, LoadReporter } from './accept-balance.js';

interface ListeningHandle {
  listen(backlog: number): number;
  close(): void;
  onconnection: ((err: number, conn: unknown) => void) | null;
}

interface ClientHandle {
  close(): void;
}

export interface SharedAcceptOptions {
  /** Connections this worker holds. */
  readonly open: () => number;
  /** Whether this worker drains (it then keeps what it accepts: no peer asked for it). */
  readonly draining: () => boolean;
  /** Serve a connection here. */
  readonly keep: (conn: unknown, listener: number) => void;
  readonly send: (msg: WorkerMessage, handle?: unknown, done?: (err: Error | null) => void) => void;
  readonly error: (err: Error) => void;
  readonly slack?: number;
}

const BACKLOG = 2048;

export class SharedAcceptor {
  private readonly handles: ListeningHandle[] = [];
  private readonly balance: AcceptBalance;
  readonly reporter: LoadReporter;

  constructor(private readonly options: SharedAcceptOptions) {
    this.balance = new AcceptBalance(options.slack);
    this.reporter = new LoadReporter(options.open, (open) => options.send({ type: 'load', open }));
  }

  /** The primary's latest view of the peers. */
  peers(min: number | null): void {
    this.balance.peers(min);
  }

  /** Accept from `handle` (the socket of `listeners[listener]`) until stop(). */
  start(raw: unknown, listener: number): void {
    const handle = raw as ListeningHandle;
    handle.onconnection = (err, conn) => {
      if (err) return this.options.error(Object.assign(new Error(`accept failed: ${errnoMessage(err)}`), { errno: err }));
      this.take(conn as ClientHandle, listener);
    };
    const err = handle.listen(BACKLOG);
    if (err) {
      handle.close();
      return this.options.error(new Error(`cannot accept on listener ${listener}: ${errnoMessage(err)}`));
    }
    this.handles.push(handle);
  }

  private take(conn: ClientHandle, listener: number): void {
    const { options } = this;
    const open = options.open();
    if (options.draining() || !this.balance.forward(open)) return options.keep(conn, listener);
    // With this worker's count: the primary's view of it is fresh at each forward.
    this.reporter.told(open);
    options.send({ type: 'forward', listener, open }, conn, (err) => {
      // Written: the message holds its own descriptor, this one can go.
      if (!err) return conn.close();
      this.balance.unforward();
      options.keep(conn, listener);
    });
  }

  /** Stop accepting: what is queued stays for the others. Returns the listening handles, for the caller to close. */
  stop(): { close(): void }[] {
    this.reporter.stop();
    return this.handles.splice(0);
  }
}
