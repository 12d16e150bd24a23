// @ts-check
// Many idle keep-alive connections, as cheaply as the client can hold them:
// raw `net` sockets, one hand-written `GET /` each (so the connection is
// established in a worker, past its HTTP parser), then nothing. What matters
// afterwards is how each one ends: the server closing it (FIN) is the
// expected, graceful end; a reset or an error is a failure.
import net from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * @typedef {{
 *   sock: net.Socket, startedAt: number, respondedAt: number, endedAt: number, closedAt: number,
 *   status: number, keepAlive: string|null, connClose: boolean, error: string|null, lateData: boolean,
 * }} IdleConn
 */

const REQUEST = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

/**
 * Opens one connection, sends the request and resolves once the whole
 * response (headers + Content-Length body) is in. Never rejects: the outcome
 * is on the returned record.
 * @param {string} host @param {number} port @param {number} timeoutMs
 * @returns {Promise<IdleConn>}
 */
function openOne(host, port, timeoutMs) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    /** @type {IdleConn} */
    const c = { sock, startedAt: performance.now(), respondedAt: 0, endedAt: 0, closedAt: 0, status: 0, keepAlive: null, connClose: false, error: null, lateData: false };
    let buf = '';
    let settled = false;
    const settle = () => { if (!settled) { settled = true; clearTimeout(timer); resolve(c); } };
    const timer = setTimeout(() => { c.error = 'bench-timeout'; sock.destroy(); settle(); }, timeoutMs);
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write(REQUEST));
    const onData = (/** @type {Buffer} */ d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      c.status = Number(head.slice(9, 12));
      c.keepAlive = /\r\nkeep-alive:\s*([^\r]*)/i.exec(head)?.[1] ?? null;
      c.connClose = /\r\nconnection:\s*close/i.test(head);
      c.respondedAt = performance.now();
      sock.off('data', onData);
      // Anything after the one response would be a protocol error on our side.
      sock.on('data', () => { c.lateData = true; });
      settle();
    };
    sock.on('data', onData);
    // The server's FIN: with allowHalfOpen off (the default) net ends our side too.
    sock.on('end', () => { c.endedAt = performance.now(); });
    sock.on('error', (/** @type {any} */ e) => { c.error ??= e.code ?? e.message; });
    sock.on('close', () => { c.closedAt = performance.now(); settle(); });
  });
}

/**
 * Opens up to `n` idle keep-alive connections, `concurrency` being set up at
 * a time, and stops starting new ones past `deadlineMs` (so that the first
 * ones cannot reach their keep-alive timeout while the last are opened).
 * @param {{ host: string, port: number, n: number, concurrency: number, timeoutMs: number, deadlineMs: number }} o
 */
export async function openIdleConnections(o) {
  /** @type {IdleConn[]} */
  const conns = [];
  const t0 = performance.now();
  let next = 0;
  let stoppedEarly = false;
  const lane = async () => {
    while (next < o.n) {
      if (performance.now() - t0 > o.deadlineMs) { stoppedEarly = true; return; }
      next++;
      conns.push(await openOne(o.host, o.port, o.timeoutMs));
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.n) }, lane));
  const ok = conns.filter((c) => c.status === 200 && !c.error && !c.closedAt);
  return { conns, ok, openMs: performance.now() - t0, stoppedEarly };
}

/**
 * How the connections have ended so far: by the server (FIN, no error), by
 * an error (reset...), or still open.
 * @param {IdleConn[]} conns
 */
export function tallyEnds(conns) {
  let byServer = 0; let failed = 0; let open = 0; let lateData = 0;
  /** @type {Record<string, number>} */
  const errors = {};
  for (const c of conns) {
    if (c.lateData) lateData++;
    if (c.error) { failed++; errors[c.error] = (errors[c.error] ?? 0) + 1; } else if (c.endedAt) byServer++; else open++;
  }
  return { byServer, failed, open, lateData, errors };
}

/** Destroys whatever is still open (the end of a measurement). @param {IdleConn[]} conns */
export function destroyAll(conns) {
  for (const c of conns) if (!c.sock.destroyed) c.sock.destroy();
}
