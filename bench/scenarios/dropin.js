// @ts-check
// Drop-in apps vs factory apps: the same Express app written both ways
// (examples/express calls app.listen() itself; examples/express-factory
// exports createApp), and a plain node:http drop-in app with and without
// its own ServerResponse class (with one, baton cannot give the server its
// tracked response class and tracks each response with plain properties:
// what that costs per request). Keep-alive, alternating rounds.
import path from 'node:path';
import { runAutocannon } from '../lib/clients.js';
import { HOST, REPO_DIR, BENCH_DIR } from '../lib/servers.js';
import { formatTable, fmtInt, median, round } from '../lib/summary.js';

export const name = 'dropin';

const VARIANTS = /** @type {const} */ ([
  ['express drop-in', { APP_MODULE: path.join(REPO_DIR, 'examples', 'express', 'app.js') }],
  ['express factory', { APP_MODULE: path.join(REPO_DIR, 'examples', 'express-factory', 'app.js') }],
  ['node:http drop-in', { APP_MODULE: path.join(BENCH_DIR, 'apps', 'dropin-http.mjs') }],
  ['node:http drop-in, own ServerResponse', { APP_MODULE: path.join(BENCH_DIR, 'apps', 'dropin-http.mjs'), OWN_RESPONSE: '1' }],
]);
const CONNECTIONS = 64;

/** @param {any} ctx */
export async function run(ctx) {
  const { O, say } = ctx;
  if (!O.servers.includes('baton')) return { skipped: 'baton not in --servers' };
  const rounds = Math.min(O.runs, 6);
  /** @type {Record<string, any>} */
  const started = {};
  /** @type {Record<string, any[]>} */
  const raw = {};
  try {
    for (const [label, vars] of VARIANTS) {
      say(`dropin: starting baton with ${label}`);
      started[label] = await ctx.start('baton', { vars: { WORKERS: 2, ...vars } });
      raw[label] = [];
      await runAutocannon({ url: `http://${HOST}:${started[label].port}/`, connections: CONNECTIONS, duration: 1 });
    }
    const labels = Object.keys(started);
    for (let i = 0; i < rounds; i++) {
      say(`dropin: keep-alive round ${i + 1}/${rounds}`);
      for (const label of i % 2 === 0 ? labels : [...labels].reverse()) {
        const s = started[label];
        raw[label].push(await ctx.withCpu(s.pid, async () => {
          const r = await runAutocannon({ url: `http://${HOST}:${s.port}/`, connections: CONNECTIONS, duration: O.duration });
          return { rps: r.requests.average, errors: r.errors + r.timeouts + r.non2xx, total: r.requests.total };
        }));
      }
    }
  } finally {
    for (const s of Object.values(started)) await s.stop();
  }
  /** @type {Record<string, any>} */
  const servers = {};
  for (const [label, runs] of Object.entries(raw)) {
    servers[label] = { rps: round(median(runs.map((r) => r.rps)), 0), cpuUsPerReq: round(median(runs.map((r) => r.serverCpuUsPerReq)), 1), errors: runs.reduce((a, r) => a + r.errors, 0), runs };
  }
  // Median of per-round ratios: the two were measured seconds apart, on the same machine.
  const per = (/** @type {any[]} */ a, /** @type {any[]} */ b, /** @type {string} */ k) =>
    round(median(a.map((r, i) => r[k] / b[i][k]).filter((v) => Number.isFinite(v))), 3);
  const pair = (/** @type {string} */ a, /** @type {string} */ b) => raw[a] && raw[b] ? {
    rps: per(raw[a], raw[b], 'rps'), cpu: per(raw[a], raw[b], 'serverCpuUsPerReq'),
  } : null;
  return {
    rounds, durationS: O.duration, connections: CONNECTIONS, servers,
    expressDropinVsFactory: pair('express drop-in', 'express factory'),
    ownResponseVsPlain: pair('node:http drop-in, own ServerResponse', 'node:http drop-in'),
  };
}

/** @param {any} x @param {(id: string, label: string, value: any, threshold: string, pass: boolean|null) => void} add */
export function targets(x, add) {
  if (x.skipped) return;
  // The same server serves both: the capture costs nothing per request.
  const r = x.expressDropinVsFactory?.rps;
  add('dropin-express', 'keep-alive req/s: drop-in Express vs factory Express', r == null ? null : `${r.toFixed(3)}x`, '>= 0.95x', r == null ? null : r >= 0.95);
  const c = x.ownResponseVsPlain?.cpu;
  add('dropin-own-response', 'CPU/request: app\'s own ServerResponse class vs baton\'s', c == null ? null : `${c.toFixed(3)}x`, '<= 1.05x', c == null ? null : c <= 1.05);
  const errors = Object.values(x.servers ?? {}).reduce((a, s) => a + /** @type {any} */ (s).errors, 0);
  add('dropin-errors', 'drop-in/factory runs: errors', errors, '0', errors === 0);
}

/** @param {any} x @returns {string[]} */
export function report(x) {
  if (x.skipped) return [];
  const rows = Object.entries(x.servers).map(([n, v]) => {
    const s = /** @type {any} */ (v);
    return [n, fmtInt(s.rps), s.cpuUsPerReq ?? 'n/a', s.errors, s.runs.map((/** @type {any} */ r) => fmtInt(r.rps)).join(' / ')];
  });
  const f = (/** @type {number|null|undefined} */ v) => v == null ? 'n/a' : `${v.toFixed(2)}x`;
  return [`== Drop-in vs factory apps under baton (keep-alive, ${x.connections} conns, median of ${x.rounds} rounds of ${x.durationS} s, 2 workers) ==`,
    formatTable(['app', 'req/s', 'srv µs CPU/req', 'errors', 'rounds req/s'], rows),
    `express drop-in / factory: req/s ${f(x.expressDropinVsFactory?.rps)}, CPU/req ${f(x.expressDropinVsFactory?.cpu)};  own ServerResponse / baton's: req/s ${f(x.ownResponseVsPlain?.rps)}, CPU/req ${f(x.ownResponseVsPlain?.cpu)}`];
}
