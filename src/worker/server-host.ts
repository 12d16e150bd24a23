// How a worker hosts its server: the one seam between "a connection the
// primary handed over" and "an HTTP server that serves it". The server is
// either baton's own, built around a factory app's handler, or the app's
// own, captured when it called listen() (listen-capture.ts). Either way it
// never listens: the primary owns the port, and baton feeds it sockets.
// Whatever the server, the request gate (probes, connection tracking) sits
// in front of it, so drain semantics are written once (drain.ts).
import { createServer, ServerResponse, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
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

export interface HostOptions {
  readonly listeners: readonly ListenerInfo[];
  readonly tracker: ConnectionTracker;
  readonly gate: Omit<GateOptions, 'tracker'>;
}

export class ServerHost {
  /** The keep-alive timeout its HTTP/1 server advertises: how long a drain keeps an idle socket. */
  readonly keepAliveTimeoutMs: () => number;

  constructor(readonly server: Server, readonly kind: 'factory' | 'captured', private readonly options: HostOptions) {
    if (kind === 'captured') adoptResponseClass(server);
    installGate(server, speaks(server), server instanceof TlsServer, { ...options.gate, tracker: options.tracker });
    this.keepAliveTimeoutMs = () => server.keepAliveTimeout ?? 5000;
  }

  /** Whether the server terminates TLS itself (an app's own https server). */
  get ownTls(): boolean {
    return this.server instanceof TlsServer;
  }

  /** A connection from the primary, accepted on `listeners[listener]`. */
  feed(socket: Socket, _listener: number): void {
    this.options.tracker.addRaw(socket);
    this.server.emit('connection', socket);
  }
}
