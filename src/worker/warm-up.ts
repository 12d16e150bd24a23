// A fresh process runs cold code: Node compiles each function of its HTTP
// path on first use, so the first requests a new worker served after a reload
// had a p99 of 10-17 ms on 2 cores (steady state: ~3 ms). Before it reports
// ready, a worker sends itself a few requests to its own health endpoint over
// loopback, through the same path clients take (TLS, and HTTP/2 when it is
// on), so that code is compiled before clients arrive. Only baton's health
// handler runs: the app never sees these requests.
import type { EventEmitter } from 'node:events';
import { connect as h2connect } from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { realListen } from './listen-capture.js';

export const WARM_UP_REQUESTS = 10;
const WARM_UP_TIMEOUT_MS = 2000;

export interface WarmUpPath {
  /** What takes the primary's raw sockets: the HTTP server, or the TLS terminator in front of it. */
  readonly entry: EventEmitter;
  readonly tls: boolean;
  readonly http2: boolean;
}

function withTimeout<T>(what: Promise<T>, onTimeout: () => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`no answer within ${WARM_UP_TIMEOUT_MS} ms`));
    }, WARM_UP_TIMEOUT_MS);
    what.then((v) => { clearTimeout(timer); resolve(v); }, (err) => { clearTimeout(timer); reject(err); });
  });
}

/** `requests` pipelined HTTP/1.1 GETs of `path` on one connection; resolves when the server has answered and closed it. */
function http1(socket: Socket, path: string, requests: number): Promise<void> {
  const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
  const last = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
  return withTimeout(new Promise<void>((resolve, reject) => {
    // Not end(): a half-closed socket makes the server abort what it has not answered yet.
    socket.once(socket.constructor.name === 'TLSSocket' ? 'secureConnect' : 'connect', () => socket.write(request.repeat(requests - 1) + last));
    socket.resume();
    socket.once('error', reject);
    // The server closes the connection after answering the last request.
    socket.once('close', () => resolve());
  }), () => socket.destroy());
}

function http2(port: number, path: string, requests: number): Promise<void> {
  const session = h2connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path });
    stream.on('error', reject);
    stream.resume();
    stream.on('end', () => resolve());
  });
  return withTimeout(Promise.all(Array.from({ length: requests }, one)).then(() => undefined), () => session.destroy())
    .finally(() => session.close());
}

/**
 * Serves `requests` GETs of `path` through `how.entry`, over loopback
 * connections. Rejects on an error or after a timeout (the caller goes on:
 * warm-up only saves latency).
 */
export async function warmUp(how: WarmUpPath, path: string, requests = WARM_UP_REQUESTS): Promise<void> {
  const local = createServer((socket) => how.entry.emit('connection', socket));
  try {
    await new Promise<void>((resolve, reject) => {
      local.once('error', reject);
      // Not the app's listen (that is captured), and bound here, not through
      // node:cluster by the primary (exclusive).
      realListen.call(local, { port: 0, host: '127.0.0.1', exclusive: true }, resolve);
    });
    const { port } = local.address() as AddressInfo;
    const socket = how.tls
      ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
      : connect(port, '127.0.0.1');
    await http1(socket, path, requests);
    if (how.http2) await http2(port, path, requests);
  } finally {
    local.close();
  }
}
