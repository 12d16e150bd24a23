// Drop-in apps build their own server and call listen(), as they would
// without baton: `http.createServer(h).listen(PORT)`, Express
// `app.listen()`, Fastify `await app.listen({ port })`, Hono's `serve()`.
// In a worker, listen() is intercepted (as node:cluster does for its own
// workers): the app's server binds nothing, since the primary owns the
// port, and baton feeds it the connections the primary hands over.
//
// The captured server must look listening to its framework: the callback
// runs, 'listening' fires, `listening` is true, `address()` gives the port
// clients use, and `close(cb)` means "drain this worker" (never a throw).
//
// Which listen() calls are the app's main one: a listen on baton's port (as
// configured, or as bound when PORT=0), on one of its Unix socket paths, or
// with no port at all. Every such call is captured (Fastify binds
// `localhost` twice: IPv4 and IPv6); the first server captured gets the
// connections. A listen on any other port (an admin or metrics port) fails
// the worker's boot, naming the port: the primary cannot give it a port it
// does not own, and binding it here behind the primary's back would clash
// between workers.
import { Server, type AddressInfo } from 'node:net';
import type { ListenerInfo } from '../protocol.js';

/** baton's own servers (warm-up) listen for real. */
export const realListen = Server.prototype.listen;

export interface CaptureEvents {
  /** The first captured server: from now on the worker can be ready. */
  captured(server: Server): void;
  /** The app called close() on a captured server: the worker should drain. */
  closeRequested(server: Server, done: () => void): void;
  /** A listen() baton cannot serve: the boot fails with this error. */
  refused(err: Error): void;
}

interface ListenRequest {
  port?: number | string | null;
  host?: string;
  path?: string;
  other?: string;
  callback?: () => void;
}

/** Node's listen() argument forms, reduced to what decides where it listens. */
function parseListenArgs(args: unknown[]): ListenRequest {
  const last = args[args.length - 1];
  const callback = typeof last === 'function' ? last as () => void : undefined;
  const rest = callback ? args.slice(0, -1) : args;
  const first = rest[0];
  if (first === undefined || first === null) return { callback };
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    return { port: first, host: typeof rest[1] === 'string' ? rest[1] : undefined, callback };
  }
  if (typeof first === 'string') return { path: first, callback };
  if (typeof first === 'object') {
    const o = first as Record<string, unknown>;
    if (o.path !== undefined) return { path: String(o.path), callback };
    if (o.fd !== undefined || o.handle !== undefined || o._handle !== undefined) return { other: 'a file descriptor or handle', callback };
    return { port: o.port as number | string | undefined, host: typeof o.host === 'string' ? o.host : undefined, callback };
  }
  return { other: String(first), callback };
}

export class ListenCapture {
  private readonly servers: Server[] = [];

  constructor(private readonly listeners: readonly ListenerInfo[], private readonly configuredPort: number | undefined, private readonly events: CaptureEvents) {}

  /** The first TCP listener: what PORT/HOST say to a drop-in app. */
  private get mainTcp(): Extract<ListenerInfo, { kind: 'tcp' }> | undefined {
    return this.listeners.find((l): l is Extract<ListenerInfo, { kind: 'tcp' }> => l.kind === 'tcp');
  }

  get target(): Server | undefined {
    return this.servers[0];
  }

  install(): void {
    const capture = this;
    Server.prototype.listen = function (this: Server, ...args: unknown[]): Server {
      return capture.listen(this, args);
    } as typeof Server.prototype.listen;
  }

  private listen(server: Server, args: unknown[]): Server {
    const req = parseListenArgs(args);
    const refusal = this.refusal(req);
    if (refusal) {
      const err = Object.assign(new Error(refusal), { code: 'EADDRNOTAVAIL' });
      this.events.refused(err);
      process.nextTick(() => server.emit('error', err));
      return server;
    }
    this.captureServer(server, req);
    return server;
  }

  /** Why baton cannot serve this listen(), or undefined if it is the app's main one. */
  private refusal(req: ListenRequest): string | undefined {
    const ours = this.listeners.map((l) => l.kind === 'tcp' ? `port ${l.port}` : `unix:${l.path}`).join(', ');
    const help = `baton serves the app on ${ours} (PORT, or LISTEN) and cannot give it another; serve admin or metrics endpoints on the main port, or run them outside baton`;
    if (req.other !== undefined) return `the app listens on ${req.other}: ${help}`;
    if (req.path !== undefined) {
      if (this.listeners.some((l) => l.kind === 'unix' && l.path === req.path)) return undefined;
      return `the app listens on the Unix socket ${req.path}: ${help}`;
    }
    if (req.port === undefined || req.port === null || Number(req.port) === 0) return undefined;
    const port = Number(req.port);
    if (port === this.configuredPort || this.listeners.some((l) => l.kind === 'tcp' && l.port === port)) return undefined;
    return `the app listens on port ${port} besides its main port: ${help}`;
  }

  private captureServer(server: Server, req: ListenRequest): void {
    const capture = this;
    const main = this.mainTcp;
    let open = true;
    const address = (): AddressInfo | string => {
      if (req.path !== undefined) return req.path;
      const host = req.host ?? main?.host ?? '::';
      const v6 = host.includes(':');
      return { address: host === 'localhost' ? '127.0.0.1' : host, family: v6 ? 'IPv6' : 'IPv4', port: main?.port ?? 0 };
    };
    Object.defineProperty(server, 'listening', { configurable: true, enumerable: true, get: () => open });
    server.address = address;
    server.close = function (this: Server, cb?: (err?: Error) => void): Server {
      if (!open) {
        if (cb) process.nextTick(cb);
        return this;
      }
      open = false;
      // "Close" = this worker drains; 'close' (and cb) once it has.
      capture.events.closeRequested(server, () => {
        server.emit('close');
        cb?.();
      });
      return this;
    } as typeof server.close;
    this.servers.push(server);
    if (req.callback) server.once('listening', req.callback);
    process.nextTick(() => {
      server.emit('listening');
      if (this.servers[0] === server) this.events.captured(server);
    });
  }
}
