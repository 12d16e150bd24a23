// @ts-check
// HTTP clients for the tests, with our own accounting of every request: a
// request either gets a 2xx answer or is counted as a failure by kind. (Load
// tools like autocannon silently re-dial and lose requests from the count.)
import http from 'node:http';
import https from 'node:https';
import { Pool } from 'undici';

/** GET over a Unix socket. @param {string} socketPath @param {string} [path] */
export function getUnix(socketPath, path = '/') {
  return /** @type {Promise<{ status: number, body: string }>} */ (new Promise((resolve, reject) => {
    http.get({ socketPath, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  }));
}

/**
 * One request on a new connection (like curl), Connection: close. With
 * `ca`: over TLS, trusting that CA.
 * @param {number} port
 * @param {string} path
 * @param {{ timeoutMs?: number, method?: string, ca?: string }} [opts]
 * @returns {Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string }>}
 */
export function get(port, path = '/', opts = {}) {
  return new Promise((resolve, reject) => {
    const client = opts.ca ? https : http;
    const req = client.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', agent: false, ...(opts.ca ? { ca: opts.ca, servername: 'localhost' } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 15000, () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}

/** @param {unknown} err */
export function failureKind(err) {
  const code = /** @type {{ code?: string }} */ (err)?.code ?? '';
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED') return 'reset';
  if (code === 'ETIMEDOUT' || code.includes('TIMEOUT')) return 'timeout';
  return `error:${code || String(err)}`;
}

/**
 * Three kinds of client at once until stop(): keep-alive connections
 * (undici Pool, which respects Keep-Alive: timeout), new-connection-per-request
 * loops, and slow requests.
 * @param {number} port
 * @param {{ keepAlive?: number, newConn?: number, slow?: number, slowMs?: number, ca?: string }} [opts] ca: over TLS, trusting it
 */
export function startLoad(port, opts = {}) {
  const keepAlive = opts.keepAlive ?? 16;
  const pool = new Pool(`${opts.ca ? 'https' : 'http'}://127.0.0.1:${port}`, {
    connections: keepAlive, pipelining: 1, headersTimeout: 20000, bodyTimeout: 20000,
    ...(opts.ca ? { connect: { ca: opts.ca, servername: 'localhost' } } : {}),
  });
  let running = true;
  const counts = { ok: 0, failed: 0, byClient: { keepAlive: 0, newConn: 0, slow: 0 } };
  /** @type {{ client: string, kind: string, detail: string }[]} */
  const failures = [];
  /** @type {Set<string>} */
  const bodies = new Set();
  /** @type {Set<() => void>} */
  const watchers = new Set();

  /** @param {'keepAlive' | 'newConn' | 'slow'} client @param {number} status @param {string} body */
  const ok = (client, status, body) => {
    if (status >= 200 && status < 300) {
      counts.ok++;
      counts.byClient[client]++;
      bodies.add(body.trim());
    } else {
      counts.failed++;
      failures.push({ client, kind: `status ${status}`, detail: body.slice(0, 200) });
    }
    for (const w of [...watchers]) w();
  };
  /** @param {string} client @param {unknown} err */
  const fail = (client, err) => {
    counts.failed++;
    failures.push({ client, kind: failureKind(err), detail: String(/** @type {Error} */ (err)?.message ?? err) });
    for (const w of [...watchers]) w();
  };

  const loops = [];
  for (let i = 0; i < keepAlive; i++) {
    loops.push((async () => {
      while (running) {
        try {
          const res = await pool.request({ path: '/', method: 'GET' });
          ok('keepAlive', res.statusCode, await res.body.text());
        } catch (err) { fail('keepAlive', err); }
      }
    })());
  }
  for (let i = 0; i < (opts.newConn ?? 2); i++) {
    loops.push((async () => {
      while (running) {
        try {
          const res = await get(port, '/', { ca: opts.ca });
          ok('newConn', res.status, res.body);
        } catch (err) { fail('newConn', err); }
      }
    })());
  }
  for (let i = 0; i < (opts.slow ?? 2); i++) {
    loops.push((async () => {
      while (running) {
        try {
          const res = await pool.request({ path: `/slow?ms=${opts.slowMs ?? 300}`, method: 'GET' });
          ok('slow', res.statusCode, await res.body.text());
        } catch (err) { fail('slow', err); }
      }
    })());
  }

  return {
    counts,
    failures,
    bodies,
    /** Resolves once `n` more requests have completed (ok or failed). @param {number} n */
    waitForMore(n, timeoutMs = 15000) {
      const target = counts.ok + counts.failed + n;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { watchers.delete(check); reject(new Error(`load made no progress: ${JSON.stringify(counts)}`)); }, timeoutMs);
        const check = () => {
          if (counts.ok + counts.failed >= target) { clearTimeout(timer); watchers.delete(check); resolve(undefined); }
        };
        watchers.add(check);
        check();
      });
    },
    async stop() {
      running = false;
      await Promise.all(loops);
      await pool.close();
    },
  };
}

/**
 * One sample of a Prometheus exposition on `port` (the line that starts with
 * `series`, a name with its labels), or undefined when it is absent.
 * @param {number} port @param {string} series
 */
export async function metric(port, series) {
  const res = await get(port, '/metrics');
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

/**
 * Polls the health path until the worker answering it has `n` requests in
 * flight (use with WORKERS=1, where one worker answers everything).
 * @param {number} port @param {number} n @param {number} [timeoutMs] @param {string} [ca] over TLS
 */
export async function waitInFlight(port, n, timeoutMs = 5000, ca = undefined) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const health = JSON.parse((await get(port, '/healthz', { ca })).body);
    if (health.inFlight >= n) return health;
    if (Date.now() > deadline) throw new Error(`no ${n} request(s) in flight within ${timeoutMs} ms: ${JSON.stringify(health)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
