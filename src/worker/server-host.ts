// How a worker hosts its server: the one seam between "a connection the
// primary handed over" and "an HTTP server that serves it". The server is
// either baton's own, built around a factory app's handler, or the app's
// own, captured when it called listen() (listen-capture.ts). Either way it
// never listens: the primary owns the port, and baton feeds it sockets.
// Whatever the server, the request gate (probes, connection tracking) sits
// in front of it, so drain semantics are written once (drain.ts).
import { createServer, ServerResponse, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttp2Server, type Http2Server } from 'node:http2';
import { Socket, type Server as NetServer } from 'node:net';
import { createServer as createTlsServer, Server as TlsServer, type TLSSocket } from 'node:tls';
import type { ListenerInfo } from '../protocol.js';
import type { RequestListener } from './app-host.js';
import { TrackedResponse, type ConnectionTracker } from './drain.js';
import { installGate, type GateOptions } from './request-gate.js';

/** baton's own HTTP/1 server for a factory app: its handler is set once the factory returns. */
export interface FactoryServer {
  readonly server: Server;
  setHandler(handler: RequestListener): void;
}

export function createFactoryServer(keepAliveTimeoutMs: number): FactoryServer {
  let handler: RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end('starting\n');
  };
  const server = createServer({ ServerResponse: TrackedResponse });
  // One listener, added before the factory runs, that calls whatever handler
  // the factory returns: a framework that wraps the server's 'request'
  // listeners while the factory runs (socket.io) wraps this one.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => handler(req, res));
  server.keepAliveTimeout = keepAliveTimeoutMs;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // A client that resets or sends garbage: answer 400 if we still can.
    if (err.code !== 'ECONNRESET' && socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  // The server never listens (the primary owns the port), but 'listening'
  // starts Node's connection bookkeeping: header/request timeouts depend on it.
  server.emit('listening');
  return { server, setHandler: (h) => { handler = h; } };
}

/**
 * A captured app server keeps its own settings (timeouts, 'connection'
 * listeners, its framework's wiring); baton only gives it its response class
 * when it uses Node's default one (a class with fields only: see drain.ts),
 * so that the tracker's per-response state has a stable shape.
 */
function adoptResponseClass(server: Server): void {
  const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'ServerResponse');
  if (key && (server as unknown as Record<symbol, unknown>)[key] === ServerResponse) {
    (server as unknown as Record<symbol, unknown>)[key] = TrackedResponse;
  }
}

function speaks(server: Server): 'h1' | 'h2' {
  const name = server.constructor.name;
  return name === 'Http2Server' || name === 'Http2SecureServer' ? 'h2' : 'h1';
}

/**
 * Express re-parents every request onto http.IncomingMessage's prototype,
 * which breaks Node's HTTP/2 compatibility request (its reads throw, and the
 * worker crashes on the first h2 request). Such an app is refused at boot
 * with HTTP2 on, rather than crashing later.
 */
export function refusesHttp2(handler: unknown): string | undefined {
  if (typeof handler !== 'function') return undefined;
  const fn = handler as unknown as { handle?: unknown; set?: unknown; request?: unknown; response?: unknown };
  if (typeof fn.handle === 'function' && typeof fn.set === 'function' && typeof fn.request === 'object' && typeof fn.response === 'object') {
    return 'HTTP2 is on, but the app is an Express app, and Express does not work over Node\'s HTTP/2 compatibility API (its first HTTP/2 request would crash the worker): set HTTP2=off for this app';
  }
  return undefined;
}

export interface TlsSettings {
  readonly cert: string;
  readonly key: string;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly http2: boolean;
}

export interface HostOptions {
  readonly listeners: readonly ListenerInfo[];
  readonly tracker: ConnectionTracker;
  readonly gate: Omit<GateOptions, 'tracker'>;
  /** TLS for TCP listeners (Unix sockets stay plain: a local proxy sits in front of those). */
  readonly tls: TlsSettings | undefined;
  /** The session-ticket keys every worker shares (for baton's TLS, or the app's own TLS server). */
  readonly ticketKeys: Buffer;
  /** A TLS handshake failed (a metric). */
  readonly tlsFailed: () => void;
  /** A factory app's handler (a captured app's are its server's request listeners). */
  readonly appHandler?: unknown;
}

/**
 * TLS is terminated here, in the worker: a TLS socket cannot move between
 * processes, so the primary hands over raw TCP sockets before any byte is
 * read. A TLS server that never listens takes them; after the handshake,
 * ALPN decides: HTTP/1.1 connections go to the HTTP/1 server (baton's or
 * the app's own, which so keeps its settings and its WebSockets), HTTP/2 ones
 * to baton's HTTP/2 server, which passes requests to the same app.
 */
class TlsTransport {
  readonly terminator: TlsServer;
  readonly h2: Http2Server | undefined;

  constructor(settings: TlsSettings, ticketKeys: Buffer, h1: Server, gate: GateOptions, tlsFailed: () => void) {
    this.terminator = createTlsServer({
      // noDelay as https.Server has it: small responses go out at once.
      noDelay: true,
      cert: settings.cert, key: settings.key, minVersion: settings.minVersion, ticketKeys,
      ALPNProtocols: settings.http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
    });
    this.terminator.on('tlsClientError', () => tlsFailed());
    if (settings.http2) {
      const h2 = createHttp2Server();
      installGate(h2, 'h2', false, gate);
      // The app's request listeners, as its HTTP/1 server has them (a
      // framework may have wrapped them: socket.io does).
      h2.on('request', (req, res) => {
        for (const listener of h1.listeners('request')) (listener as (...a: unknown[]) => void).call(h1, req, res);
      });
      h2.on('sessionError', () => { /* the session is destroyed; the tracker sees it close */ });
      this.h2 = h2;
    }
    this.terminator.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2' && this.h2) this.h2.emit('connection', socket);
      else h1.emit('connection', socket);
    });
  }
}

/** What node:net keeps on a server for the sockets it accepts (not in @types/node). */
interface SocketDefaults {
  allowHalfOpen?: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  /** In seconds, as node:net stores it. */
  keepAliveInitialDelay?: number;
}

export class ServerHost {
  /** The keep-alive timeout its HTTP/1 server advertises: how long a drain keeps an idle socket. */
  readonly keepAliveTimeoutMs: () => number;
  private readonly transport: TlsTransport | undefined;

  constructor(readonly server: Server, readonly kind: 'factory' | 'captured', private readonly options: HostOptions) {
    if (kind === 'captured') adoptResponseClass(server);
    const gate = { ...options.gate, tracker: options.tracker };
    installGate(server, speaks(server), server instanceof TlsServer, gate);
    this.keepAliveTimeoutMs = () => server.keepAliveTimeout ?? 5000;
    if (options.tls) {
      if (server instanceof TlsServer) {
        throw new Error('the app listens with its own TLS server (https/http2.createSecureServer) while TLS_CERT_FILE and TLS_KEY_FILE are set: terminate TLS in one place, baton (give the app a plain http server) or the app (unset the TLS keys)');
      }
      if (options.tls.http2) {
        const refusal = [options.appHandler, ...server.listeners('request')].map(refusesHttp2).find((r) => r !== undefined);
        if (refusal) throw new Error(refusal);
      }
      this.transport = new TlsTransport(options.tls, options.ticketKeys, server, gate, options.tlsFailed);
    } else if (server instanceof TlsServer) {
      // The app terminates TLS itself: its sessions resume across workers too.
      server.setTicketKeys(options.ticketKeys);
      server.on('tlsClientError', () => options.tlsFailed());
    }
  }

  /** Whether the app's own server terminates TLS (then it gets the shared ticket keys). */
  get ownTls(): boolean {
    return this.server instanceof TlsServer;
  }

  /** What takes raw sockets from the primary on a TCP listener, for the warm-up. */
  get tcpEntry(): { entry: NodeJS.EventEmitter; tls: boolean; http2: boolean } {
    return this.transport
      ? { entry: this.transport.terminator, tls: true, http2: this.transport.h2 !== undefined }
      : { entry: this.server, tls: this.ownTls, http2: false };
  }

  /** Rotated TLS session-ticket keys: for baton's TLS, or the app's own TLS server. */
  setTicketKeys(keys: Buffer): void {
    if (this.transport) this.transport.terminator.setTicketKeys(keys);
    else if (this.server instanceof TlsServer) this.server.setTicketKeys(keys);
  }

  /** What takes the connections of `listeners[listener]`: the TLS terminator or the HTTP server. */
  private entry(listener: number): NetServer {
    return this.transport && this.options.listeners[listener]?.kind === 'tcp' ? this.transport.terminator : this.server;
  }

  /**
   * A socket for a raw accepted handle, set up as node:net's accept would
   * for the server that takes it (half-open as http.Server wants, Nagle off
   * unless that server asked for it, TCP keep-alive if it did): emitting
   * 'connection' by hand skips that setup, and without TCP_NODELAY every
   * keep-alive response costs more.
   */
  socketFor(handle: unknown, listener: number): Socket {
    const target = this.entry(listener) as NetServer & SocketDefaults;
    const socket = new Socket({ handle, allowHalfOpen: target.allowHalfOpen ?? false, readable: true, writable: true } as ConstructorParameters<typeof Socket>[0]);
    if (target.noDelay !== false) socket.setNoDelay(true);
    if (target.keepAlive) socket.setKeepAlive(true, (target.keepAliveInitialDelay ?? 0) * 1000);
    return socket;
  }

  /** A connection accepted on `listeners[listener]` (by the primary, or by this worker with DISPATCH=shared). */
  feed(socket: Socket, listener: number): void {
    this.options.tracker.addRaw(socket);
    this.entry(listener).emit('connection', socket);
  }
}
