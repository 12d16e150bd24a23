// A fresh process runs cold code: Node compiles each function of its HTTP
// path on first use, so the first requests a new worker served after a reload
// had a p99 of 10-17 ms on 2 cores (steady state: ~3 ms). Before it reports
// ready, a worker sends itself a few requests to its own health endpoint over
// loopback, so that code is compiled before clients arrive. Only baton's
// health handler runs: the app never sees these requests.
import type { Server } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { realListen } from './listen-capture.js';

export const WARM_UP_REQUESTS = 10;
const WARM_UP_TIMEOUT_MS = 2000;

/**
 * Serves `requests` pipelined GETs of `path` through `server`, over a loopback
 * connection. Resolves when the server has answered them all and closed the
 * connection; rejects on an error or after a timeout (the caller goes on:
 * warm-up only saves latency).
 */
export async function warmUp(server: Server, path: string, requests = WARM_UP_REQUESTS): Promise<void> {
  const local = createServer((socket) => server.emit('connection', socket));
  try {
    await new Promise<void>((resolve, reject) => {
      local.once('error', reject);
      // Not the app's listen (that is captured), and bound here, not through
      // node:cluster by the primary (exclusive).
      realListen.call(local, { port: 0, host: '127.0.0.1', exclusive: true }, resolve);
    });
    const { port } = local.address() as AddressInfo;
    const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    const last = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
    await new Promise<void>((resolve, reject) => {
      const client = connect(port, '127.0.0.1');
      const timer = setTimeout(() => client.destroy(new Error(`no answer within ${WARM_UP_TIMEOUT_MS} ms`)), WARM_UP_TIMEOUT_MS);
      // Not end(): a half-closed socket makes the server abort what it has not answered yet.
      client.once('connect', () => client.write(request.repeat(requests - 1) + last));
      client.resume();
      client.once('error', reject);
      // The server closes the connection after answering the last request.
      client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  } finally {
    local.close();
  }
}
