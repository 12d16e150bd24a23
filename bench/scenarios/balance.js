// @ts-check
// Balance: under new-connection load, how evenly the workers share the
// connections. Round-robin (node:cluster's default, baton's DISPATCH=primary)
// is even by construction; a shared accept queue leaves it to the kernel,
// which on Linux wakes whichever process is waiting, and can be very uneven
// (why cluster defaults to round-robin): baton's default, DISPATCH=shared,
// balances by forwarding what a worker accepts above its share.
import http from 'node:http';
import { newConnRequest } from '../lib/clients.js';
import { HOST } from '../lib/servers.js';
import { formatTable, fmtInt, round } from '../lib/summary.js';

export const name = 'balance';
const LOOPS = 16;

/** @param {any} ctx */
export async function run(ctx) {
  const { O, say } = ctx;
  const durationS = O.duration;
  /** @type {Record<string, any>} */
  const servers = {};
  const wanted = [
    ['cluster', 'cluster', {}],
    ['baton', 'baton', {}],
    ['baton primary', 'baton', { DISPATCH: 'primary' }],
  ].filter(([, srv]) => O.servers.includes(srv));
  for (const [label, srv, vars] of /** @type {[string, string, Record<string, string>][]} */ (wanted)) {
    say(`balance: ${label}, ${LOOPS} new-connection loops for ${durationS} s`);
    const s = await ctx.start(srv, { vars: { WORKERS: 2, ...vars } });
    try {
      servers[label] = await share(s.port, durationS);
      servers[label].bursts = await bursts(s.port);
    } finally { await s.stop(); }
  }
  return { loops: LOOPS, durationS, servers };
}

const BURST = 32;
const BURST_ROUNDS = 5;

/**
 * Keep-alive connections stay where they land: BURST of them opened at
 * once (as a pool filling up does), BURST_ROUNDS times, each closed before
 * the next (and a pause for the workers' counts to settle). The split of
 * each round, busiest worker first.
 * @param {number} port
 */
async function bursts(port) {
  /** @type {number[][]} */
  const splits = [];
  for (let round = 0; round < BURST_ROUNDS; round++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: BURST });
    try {
      const pids = await Promise.all(Array.from({ length: BURST }, () => new Promise((resolve, reject) => {
        http.get({ host: HOST, port, path: '/healthz', agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => { body += c; });
          res.on('end', () => resolve(String(JSON.parse(body).pid)));
        }).on('error', reject);
      })));
      /** @type {Record<string, number>} */
      const per = {};
      for (const p of pids) per[p] = (per[p] ?? 0) + 1;
      const counts = Object.values(per).sort((a, b) => b - a);
      while (counts.length < 2) counts.push(0);
      splits.push(counts);
    } finally { agent.destroy(); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { size: BURST, splits, maxOverFair: round(Math.max(...splits.map((c) => c[0] ?? 0)) / (BURST / 2), 3) };
}

/** Each answer of /healthz names the worker's pid. @param {number} port @param {number} durationS */
async function share(port, durationS) {
  /** @type {Record<string, number>} */
  const perPid = {};
  let failed = 0;
  const end = Date.now() + durationS * 1000;
  await Promise.all(Array.from({ length: LOOPS }, async () => {
    while (Date.now() < end) {
      try {
        const r = await newConnRequest({ host: HOST, port, path: '/healthz', timeoutMs: 10_000 });
        const pid = String(JSON.parse(r.body).pid);
        perPid[pid] = (perPid[pid] ?? 0) + 1;
      } catch { failed++; }
    }
  }));
  const counts = Object.values(perPid);
  const total = counts.reduce((a, b) => a + b, 0);
  const fair = total / Math.max(1, counts.length);
  return { total, failed, perWorker: counts.sort((a, b) => b - a), workers: counts.length, maxOverFair: round(Math.max(...counts) / fair, 3) };
}

/** @param {any} x @param {(id: string, label: string, value: any, threshold: string, pass: boolean|null) => void} add @param {any} all */
export function targets(x, add, all) {
  // The default dispatch mode is what the target is about (README: DISPATCH).
  const b = x.servers?.baton;
  add('balance', 'new conns: busiest worker vs fair share (default dispatch)', b ? `${b.maxOverFair.toFixed(2)}x` : null, '<= 1.25x', b ? b.workers === 2 && b.maxOverFair <= 1.25 : null);
}

/** @param {any} x @returns {string[]} */
export function report(x) {
  const rows = Object.entries(x.servers).map(([n, v]) => {
    const s = /** @type {any} */ (v);
    const b = s.bursts;
    return [n, fmtInt(s.total), s.failed, s.perWorker.map(fmtInt).join(' / '), `${s.maxOverFair.toFixed(2)}x`,
      b ? b.splits.map((c) => c.join('/')).join(', ') : '-', b ? `${b.maxOverFair.toFixed(2)}x` : '-'];
  });
  return [`== Balance: ${x.loops} new-connection loops, ${x.durationS} s, 2 workers; then ${BURST_ROUNDS} bursts of ${BURST} keep-alive connections opened at once ==`,
    formatTable(['server', 'answers', 'failed', 'per worker', 'busiest / fair', 'keep-alive bursts', 'busiest burst / fair'], rows)];
}
