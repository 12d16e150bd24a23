// @ts-check
// An HTTP/2 client that keeps `streams` requests in flight at once on one
// session, as browsers and gRPC clients do, and accounts for every request:
// a stream the server resets (REFUSED_STREAM, CANCEL, ...) or that errors is
// a failure. When the server sends GOAWAY the client opens a new session for
// new requests, as real clients do; a request that could not even be
// started on a closing session is simply started on the new one.
import http2 from 'node:http2';

/**
 * @param {number} port
 * @param {{ ca: string, streams?: number, path?: string | (() => string) }} opts
 */
export function startH2Load(port, opts) {
  const counts = { ok: 0, failed: 0, goaways: 0, sessions: 0 };
  /** @type {string[]} */
  const failures = [];
  /** @type {Set<string>} */
  const bodies = new Set();
  let running = true;
  const open = () => {
    counts.sessions++;
    const s = http2.connect(`https://127.0.0.1:${port}`, { ca: opts.ca, servername: 'localhost' });
    s.on('goaway', () => { counts.goaways++; if (session === s) session = open(); });
    s.on('close', () => { if (session === s && running) session = open(); });
    s.on('error', () => { /* its streams report their own errors */ });
    return s;
  };
  let session = open();

  /** @returns {Promise<{ status: number, body: string } | 'retry'>} */
  const request = (path) => new Promise((resolve, reject) => {
    let stream;
    try {
      stream = session.request({ ':path': path });
    } catch (err) {
      const code = /** @type {{ code?: string }} */ (err).code;
      if (code === 'ERR_HTTP2_GOAWAY_SESSION' || code === 'ERR_HTTP2_INVALID_SESSION') return resolve('retry');
      return reject(err);
    }
    let status = 0;
    let body = '';
    stream.setEncoding('utf8');
    stream.on('response', (headers) => { status = Number(headers[':status']); });
    stream.on('data', (d) => { body += d; });
    stream.on('error', reject);
    stream.on('close', () => {
      if (stream.rstCode && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) reject(Object.assign(new Error(`stream reset with code ${stream.rstCode}`), { code: `RST_STREAM ${stream.rstCode}` }));
      else resolve({ status, body });
    });
    stream.end();
  });

  const loops = Array.from({ length: opts.streams ?? 20 }, async () => {
    while (running) {
      const path = typeof opts.path === 'function' ? opts.path() : opts.path ?? '/';
      try {
        const res = await request(path);
        if (res === 'retry') { await new Promise((r) => setImmediate(r)); continue; }
        if (res.status >= 200 && res.status < 300) { counts.ok++; bodies.add(res.body.trim()); }
        else { counts.failed++; failures.push(`status ${res.status}`); }
      } catch (err) {
        counts.failed++;
        failures.push(`${/** @type {any} */ (err).code ?? ''} ${/** @type {Error} */ (err).message}`);
      }
    }
  });
  return {
    counts, failures, bodies,
    async waitFor(n, timeoutMs = 15000) {
      const target = counts.ok + counts.failed + n;
      const deadline = Date.now() + timeoutMs;
      while (counts.ok + counts.failed < target) {
        if (Date.now() > deadline) throw new Error(`h2 load made no progress: ${JSON.stringify(counts)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async stop() {
      running = false;
      await Promise.all(loops);
      session.close();
    },
  };
}
