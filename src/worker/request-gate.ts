// What baton does for every HTTP server a worker serves, its own or the
// app's: answer the health and readiness paths before the app sees them,
// and tell the connection tracker about connections, requests, upgrades and
// HTTP/2 sessions. It sits in the server's emit(), so it sees each event
// before any listener the app (or a framework: socket.io wraps 'request')
// added, whenever they were added, and it adds no listener of its own: an
// upgrade request nobody listens for still reaches the app's request
// handler, as it would without baton.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { ConnectionTracker, ResponseObserver } from './drain.js';

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;
type Probe = (res: Res) => void;

export interface GateOptions {
  readonly tracker: ConnectionTracker;
  readonly healthPath: string;
  readonly readyPath: string;
  readonly health: Probe;
  readonly readiness: Probe;
  /** Requests are timed only when something reads the numbers (METRICS_PORT). */
  readonly observer: ResponseObserver | undefined;
}

/** `url` is `path`, with or without a query string (no allocation: this runs per request). */
function isPath(url: string, path: string): boolean {
  return url.startsWith(path) && (url.length === path.length || url.charCodeAt(path.length) === 63 /* ? */);
}

/**
 * Puts the gate in front of `server`'s listeners. `kind`: what the server
 * speaks; `secure`: it terminates TLS itself (its HTTP connections are the
 * TLS sockets of 'secureConnection', not the raw ones of 'connection').
 */
export function installGate(server: NodeJS.EventEmitter, kind: 'h1' | 'h2', secure: boolean, options: GateOptions): void {
  const h1Plain = kind === 'h1' && !secure;
  const h1Secure = kind === 'h1' && secure;
  const { tracker, healthPath, readyPath, health, readiness, observer } = options;
  /** True when baton answered the request itself. */
  const request = (req: Req, res: Res): boolean => {
    const method = req.method;
    if (method === 'GET' || method === 'HEAD') {
      const url = req.url ?? '/';
      const probe = isPath(url, healthPath) ? health : isPath(url, readyPath) ? readiness : undefined;
      if (probe) {
        tracker.beginRequest(req, res); // probes are not counted in the request metrics
        probe(res);
        return true;
      }
    }
    tracker.beginRequest(req, res, observer);
    return false;
  };
  const emit = server.emit;
  // Named parameters and `arguments` passed on whole: no allocation per event.
  server.emit = function (this: NodeJS.EventEmitter, event: string | symbol, a?: unknown, b?: unknown): boolean {
    switch (event) {
      case 'request':
      case 'checkContinue':
        if (request(a as Req, b as Res)) return true;
        break;
      case 'connection':
        if (h1Plain) tracker.addConnection(a as Duplex);
        break;
      case 'secureConnection':
        if (h1Secure) tracker.addConnection(a as Duplex);
        break;
      case 'upgrade':
        tracker.upgraded(a as IncomingMessage);
        break;
      case 'session':
        tracker.addSession(a as ServerHttp2Session);
        break;
    }
    // eslint-disable-next-line prefer-rest-params
    return emit.apply(this, arguments as unknown as Parameters<typeof emit>);
  } as typeof server.emit;
}
