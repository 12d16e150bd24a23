// @ts-check
// Reloads at full load: a closed-loop keep-alive client with enough
// connections to keep both cores busy, plus new-connection and /slow loops,
// and a reload every 3 s. The question is what a reload costs the requests
// being served while the machine has no spare CPU: booting Node processes
// takes the CPU the serving workers need.
import { performance } from 'node:perf_hooks';
import { Recorder, createStopper, closedLoopClient, newConnLoops, withClientLag } from '../lib/clients.js';
import { HOST } from '../lib/servers.js';
import {
  summarizeReloadRun, reloadWindows, overlapsAny, latencyStats, CLIENTS, fmtMs, fmtInt, formatTable, round, ratio, clientLagLine,
} from '../lib/summary.js';

export const name = 'fullload';

// 32 keep-alive connections: on this 2-core machine the closed-loop client's
// throughput stops growing at 16-32 connections (the client process itself
// takes one core); more connections add only queueing (measured by changing
// kaConns below and running `--only fullload`; see bench/README.md).
export const PARAMS = { kaConns: 32, ncLoops: 2, ncPauseMs: 5, slowConc: 4, periodMs: 3000, settleMs: 500, rampMs: 1000 };

/** @param {any} ctx */
export async function run(ctx) {
  const { O, say } = ctx;
  const reloads = O.quick ? 3 : 10;
  /** @type {Record<string, any>} */
  const servers = {};
  // Dev aid: BENCH_FULLLOAD_VARIANTS='{"label": {".env key": value}, ...}' runs
  // baton once per variant instead (how BOOT_NICE and the boot concurrency were chosen).
  const variants = process.env.BENCH_FULLLOAD_VARIANTS ? JSON.parse(process.env.BENCH_FULLLOAD_VARIANTS) : null;
  const plan = variants
    ? Object.entries(variants).map(([label, vars]) => ({ label, srv: 'baton', vars }))
    : ['baton', 'pm2'].filter((s) => O.servers.includes(s)).map((srv) => ({ label: srv, srv, vars: {} }));
  for (const { label, srv, vars } of plan) {
    try { servers[label] = await runOne(ctx, srv, reloads, vars); } catch (err) { ctx.recordError(`fullload ${label}`, err); }
    say(`fullload: ${label} done`);
  }
  // baton and PM2 run one after the other here, not in alternating rounds,
  // and this machine's speed drifts over a minute: a second pass in the
  // reverse order (baton, PM2, PM2, baton) cancels a steady drift from the
  // answers/s ratio, which is taken over both passes. The tables show the
  // first pass.
  /** @type {Record<string, any>} */
  const secondPass = {};
  if (!variants && !O.quick && servers.baton && servers.pm2) {
    for (const srv of ['pm2', 'baton']) {
      try { secondPass[srv] = await runOne(ctx, srv, reloads, {}); } catch (err) { ctx.recordError(`fullload ${srv} (second pass)`, err); }
      say(`fullload: ${srv} (second pass) done`);
    }
  }
  return { params: { ...PARAMS, reloads }, servers, secondPass: passSummary(secondPass), vsPm2: vsPm2(servers, secondPass) };
}

/** What the bench keeps of a second pass: the figures the ratio and the report use. @param {Record<string, any>} pass */
function passSummary(pass) {
  return Object.fromEntries(Object.entries(pass).map(([n, v]) => [n, { counts: v.counts, throughput: v.throughput, latency: v.latency, durationS: v.durationS, configOkAll: v.configOkAll }]));
}

/**
 * baton's answers/s against PM2's: per pass, and over both passes (the
 * geometric mean of the two, in which a steady drift of the machine cancels).
 * @param {Record<string, any>} first @param {Record<string, any>} second
 */
export function vsPm2(first, second) {
  const r1 = first.baton && first.pm2 ? ratio(first.baton.throughput.okPerS, first.pm2.throughput.okPerS) : null;
  const r2 = second.baton && second.pm2 ? ratio(second.baton.throughput.okPerS, second.pm2.throughput.okPerS) : null;
  return { firstPass: r1, secondPass: r2, both: r1 != null && r2 != null ? round(Math.sqrt(r1 * r2), 3) : r1 };
}

/** @param {any} ctx @param {string} srv @param {number} count @param {Record<string, string|number>} vars */
async function runOne(ctx, srv, count, vars) {
  const { say, sleep } = ctx;
  say(`fullload: ${srv} ${JSON.stringify(vars)}, ${count} reloads every ${PARAMS.periodMs} ms at full load`);
  const s = await ctx.start(srv, { vars });
  try {
    const rec = new Recorder();
    const stop = createStopper();
    const origin = `http://${HOST}:${s.port}`;
    const clients = Promise.all([
      closedLoopClient({ origin, concurrency: PARAMS.kaConns, timeoutMs: 10_000, rec, stop, client: 'ka' }),
      newConnLoops({ host: HOST, port: s.port, loops: PARAMS.ncLoops, pauseMs: PARAMS.ncPauseMs, timeoutMs: 10_000, rec, stop, client: 'nc' }),
      closedLoopClient({ origin, path: '/slow?ms=300', concurrency: PARAMS.slowConc, timeoutMs: 10_000, rec, stop, client: 'slow' }),
    ]);
    /** @type {any[]} */
    const done = [];
    let bodyErr = null;
    const { clientLag } = await withClientLag(async () => {
      try {
        await sleep(PARAMS.periodMs);
        for (let i = 1; i <= count; i++) {
          const at = performance.now();
          const r = await ctx.doReload(srv, s, i, rec.t0);
          done.push(r);
          if (!r.configOk) say(`  ${srv} reload ${i}: ${r.outcome}, config check failed ${r.error ?? ''}`);
          // The next reload 3 s after this one's signal, or at once when this
          // one took longer (a reload is never stacked on one in progress).
          await sleep(Math.max(0, PARAMS.periodMs - (performance.now() - at)));
        }
      } catch (err) { bodyErr = err; }
    });
    stop.stop();
    await clients;
    const endMs = performance.now() - rec.t0;
    if (bodyErr) throw bodyErr;
    const sum = summarizeReloadRun({ records: rec, reloads: done, endMs, binMs: 500, settleMs: PARAMS.settleMs, rampMs: PARAMS.rampMs });
    const windows = reloadWindows(done, PARAMS.settleMs);
    return {
      durationS: round(endMs / 1000, 1), reloadCount: done.length, reloadsCompleted: sum.reloadsCompleted, configOkAll: sum.configOkAll,
      counts: sum.counts, latency: sum.latency, latencyStrict: sum.latencyStrict, readyMs: sum.readyMs, goneMs: sum.goneMs, worstBinP99: sum.worstBinP99,
      throughput: throughputSplit(rec, windows, PARAMS.rampMs, endMs), phases: phaseSplit(rec, done, PARAMS.rampMs),
      errorCodes: rec.errors, timeline: sum.timeline, windows, clientLag,
    };
  } finally { await s.stop(); s.reap?.(); }
}

/**
 * Keep-alive answers per second inside reload windows and outside them (by
 * completion time), and all answers per second over the whole run.
 * @param {Recorder} rec @param {number[][]} windows @param {number} fromMs @param {number} endMs
 */
export function throughputSplit(rec, windows, fromMs, endMs) {
  const ka = CLIENTS.indexOf('ka');
  let inside = 0; let outside = 0; let all = 0;
  for (let i = 0; i < rec.t.length; i++) {
    if (rec.kind[i] !== 0) continue;
    const end = rec.t[i] + rec.lat[i];
    if (end < fromMs) continue;
    all++;
    if (rec.client[i] !== ka) continue;
    if (overlapsAny(end, end, windows)) inside++; else outside++;
  }
  let inMs = 0;
  for (const [a, b] of windows) inMs += Math.max(0, Math.min(b, endMs) - Math.max(a, fromMs));
  const outMs = Math.max(1, endMs - fromMs - inMs);
  const kaIn = inMs > 0 ? inside / (inMs / 1000) : null;
  const kaOut = outside / (outMs / 1000);
  return {
    okPerS: round(all / ((endMs - fromMs) / 1000), 0), kaInsidePerS: round(kaIn, 0), kaOutsidePerS: round(kaOut, 0),
    dip: kaIn == null ? null : round(1 - kaIn / kaOut, 3), insideMs: round(inMs, 0), outsideMs: round(outMs, 0),
  };
}

/**
 * Where in a reload the slow keep-alive requests are (by start time): while
 * the new generation boots (signal -> ready), while both serve (ready -> old
 * gone), in the settle margin after it, and outside reloads.
 * @param {Recorder} rec @param {any[]} reloads @param {number} fromMs
 */
export function phaseSplit(rec, reloads, fromMs) {
  const ka = CLIENTS.indexOf('ka');
  /** @type {Record<string, number[]>} */
  const lat = { boot: [], overlap: [], settle: [], outside: [] };
  const spans = reloads.filter((r) => r.readyAt != null && r.goneAt != null).map((r) => [r.signalAt, r.readyAt, r.goneAt, r.goneAt + PARAMS.settleMs]);
  for (let i = 0; i < rec.t.length; i++) {
    if (rec.client[i] !== ka || rec.kind[i] !== 0 || rec.t[i] < fromMs) continue;
    const t = rec.t[i];
    const span = spans.find((x) => t >= x[0] && t < x[3]);
    const phase = !span ? 'outside' : t < span[1] ? 'boot' : t < span[2] ? 'overlap' : 'settle';
    lat[phase].push(rec.lat[i]);
  }
  return Object.fromEntries(Object.entries(lat).map(([k, v]) => [k, latencyStats(v)]));
}

/** @param {any} x @param {(id: string, label: string, value: any, threshold: string, pass: boolean|null) => void} add */
export function targets(x, add) {
  const b = x.servers?.baton;
  const p = x.servers?.pm2;
  const b2 = x.secondPass?.baton;
  const failed = b ? b.counts.all.failed + (b2?.counts.all.failed ?? 0) : null;
  add('fullload-failures', 'baton failed requests, reloads at full load', failed, '0', failed == null ? null : failed === 0);
  const lr = b ? ratio(b.latency.inside.p99, b.latency.outside.p99) : null;
  add('fullload-p99', 'full load: keep-alive p99 in reload windows vs outside', b ? `${fmtMs(b.latency.inside.p99)} / ${fmtMs(b.latency.outside.p99)} = ${lr == null ? 'n/a' : lr.toFixed(2) + 'x'}` : null,
    '<= 1.50x', lr == null ? (b ? false : null) : lr <= 1.5);
  const v = x.vsPm2 ?? { firstPass: b && p ? ratio(b.throughput.okPerS, p.throughput.okPerS) : null, secondPass: null };
  const tr = v.both ?? v.firstPass;
  const shown = tr == null ? null : v.secondPass == null ? `${tr.toFixed(2)}x` : `${tr.toFixed(2)}x (passes ${v.firstPass.toFixed(2)}x, ${v.secondPass.toFixed(2)}x)`;
  add('fullload-vs-pm2', 'full load with reloads: answers/s vs PM2', shown, '>= 1.15x', tr == null ? null : tr >= 1.15);
  const configOk = b ? b.configOkAll && (b2?.configOkAll ?? true) : null;
  add('fullload-config', 'full load: new config on every answer, from the new workers, after each reload', b ? (configOk ? 'yes' : 'NO') : null, 'yes', configOk);
}

/** @param {any} x @returns {string[]} */
export function report(x) {
  const out = [`== Reloads at full load (${x.params.kaConns} closed-loop keep-alive conns + ${x.params.ncLoops} new-conn loops + ${x.params.slowConc} × /slow?ms=300; a reload every ${x.params.periodMs / 1000} s) ==`];
  const rows = Object.entries(x.servers ?? {}).map(([n, v]) => {
    const s = /** @type {any} */ (v);
    return [n, `${s.reloadsCompleted}/${s.reloadCount}`, fmtInt(s.counts.all.total), s.counts.all.failed, fmtInt(s.throughput.okPerS),
      fmtInt(s.throughput.kaOutsidePerS), fmtInt(s.throughput.kaInsidePerS), s.throughput.dip == null ? 'n/a' : `${(s.throughput.dip * 100).toFixed(1)}%`,
      fmtMs(s.latency.inside.p99), fmtMs(s.latency.outside.p99), fmtMs(s.worstBinP99), fmtMs(s.readyMs.p50), fmtMs(s.goneMs.p50), s.configOkAll ? 'yes' : 'NO'];
  });
  out.push(formatTable(['server', 'reloads', 'requests', 'failed', 'answers/s', 'ka/s out', 'ka/s in', 'dip', 'p99 in', 'p99 out', 'worst p99/bin', 'ready p50', 'gone p50', 'config ok'], rows));
  out.push(`(reload window = signal -> old generation gone + ${x.params.settleMs} ms; first ${x.params.rampMs} ms left out; dip = 1 - ka/s in windows / ka/s outside;` +
    ` without the margin p99 in/out: ${Object.entries(x.servers ?? {}).map(([n, s]) => `${n} ${fmtMs(/** @type {any} */ (s).latencyStrict.inside.p99)} / ${fmtMs(/** @type {any} */ (s).latencyStrict.outside.p99)}`).join(', ')})`);
  const lags = clientLagLine({ ...x.servers, ...Object.fromEntries(Object.entries(x.secondPass ?? {}).map(([n, v]) => [`${n} (second pass)`, v])) });
  if (lags) out.push(lags);
  const second = Object.entries(x.secondPass ?? {});
  if (second.length) {
    out.push(`second pass, reverse order: ${second.map(([n, s]) => `${n} ${fmtInt(s.throughput.okPerS)} answers/s, ${s.counts.all.failed} failed, p99 in/out ${fmtMs(s.latency.inside.p99)} / ${fmtMs(s.latency.outside.p99)}`).join('; ')}` +
      `; baton vs PM2 answers/s: ${x.vsPm2.firstPass?.toFixed(2)}x, ${x.vsPm2.secondPass?.toFixed(2)}x, both passes ${x.vsPm2.both?.toFixed(2)}x`);
  }
  for (const [n, s] of Object.entries(x.servers ?? {})) {
    const ph = /** @type {any} */ (s).phases;
    if (ph) out.push(`${n} keep-alive p99 by phase: booting ${fmtMs(ph.boot.p99)} (${fmtInt(ph.boot.count)}), both generations serving ${fmtMs(ph.overlap.p99)} (${fmtInt(ph.overlap.count)}), settle ${fmtMs(ph.settle.p99)} (${fmtInt(ph.settle.count)}), outside ${fmtMs(ph.outside.p99)} (${fmtInt(ph.outside.count)})`);
  }
  for (const [n, s] of Object.entries(x.servers ?? {})) {
    const e = Object.entries(/** @type {any} */ (s).errorCodes ?? {});
    if (e.length) out.push(`${n} errors: ${e.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  return out;
}
