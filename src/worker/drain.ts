// Connection accounting for a worker whose servers are fed sockets by hand
// (they never listen, so server.close() cannot help): counts connections and
// in-flight requests, and drains them without the keep-alive race.
//
// The race: destroying a keep-alive socket that looks idle can cross a request
// the client is sending on it. So a drain never closes an idle socket at the
// instant it starts: responses carry Connection: close, and idle sockets end
// by the keep-alive timeout the server already advertises (well-behaved
// clients stop reusing a socket before that). Each connection gets its own
// moment to be told to go, spread over a window (Envoy's "gradual" drain), so
// that clients do not all reconnect at once:
//
//   what                              | window (reload, scale-down) | shutdown
//   keep-alive HTTP/1 connection      | DRAIN_SPREAD_MS             | at once
//   HTTP/2 session (GOAWAY, RFC 9113) | DRAIN_SPREAD_MS             | at once
//   upgraded (WebSocket) connection,  | DRAIN_SPREAD_UPGRADED_MS    | at once
//   streaming response (SSE)          |                             |
//
// At its moment a keep-alive connection's next response carries
// Connection: close; an HTTP/2 session gets GOAWAY; the app hears of it for
// every connection through drainSignal(req) (an AbortSignal), which is the
// only way a WebSocket or an event stream can be told: baton cannot speak
// the app's protocol. Shortly before the drain deadline the worker closes
// whatever is still open (see runtime.ts).
import { ServerResponse, type IncomingMessage } from 'node:http';
import { constants as h2, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DrainReason } from '../protocol.js';

export interface ResponseObserver {
  /** `status` 0: the client left before the response was finished. */
  record(status: number, seconds: number, protocol: 'http/1.1' | 'h2'): void;
}

/** The reason an app's drainSignal aborts with. */
export class DrainNotice extends Error {
  override readonly name = 'DrainNotice';
  readonly code = 'BATON_DRAIN';
  constructor(readonly reason: DrainReason) {
    super(`baton is draining this worker (${reason}): finish and close this connection; the client should reconnect`);
  }
}

/** What the tracker knows of one connection or session. */
interface Conn {
  readonly kind: 'h1' | 'h2';
  /** The primary's socket underneath (the same object for plain HTTP/1). */
  readonly raw: Socket | undefined;
  inFlight: number;
  /** h1: the newest response begun on it: the one a drain asks to close the connection. */
  res: ServerResponse | undefined;
  upgraded: boolean;
  idleTimer: NodeJS.Timeout | undefined;
  /** While draining: from this time (performance.now()) its responses carry Connection: close. */
  closeAt: number;
  /** Created when the app asks for drainSignal(req) on it. */
  controller: AbortController | undefined;
  told: boolean;
}

/**
 * The response class of the worker's own HTTP/1 server: what the tracker
 * needs when a response closes rides on the response itself, so a request
 * costs no closure and no once-wrapper (this is the hot path). Only fields,
 * never overridden methods: Express re-parents every response onto its own
 * prototype (whose parent is ServerResponse's), skipping this class's. Apps'
 * own servers get the same fields as plain properties.
 */
export class TrackedResponse<Req extends IncomingMessage = IncomingMessage> extends ServerResponse<Req> {
  tracker: ConnectionTracker | undefined = undefined;
  conn: Conn | undefined = undefined;
  observer: ResponseObserver | undefined = undefined;
  startedAt = 0;
}

type AnyResponse = ServerResponse | Http2ServerResponse;
interface Tracked {
  tracker?: ConnectionTracker | undefined;
  conn?: Conn | undefined;
  observer?: ResponseObserver | undefined;
  startedAt?: number;
}

function onResponseClose(this: AnyResponse & Tracked): void {
  this.tracker?.responseClosed(this);
}

/** How long a socket we ended may stay half-open before it is destroyed. */
const END_GRACE_MS = 1000;
/** The largest HTTP/2 stream id: a first GOAWAY with it refuses nothing (RFC 9113 §6.8). */
const MAX_STREAM_ID = 2 ** 31 - 1;
/**
 * The final GOAWAY waits for the PING round trip and at least this long (Go's
 * net/http2 waits 1 s): a client may have queued a request behind the PING's
 * acknowledgement (nghttp2 sends PING acks before new streams), which a
 * GOAWAY right after the ack would refuse.
 */
const GOAWAY_GRACE_MS = 1000;
/** If the client never answers the PING (Node's client does not, once it has a GOAWAY), the final GOAWAY goes anyway. */
const GOAWAY_PING_TIMEOUT_MS = 1500;

export interface TrackerOptions {
  /** How long a draining worker keeps an idle socket on a reload: the keep-alive timeout its server advertises. */
  readonly idleTimeoutMs: () => number;
  /** On a shutdown, idle sockets are kept this long (they may carry one more request), then ended. */
  readonly shutdownIdleMs: number;
  readonly spreadMs: number;
  readonly longLivedSpreadMs: number;
}

export class ConnectionTracker {
  /** Sockets the primary handed over, until they close; their HTTP side, once known. */
  private readonly raws = new Map<Socket, Conn | undefined>();
  /** HTTP/1 connections as their server sees them (the TLS socket under TLS). */
  private readonly conns = new Map<Duplex, Conn>();
  private readonly sessions = new Map<ServerHttp2Session, Conn>();
  private inFlight = 0;
  private drainReason: DrainReason | undefined;
  private onEmpty: (() => void) | undefined;
  private servedCount = 0;
  private readonly workerWide = new AbortController();
  private readonly rawTimers = new Map<Socket, NodeJS.Timeout>();

  constructor(private readonly options: TrackerOptions) {}

  get draining(): boolean {
    return this.drainReason !== undefined;
  }

  /** Connections this worker holds (what DISPATCH=shared balances on). */
  get open(): number {
    return this.raws.size;
  }

  /** Called when a connection is added or closes (DISPATCH=shared reports the count). */
  onOpenChange: (() => void) | undefined;

  get reason(): DrainReason | undefined {
    return this.drainReason;
  }

  get stats(): { sockets: number; inFlight: number; served: number; upgraded: number; longLived: number } {
    let upgraded = 0;
    let streaming = 0;
    for (const c of this.conns.values()) {
      if (c.upgraded) upgraded++;
      else if (isStreaming(c.res)) streaming++;
    }
    return { sockets: this.raws.size, inFlight: this.inFlight, served: this.servedCount, upgraded, longLived: upgraded + streaming };
  }

  /** Requests served before the worker was ready (its warm-up) are not the app's. */
  forgetServed(): void {
    this.servedCount = 0;
  }

  /** Aborts when this worker starts to drain (for the app: ctx.signal). */
  get signal(): AbortSignal {
    return this.workerWide.signal;
  }

  /**
   * The signal for the connection `req` came on: it aborts at that
   * connection's moment in a drain. Without a known request, the
   * worker-wide one.
   */
  signalFor(req?: IncomingMessage | Http2ServerRequest): AbortSignal {
    const conn = req ? this.connOf(req) : undefined;
    if (!conn) return this.workerWide.signal;
    conn.controller ??= new AbortController();
    if (conn.told && !conn.controller.signal.aborted) conn.controller.abort(new DrainNotice(this.drainReason ?? 'shutdown'));
    return conn.controller.signal;
  }

  private connOf(req: IncomingMessage | Http2ServerRequest): Conn | undefined {
    const stream = (req as Http2ServerRequest).stream;
    if (stream !== undefined) return this.sessions.get(stream.session as ServerHttp2Session);
    return this.conns.get(req.socket);
  }

  /** A connection the primary handed to this worker (before any TLS or HTTP). */
  addRaw(socket: Socket): void {
    this.raws.set(socket, undefined);
    socket.once('close', () => {
      clearTimeout(this.rawTimers.get(socket));
      this.rawTimers.delete(socket);
      this.raws.delete(socket);
      this.onOpenChange?.();
      this.checkEmpty();
    });
    this.onOpenChange?.();
    if (this.draining) this.expireIfSilent(socket);
  }

  /** An HTTP/1 server saw a connection ('connection': the raw socket, or its TLS socket). */
  addConnection(socket: Duplex): void {
    const raw = rawOf(socket);
    const conn = newConn('h1', raw);
    this.conns.set(socket, conn);
    if (raw && this.raws.has(raw)) this.raws.set(raw, conn);
    socket.once('close', () => {
      clearTimeout(conn.idleTimer);
      this.conns.delete(socket);
    });
    if (this.draining) {
      conn.closeAt = 0;
      this.tell(conn);
      this.becameIdle(socket, conn);
    }
  }

  /** An HTTP/2 server made a session. */
  addSession(session: ServerHttp2Session): void {
    const raw = rawOf(session.socket as Duplex);
    const conn = newConn('h2', raw);
    this.sessions.set(session, conn);
    if (raw && this.raws.has(raw)) this.raws.set(raw, conn);
    session.once('close', () => this.sessions.delete(session));
    if (this.draining) this.goAway(session, conn);
  }

  /**
   * A request began; call before the app sees it. `observer` (if any) hears
   * of the response's end.
   */
  beginRequest(req: IncomingMessage | Http2ServerRequest, res: AnyResponse, observer?: ResponseObserver): void {
    const conn = this.connOf(req);
    const r = res as AnyResponse & Tracked;
    if (conn) {
      conn.inFlight++;
      if (conn.kind === 'h1') {
        conn.res = res as ServerResponse;
        if (conn.idleTimer !== undefined) {
          clearTimeout(conn.idleTimer);
          conn.idleTimer = undefined;
        }
        if (this.draining && performance.now() >= conn.closeAt) closeAfterResponse(r as ServerResponse);
      }
    } else if (this.draining && !(req as Http2ServerRequest).stream) closeAfterResponse(r as ServerResponse);
    this.inFlight++;
    r.tracker = this;
    r.conn = conn;
    r.observer = observer;
    if (observer) r.startedAt = performance.now();
    res.on('close', onResponseClose);
  }

  /** `res` closed (finished, or its client left). */
  responseClosed(res: AnyResponse & Tracked): void {
    this.inFlight--;
    this.servedCount++;
    res.observer?.record(res.writableFinished ? res.statusCode : 0, (performance.now() - (res.startedAt ?? 0)) / 1000, res.conn?.kind === 'h2' ? 'h2' : 'http/1.1');
    const conn = res.conn;
    if (!conn || --conn.inFlight > 0) return;
    if (conn.kind === 'h1') {
      conn.res = undefined;
      const socket = (res as ServerResponse).req.socket;
      if (this.draining && !socket.destroyed && !conn.upgraded) this.becameIdle(socket, conn);
    }
  }

  /** The HTTP/1 server emitted 'upgrade' for `req`: its socket now belongs to the app (a WebSocket). */
  upgraded(req: IncomingMessage): void {
    const conn = this.conns.get(req.socket);
    if (!conn) return;
    conn.upgraded = true;
    clearTimeout(conn.idleTimer);
    conn.idleTimer = undefined;
    // Upgraded after the drain began: it is told at once.
    if (this.draining) this.tell(conn);
  }

  /**
   * Starts the drain and calls `onEmpty` once no connection is left.
   * Returns false if nothing changed (a reload drain may be escalated to a
   * shutdown drain, never the reverse).
   */
  drain(reason: DrainReason, onEmpty: () => void): boolean {
    if (this.drainReason === reason || this.drainReason === 'shutdown') return false;
    const escalated = this.drainReason !== undefined;
    this.drainReason = reason;
    this.onEmpty = onEmpty;
    if (!this.workerWide.signal.aborted) this.workerWide.abort(new DrainNotice(reason));
    const now = performance.now();
    const atOnce = reason === 'shutdown';
    const moment = (window: number): number => now + (atOnce ? 0 : Math.random() * window);
    const { spreadMs, longLivedSpreadMs } = this.options;
    for (const [socket, conn] of this.conns) {
      if (conn.upgraded || isStreaming(conn.res)) {
        // Long-lived: only the app can end it; it hears at its moment.
        this.at(moment(longLivedSpreadMs), () => this.tell(conn));
        continue;
      }
      conn.closeAt = moment(spreadMs);
      this.at(conn.closeAt, () => this.tell(conn));
      // A connection with a response in flight closes after it, once its
      // moment has come. Only its newest response needs the header: with
      // pipelining, the older ones are answered first anyway.
      const res = conn.res;
      if (!res) this.becameIdle(socket, conn);
      else this.at(conn.closeAt, () => closeAfterResponse(res));
    }
    for (const [session, conn] of this.sessions) {
      // Streams in flight finish; a streaming one hears of it through its drainSignal.
      this.at(moment(spreadMs), () => this.goAway(session, conn));
    }
    if (!escalated) for (const [raw, conn] of this.raws) if (!conn) this.expireIfSilent(raw);
    this.checkEmpty();
    return true;
  }

  /** The drain deadline is near: ends whatever is still open. Returns how many connections that was. */
  closeAll(): number {
    let n = 0;
    for (const raw of [...this.raws.keys()]) {
      if (raw.destroyed) continue;
      n++;
      raw.destroy();
    }
    return n;
  }

  /** Runs `fn` at `when` (performance.now() time), now if that has passed. */
  private at(when: number, fn: () => void): void {
    const delay = when - performance.now();
    if (delay <= 0) fn();
    else setTimeout(fn, delay).unref();
  }

  /** This connection's moment came: the app hears it (drainSignal). */
  private tell(conn: Conn): void {
    if (conn.told) return;
    conn.told = true;
    conn.controller?.abort(new DrainNotice(this.drainReason ?? 'shutdown'));
  }

  /** RFC 9113 §6.8: GOAWAY with the largest stream id, a PING round trip (and a grace), then GOAWAY with the last stream accepted. */
  private goAway(session: ServerHttp2Session, conn: Conn): void {
    this.tell(conn);
    if (session.closed || session.destroyed) return;
    let sent = false;
    // A Node client answers our GOAWAY with one of its own, and Node's server
    // session closes itself as soon as it reads one: its final GOAWAY would
    // then go out at once, refusing the streams the client sent meanwhile.
    // Until our final GOAWAY, the session stays open.
    const nativeClose = session.close;
    session.close = function (this: ServerHttp2Session, callback?: () => void): void {
      if (sent) return nativeClose.call(this, callback);
      if (callback) this.once('close', callback);
    };
    session.goaway(h2.NGHTTP2_NO_ERROR, MAX_STREAM_ID);
    const startedAt = performance.now();
    const final = (): void => {
      if (sent) return;
      sent = true;
      clearTimeout(timer);
      // close() sends GOAWAY with the last stream id it accepted, lets the
      // streams in flight finish, then ends the session.
      if (!session.closed && !session.destroyed) session.close();
    };
    const timer = setTimeout(final, GOAWAY_PING_TIMEOUT_MS);
    timer.unref();
    const afterGrace = (): void => {
      const left = GOAWAY_GRACE_MS - (performance.now() - startedAt);
      if (left <= 0) final();
      else setTimeout(final, left).unref();
    };
    try {
      if (!session.ping(() => afterGrace())) afterGrace();
    } catch {
      afterGrace();
    }
  }

  /** A raw connection that never became HTTP (a client that connects and says nothing, or a TLS handshake that never ends). */
  private expireIfSilent(raw: Socket): void {
    const ms = this.idleMs();
    const timer = setTimeout(() => {
      if (this.raws.get(raw) === undefined) endSocket(raw);
    }, ms);
    timer.unref();
    this.rawTimers.set(raw, timer);
  }

  private becameIdle(socket: Duplex, conn: Conn): void {
    clearTimeout(conn.idleTimer);
    const ms = this.idleMs();
    if (ms === 0) {
      endSocket(socket);
      return;
    }
    conn.idleTimer = setTimeout(() => endSocket(socket), ms);
  }

  private idleMs(): number {
    const keepAlive = this.options.idleTimeoutMs();
    return this.drainReason === 'shutdown' ? Math.min(keepAlive, this.options.shutdownIdleMs) : keepAlive;
  }

  private checkEmpty(): void {
    if (this.draining && this.raws.size === 0 && this.onEmpty) {
      const done = this.onEmpty;
      this.onEmpty = undefined;
      done();
    }
  }
}

function newConn(kind: 'h1' | 'h2', raw: Socket | undefined): Conn {
  return { kind, raw, inFlight: 0, res: undefined, upgraded: false, idleTimer: undefined, closeAt: 0, controller: undefined, told: false };
}

/** The primary's socket under a connection: itself, or the socket a TLS socket wraps. */
function rawOf(socket: Duplex): Socket | undefined {
  const parent = (socket as { _parent?: unknown })._parent;
  return (parent ?? socket) as Socket;
}

function isStreaming(res: ServerResponse | undefined): boolean {
  return res !== undefined && res.headersSent && !res.writableEnded;
}

function closeAfterResponse(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('Connection', 'close');
}

/** Ends a socket gracefully (flushing what is written), destroying it if the peer never closes. */
function endSocket(socket: Duplex): void {
  if (socket.destroyed) return;
  socket.end();
  const timer = setTimeout(() => socket.destroy(), END_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
