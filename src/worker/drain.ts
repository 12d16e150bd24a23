// Connection accounting for a worker whose http.Server is fed sockets by hand
// (it never listens, so server.close() cannot help): counts sockets and
// in-flight requests, and drains them without the keep-alive race.
//
// The race: destroying a keep-alive socket that looks idle can cross a request
// the client is sending on it. So a reload never closes an idle socket at the
// instant of the drain: responses carry Connection: close, and idle sockets
// end by the keep-alive timeout the server already advertises (well-behaved
// clients stop reusing a socket before that). On a reload each socket gets a
// random moment within DRAIN_SPREAD_MS from which its responses carry the
// close (Envoy's "gradual" drain), so clients do not all reconnect at once.
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { DrainReason } from '../protocol.js';

export interface ResponseObserver {
  /** `status` 0: the client left before the response was finished. */
  record(status: number, seconds: number): void;
}

interface SocketState {
  inFlight: number;
  /** The newest response begun on it: the one a drain asks to close the connection. */
  res: ServerResponse | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  /** While draining: from this time (performance.now()) its responses carry Connection: close. */
  closeAt: number;
}

/**
 * The response class of a worker's server: what the tracker needs to know
 * when a response closes rides on the response itself, so a request costs
 * no closure and no once-wrapper (this is the hot path). Only fields, never
 * overridden methods: Express re-parents every response onto its own
 * prototype (whose parent is ServerResponse's), skipping this class's.
 */
export class TrackedResponse<Req extends IncomingMessage = IncomingMessage> extends ServerResponse<Req> {
  tracker: ConnectionTracker | undefined = undefined;
  socketState: SocketState | undefined = undefined;
  observer: ResponseObserver | undefined = undefined;
  startedAt = 0;
}

function onResponseClose(this: TrackedResponse): void {
  this.tracker?.responseClosed(this);
}

/** How long a socket we ended may stay half-open before it is destroyed. */
const END_GRACE_MS = 1000;

export class ConnectionTracker {
  private readonly sockets = new Map<Socket, SocketState>();
  private inFlight = 0;
  private drainReason: DrainReason | undefined;
  private onEmpty: (() => void) | undefined;
  private servedCount = 0;

  constructor(private readonly idleTimeoutMs: number, private readonly spreadMs = 0) {}

  get draining(): boolean {
    return this.drainReason !== undefined;
  }

  get stats(): { sockets: number; inFlight: number; served: number } {
    return { sockets: this.sockets.size, inFlight: this.inFlight, served: this.servedCount };
  }

  /** Requests served before the worker was ready (its warm-up) are not the app's. */
  forgetServed(): void {
    this.servedCount = 0;
  }

  /** A new connection handed to this worker. */
  addSocket(socket: Socket): void {
    const state: SocketState = { inFlight: 0, res: undefined, idleTimer: undefined, closeAt: 0 };
    this.sockets.set(socket, state);
    socket.once('close', () => {
      clearTimeout(state.idleTimer);
      this.sockets.delete(socket);
      this.checkEmpty();
    });
    if (this.draining) this.becameIdle(socket, state);
  }

  /**
   * A request began on `req.socket`; call before the app sees it. `observer`
   * (if any) hears of the response's end.
   */
  beginRequest(req: IncomingMessage, res: TrackedResponse, observer?: ResponseObserver): void {
    const state = this.sockets.get(req.socket);
    if (state) {
      state.inFlight++;
      state.res = res;
      if (state.idleTimer !== undefined) {
        clearTimeout(state.idleTimer);
        state.idleTimer = undefined;
      }
    }
    this.inFlight++;
    if (this.draining && (!state || performance.now() >= state.closeAt)) closeAfterResponse(res);
    res.tracker = this;
    res.socketState = state;
    res.observer = observer;
    if (observer) res.startedAt = performance.now();
    res.on('close', onResponseClose);
  }

  /** `res` closed (finished, or its client left). */
  responseClosed(res: TrackedResponse): void {
    this.inFlight--;
    this.servedCount++;
    res.observer?.record(res.writableFinished ? res.statusCode : 0, (performance.now() - res.startedAt) / 1000);
    const state = res.socketState;
    if (state && --state.inFlight === 0) {
      state.res = undefined;
      const socket = res.req.socket;
      if (this.draining && !socket.destroyed) this.becameIdle(socket, state);
    }
  }

  /**
   * Stops keep-alive and calls `onEmpty` once no socket is left. On shutdown
   * idle sockets are ended at once (the server is going away); on a reload
   * they keep their keep-alive timeout. Returns false if nothing changed.
   */
  drain(reason: DrainReason, onEmpty: () => void): boolean {
    // A reload drain may be escalated to a shutdown drain, never the reverse.
    if (this.drainReason === reason || this.drainReason === 'shutdown') return false;
    this.drainReason = reason;
    this.onEmpty = onEmpty;
    // On a reload, keep-alive clients are asked to reconnect spread over
    // spreadMs rather than all at once: a burst of reconnects would queue
    // behind the one-at-a-time socket hand-over to new, still cold workers.
    const now = performance.now();
    const spread = reason === 'shutdown' ? 0 : this.spreadMs;
    for (const [socket, state] of this.sockets) {
      state.closeAt = now + Math.random() * spread;
      // A socket with a response in flight closes after it, once the socket's
      // moment has come. Only its newest response needs the header: with
      // pipelining, the older ones are answered first anyway.
      const res = state.res;
      if (!res) {
        this.becameIdle(socket, state);
        continue;
      }
      const delay = state.closeAt - now;
      if (delay <= 0) closeAfterResponse(res);
      else {
        const timer = setTimeout(() => closeAfterResponse(res), delay);
        res.once('close', () => clearTimeout(timer));
      }
    }
    this.checkEmpty();
    return true;
  }

  private becameIdle(socket: Socket, state: SocketState): void {
    clearTimeout(state.idleTimer);
    if (this.drainReason === 'shutdown') {
      endSocket(socket);
      return;
    }
    state.idleTimer = setTimeout(() => endSocket(socket), this.idleTimeoutMs);
  }

  private checkEmpty(): void {
    if (this.draining && this.sockets.size === 0 && this.onEmpty) {
      const done = this.onEmpty;
      this.onEmpty = undefined;
      done();
    }
  }
}

function closeAfterResponse(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('Connection', 'close');
}

/** Ends a socket gracefully (flushing what is written), destroying it if the peer never closes. */
function endSocket(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  const timer = setTimeout(() => socket.destroy(), END_GRACE_MS);
  socket.once('close', () => clearTimeout(timer));
}
