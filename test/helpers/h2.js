// @ts-check
// An HTTP/2 client that keeps `streams` requests in flight at once on one
// session, as browsers and gRPC clients do, and accounts for every request:
// a stream the server resets (REFUSED_STREAM, CANCEL, ...) or that errors is
// a failure. When the server sends GOAWAY the client opens a new session for
// new requests, as real clients do; a request that could not even be
// started on a closing session is simply started on the new one.
//
// One exception, counted apart (`unsent`): Node's client flushes its frames
// in a later phase of its event loop than it reads, so a request made just
// before a GOAWAY is read can still be queued, unsent; once the GOAWAY is
// read, nghttp2 may no longer open it (RFC 9113 §6.8), and closes it with
// REFUSED_STREAM when the final GOAWAY names a lower last stream. Those
// requests never left the client (nghttp2 says so with a 'frameError' on
// their HEADERS, unless the session is already closing, when Node keeps it
// quiet; or the server had not sent its final GOAWAY yet, before which it
// refuses nothing; or its final GOAWAY, sent a second after the first, says
// it processed none above that id); browsers and curl retry them. They are retried here only
// when the server did the graceful two-step GOAWAY: after a single GOAWAY
// (a bare session.close()), a REFUSED_STREAM can be a request the client had
// sent, and counts as a failure.
import http2 from 'node:http2';

const MAX_STREAM_ID = 2 ** 31 - 1;
/** A final GOAWAY read this long after the first came from a graceful two-step shutdown (see neverSent). */
const FINAL_GOAWAY_AFTER_MS = 500;

/**
 * @param {number} port
 * @param {{ ca: string, streams?: number, path?: string | (() => string) }} opts
 */
export function startH2Load(port, opts) {
  const counts = { ok: 0, failed: 0, unsent: 0, goaways: 0, sessions: 0 };
  /** @type {string[]} */
  const failures = [];
  /** @type {Set<string>} */
  const bodies = new Set();
  let running = true;
  /** @type {WeakMap<http2.ClientHttp2Session, { last: number, at: number }[]>} */
  const goawaysOf = new WeakMap();
  /**
   * Refused by the client itself, never sent (see above): the server did the
   * two-step GOAWAY, and either has not sent its final one yet (until then it
   * refuses nothing: it accepts every stream up to the largest id), or sent
   * it well after the first, naming a lower last stream. baton waits 1 s
   * between them; the client reads them on a busy machine with delays of
   * their own (885 ms apart in one CI run), so "well after" is 500 ms: a
   * server that sent both at once would be ~0 ms.
   * @param {http2.ClientHttp2Session} s @param {number} id
   */
  const neverSent = (s, id) => {
    const g = goawaysOf.get(s) ?? [];
    const first = g.find((x) => x.last === MAX_STREAM_ID);
    if (first === undefined) return false;
    const final = g.find((x) => x.last < MAX_STREAM_ID);
    return final === undefined || (final.at - first.at >= FINAL_GOAWAY_AFTER_MS && id > final.last);
  };
  const open = () => {
    counts.sessions++;
    const s = http2.connect(`https://127.0.0.1:${port}`, { ca: opts.ca, servername: 'localhost' });
    /** @type {{ last: number, at: number }[]} */
    const goaways = [];
    goawaysOf.set(s, goaways);
    s.on('goaway', (_code, last) => { goaways.push({ last, at: Date.now() }); counts.goaways++; if (session === s) session = open(); });
    s.on('close', () => { if (session === s && running) session = open(); });
    s.on('error', () => { /* its streams report their own errors */ });
    // Node reports frames it could not send only if the session has a listener.
    s.on('frameError', () => { /* reported on the stream */ });
    return s;
  };
  let session = open();

  /** @returns {Promise<{ status: number, body: string } | 'retry' | 'unsent'>} */
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
    /** @type {Error | undefined} */
    let error;
    const s = session;
    stream.setEncoding('utf8');
    stream.on('response', (headers) => { status = Number(headers[':status']); });
    stream.on('data', (d) => { body += d; });
    // 'close' decides: a refused stream errors first, then closes.
    stream.on('error', (err) => { error = err; });
    // nghttp2 could not send this stream's HEADERS (a GOAWAY came first): it never left the client.
    let headersNotSent = false;
    stream.on('frameError', (type) => { if (type === http2.constants.NGHTTP2_HEADERS) headersNotSent = true; });
    stream.on('close', () => {
      if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM && (headersNotSent || neverSent(s, /** @type {number} */ (stream.id)))) resolve('unsent');
      else if (stream.rstCode && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) reject(Object.assign(new Error(`stream ${stream.id} reset with code ${stream.rstCode} (GOAWAYs received: ${JSON.stringify(goawaysOf.get(s))})`), { code: `RST_STREAM ${stream.rstCode}` }));
      else if (error) reject(error);
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
        if (res === 'unsent') { counts.unsent++; continue; }
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
