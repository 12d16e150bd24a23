#!/usr/bin/env node
// @ts-check
// baton benchmark: `npm run bench -- [--quick] ...` (see bench/README.md, --help).
// Starts every server itself on 127.0.0.1, drives it, stops it, prints a table,
// writes bench/results/<date>.json + .svg (and latest.json / latest.svg).
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { parseArgs, UsageError, USAGE } from './lib/args.js';
import {
  summarizeReloadRun, summarizeThroughputRuns, throughputRatios, evaluateTargets, renderReport,
  countKinds, countByClient, latencyStats, median, okLatencies, noiseFloor, round, KINDS,
} from './lib/summary.js';
import { renderTimelineSvg } from './lib/svg.js';
import { SCENARIO_MODULES } from './scenarios/index.js';
import {
  Recorder, createStopper, fixedRateClient, closedLoopClient, newConnLoops, newConnRequest, runAutocannon, withClientLag,
} from './lib/clients.js';
import {
  BENCH_DIR, REPO_DIR, HOST, startApp, startBaton, startPm2, reloadBatonTimed, getFreePort, killAllStarted, removeTempDirs,
  rssKb, fdCount, childPids, probeWorkers, startedGroups, groupCpuTicks, machineBusyTicks,
} from './lib/servers.js';

const TICK_MS = 10; // USER_HZ = 100 on Linux

/**
 * Measure `f` with CPU accounting: the server group's CPU per request (less
 * sensitive to a noisy machine than req/s) and the share of the machine's CPU
 * used by processes that are not ours during the run (the noise).
 * @template {{ total: number }} T @param {number} pgid @param {() => Promise<T>} f
 */
async function withCpu(pgid, f) {
  const ours = startedGroups();
  const g0 = groupCpuTicks([pgid]); const a0 = groupCpuTicks(ours); const b0 = machineBusyTicks(); const o0 = process.cpuUsage(); const t0 = performance.now();
  const r = await f();
  const g1 = groupCpuTicks([pgid]); const a1 = groupCpuTicks(ours); const b1 = machineBusyTicks(); const o1 = process.cpuUsage(o0); const t1 = performance.now();
  const ownTicks = (o1.user + o1.system) / 1000 / TICK_MS;
  const capacityTicks = ((t1 - t0) / TICK_MS) * os.cpus().length;
  return {
    ...r,
    serverCpuUsPerReq: r.total ? round(((g1 - g0) * TICK_MS * 1000) / r.total, 1) : null,
    serverCpuPct: round(((g1 - g0) / capacityTicks) * 100 * os.cpus().length, 0),
    foreignCpuPct: round(Math.max(0, ((b1 - b0) - (a1 - a0) - ownTicks) / capacityTicks) * 100, 1),
  };
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** @param {string} s */
const say = (s) => process.stderr.write(`bench: ${s}\n`);
const COLORS = { baton: '#1f6feb', pm2: '#d1242f', cluster: '#2da44e', bare: '#8250df' };

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  throw err;
}
if (opts.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const O = opts;

// ---- cleanup: only what we started, by process group id -----------------
process.on('exit', () => { killAllStarted(); removeTempDirs(); });
for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(sig, () => { say(`${sig}: stopping servers`); killAllStarted(); removeTempDirs(); process.exit(130); });
}

// baton is compiled from src/ into a private, git-ignored folder so a bench run
// never overwrites the dist/ someone else is using. BATON_ENTRY=path overrides
// (no build then), e.g. BATON_ENTRY=dist/primary.js.
const BATON_BUILD_DIR = path.join(BENCH_DIR, 'results', 'tmp', 'dist');
const BATON_ENTRY = process.env.BATON_ENTRY ? path.resolve(process.env.BATON_ENTRY) : path.join(BATON_BUILD_DIR, 'primary.js');
const Q = O.quick;
const P = {
  kaConnections: 64,
  ncLoops: 16,
  warmupS: Q ? 1 : 2,
  rateFraction: 0.5,
  // On 2 cores the load generator shares the CPU with the server; above ~4000/s
  // plus the other two clients plus two worker forks per reload the box itself
  // saturates and every latency becomes queueing (see bench/README.md).
  maxRate: 4000,
  settleMs: 1000,
  rampMs: 1000,
  leadInMs: Q ? 2000 : 3000,
  gapMs: Q ? 2000 : 3000,
  tailMs: Q ? 1000 : 2000,
  binMs: Q ? 250 : 500,
  reloadTimeoutMs: 30_000,
  soakWarmup: Q ? 2 : 5,
  soakRate: 200,
};

/** @type {any} */
const results = {
  meta: {
    date: new Date().toISOString(), node: process.version, platform: `${os.type()} ${os.release()}`, cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model, options: O, params: P, batonEntry: path.relative(REPO_DIR, BATON_ENTRY), git: gitInfo(),
  },
  errors: [],
};

function gitInfo() {
  const r = spawnSync('git', ['-C', REPO_DIR, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  const d = spawnSync('git', ['-C', REPO_DIR, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' });
  return { commit: r.stdout.trim() || null, srcDirty: Boolean(d.stdout.trim()) };
}

/** @param {string} what @param {any} err */
function recordError(what, err) {
  const msg = `${what}: ${err?.stack ?? err}`;
  results.errors.push(msg);
  say(`ERROR ${msg}`);
}

// ---- starting servers -------------------------------------------------------
let batonBuilt = false;
function buildBaton() {
  if (batonBuilt || process.env.BATON_ENTRY) return;
  batonBuilt = true;
  say(`building baton (tsc -p tsconfig.json --outDir ${path.relative(REPO_DIR, BATON_BUILD_DIR)})...`);
  const tsc = path.join(REPO_DIR, 'node_modules', 'typescript', 'bin', 'tsc');
  fs.rmSync(BATON_BUILD_DIR, { recursive: true, force: true });
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json', '--outDir', BATON_BUILD_DIR], { cwd: REPO_DIR, encoding: 'utf8' });
  if (r.status !== 0) {
    results.meta.buildError = (r.stdout + r.stderr).slice(0, 4000);
    throw new Error(`baton build failed (exit ${r.status}):\n${results.meta.buildError.slice(0, 2000)}`);
  }
}

/**
 * Start a server by name. `vars`: extra `.env` keys for baton (WORKERS,
 * DISPATCH, TLS_*...) or environment for the comparison apps.
 * @param {string} name @param {{ message?: string, vars?: Record<string, string|number> }} [o]
 */
async function start(name, o = {}) {
  const vars = { ...(o.message ? { MESSAGE: o.message } : {}), ...(o.vars ?? {}) };
  if (name === 'baton') {
    // Dev aid: BENCH_BATON_VARS='{"KEY": "value"}' adds .env keys to every baton start (A/B of a setting).
    if (process.env.BENCH_BATON_VARS) Object.assign(vars, JSON.parse(process.env.BENCH_BATON_VARS), o.vars ?? {});
    buildBaton();
    if (!fs.existsSync(BATON_ENTRY)) throw new Error(`${BATON_ENTRY} does not exist (build baton first)`);
    return startBaton({ entry: BATON_ENTRY, vars });
  }
  if (name === 'pm2') return startPm2({ message: o.message, ...(o.vars?.WORKERS ? { instances: Number(o.vars.WORKERS) } : {}) });
  return startApp(/** @type {any} */ (name), Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, String(v)])));
}

// ---- self-check -----------------------------------------------------------
async function selfCheck() {
  say('self-check: failure counter vs a deliberately broken server');
  const env = { RESET_EVERY: '7', HANG_EVERY: '11', ERROR_EVERY: '5' };
  const s = await startApp('broken', env);
  const rec = new Recorder();
  const origin = `http://${HOST}:${s.port}`;
  try {
    // 800 ms: far above any honest answer here, so only the hung requests time out.
    await closedLoopClient({ origin, concurrency: 16, count: 300, timeoutMs: 800, rec, client: 'ka' });
    await newConnLoops({ host: HOST, port: s.port, loops: 8, count: 150, timeoutMs: 800, rec, client: 'nc' });
    const closed = await getFreePort();
    await closedLoopClient({ origin: `http://${HOST}:${closed}`, concurrency: 2, count: 10, timeoutMs: 800, rec, client: 'ka' });
    await newConnLoops({ host: HOST, port: closed, loops: 2, count: 10, timeoutMs: 800, rec, client: 'nc' });
    const st = JSON.parse((await newConnRequest({ host: HOST, port: s.port, path: '/__stats', timeoutMs: 2000 })).body);
    const counted = countKinds(rec);
    const truth = { total: st.requests + 20, ok: st.ok, refused: 20, reset: st.reset, timeout: st.hang, non2xx: st.non2xx, other: 0, failed: 0 };
    truth.failed = truth.total - truth.ok;
    const exact = ['total', 'ok', 'refused', 'reset', 'timeout', 'non2xx', 'other', 'failed'].every((k) => counted[k] === truth[/** @type {keyof typeof truth} */ (k)]) &&
      counted.total === 300 + 150 + 20;
    /** @type {any} */
    const out = { truth, counted, exact, issued: 470, errorCodes: rec.errors, sabotage: env };
    await s.stop();
    // What autocannon 9 reports against the same kind of server (no hangs).
    const s2 = await startApp('broken', { RESET_EVERY: '7', ERROR_EVERY: '5' });
    try {
      const ac = await runAutocannon({ url: `http://${HOST}:${s2.port}/`, connections: 8, amount: 300, timeout: 2 });
      const st2 = JSON.parse((await newConnRequest({ host: HOST, port: s2.port, path: '/__stats', timeoutMs: 2000 })).body);
      out.autocannon = {
        sent: ac.requests?.sent ?? null, ok: ac['2xx'], errors: ac.errors, timeouts: ac.timeouts, non2xx: ac.non2xx, resets: ac.resets ?? null,
        serverRequests: st2.requests, serverReset: st2.reset, serverNon2xx: st2.non2xx, truthFailed: st2.reset + st2.non2xx,
      };
    } finally { await s2.stop(); }
    return out;
  } finally { await s.stop(); }
}

// ---- scenario 1: steady throughput ---------------------------------------
/** The A/A control's name in the throughput rounds (a second node:cluster). */
const AA = 'cluster-aa';

/** @param {number} port */
async function newConnRun(port, durationS) {
  const rec = new Recorder();
  const stop = createStopper();
  const t0 = performance.now();
  const timer = setTimeout(() => stop.stop(), durationS * 1000);
  await newConnLoops({ host: HOST, port, loops: P.ncLoops, rec, stop, timeoutMs: 10_000 });
  clearTimeout(timer);
  const elapsed = (performance.now() - t0) / 1000;
  const c = countKinds(rec);
  const st = latencyStats(okLatencies(rec));
  return { rps: round(c.ok / elapsed, 1), p50: st.p50, p99: st.p99, max: st.max, errors: c.failed, total: c.total, counts: c, errorCodes: rec.errors };
}

/** CPU-bound probe (sha256 of 4 KB for 200 ms): hashes per ms. Host contention on a shared machine shows here. */
function speedProbe() {
  const buf = Buffer.alloc(4096, 7);
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 200) { for (let i = 0; i < 50; i++) crypto.createHash('sha256').update(buf).digest(); n += 50; }
  return round(n / (performance.now() - t0), 1) ?? 0;
}

/**
 * All servers are started up front and measured in interleaved rounds
 * (round 1: bare, cluster, pm2, baton; round 2: ...), so background noise on a
 * shared 2-core machine spreads over every server instead of hitting one.
 * @param {string[]} names
 */
async function throughput(names) {
  /** @type {Record<string, any>} */
  const started = {};
  /** @type {Record<string, {ka: any[], nc: any[]}>} */
  const raw = {};
  /** @type {number[]} */
  const speed = [];
  try {
    // A/A control: a second node:cluster, identical to the first, measured in
    // the same rounds. Its ratio to the first is what this machine's noise
    // alone does to a ratio: a server at cluster's speed lands anywhere in it.
    const withControl = names.includes('cluster') ? [...names, AA] : names;
    for (const name of withControl) {
      try {
        say(`throughput: starting ${name}`);
        started[name] = await start(name === AA ? 'cluster' : name);
        raw[name] = { ka: [], nc: [] };
      } catch (err) { recordError(`throughput ${name}`, err); }
    }
    const live = Object.keys(started);
    for (const name of live) await runAutocannon({ url: `http://${HOST}:${started[name].port}/`, connections: P.kaConnections, duration: P.warmupS });
    // Many short rounds, servers back to back and in alternating order
    // (ABCD, DCBA, ...): this machine's speed drifts by tens of percent over
    // minutes, and a pair measured seconds apart sees the same machine.
    // Every keep-alive round comes before any new-connection round: in V8, a
    // process that served new-connection traffic and then sat idle for a
    // minute (a server waiting its turn) has its optimized code dropped by
    // the idle-time memory reducer and recompiled from feedback that the
    // new-connection run made polymorphic: ~40% more CPU per keep-alive
    // request from then on, for whichever server happened to wait longest
    // (bare node:http and node:cluster as much as baton; see bench/README.md).
    const order = (/** @type {number} */ i) => (i % 2 === 0 ? live : [...live].reverse());
    for (let i = 0; i < O.runs; i++) {
      speed.push(speedProbe());
      say(`throughput: keep-alive round ${i + 1}/${O.runs} (${order(i).join(', ')})`);
      for (const name of order(i)) {
        const s = started[name];
        const load0 = os.loadavg()[0];
        raw[name].ka.push(await withCpu(s.pid, async () => {
          const r = await runAutocannon({ url: `http://${HOST}:${s.port}/`, connections: P.kaConnections, duration: O.duration });
          return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, errors: r.errors + r.timeouts, non2xx: r.non2xx, total: r.requests.total, load1: round(load0) };
        }));
      }
    }
    for (let i = 0; i < O.runs; i++) {
      say(`throughput: new-connection round ${i + 1}/${O.runs} (${order(i).join(', ')})`);
      for (const name of order(i)) raw[name].nc.push(await withCpu(started[name].pid, () => newConnRun(started[name].port, O.duration)));
    }
  } finally {
    for (const s of Object.values(started)) { await s.stop(); s.reap?.(); }
  }
  /** @type {Record<string, any>} */
  const servers = {};
  for (const [name, r] of Object.entries(raw)) {
    if (name !== AA && r.ka.length) servers[name] = { keepAlive: summarizeThroughputRuns(r.ka), newConn: summarizeThroughputRuns(r.nc) };
  }
  const floor = raw[AA]?.ka.length ? noiseFloor(raw[AA], raw.cluster) : null;
  delete raw[AA];
  return { servers, raw, speed, noiseFloor: floor };
}

// ---- scenario 2: reloads under load ----------------------------------------
/**
 * One reload of `s` (baton: edit .env + SIGHUP; pm2: pm2 reload --update-env) and
 * a check that every worker now answers with the new config.
 * @param {string} name @param {any} s @param {number} i @param {number} t0
 */
async function doReload(name, s, i, t0) {
  const message = `after reload ${i} ${Math.random().toString(36).slice(2, 8)}`;
  /** @type {any} */
  const r = { i, message };
  if (name === 'baton') {
    Object.assign(r, await signalBatonReload(s, message, t0));
    s.generation = r.generation ?? s.generation;
  } else {
    const gen = String(i + 1);
    const x = await s.reload({ MESSAGE: message, BENCH_GENERATION: gen });
    r.signalAt = x.startAt - t0;
    r.readyAt = r.goneAt = x.endAt - t0;
    r.readyMs = r.goneMs = round(x.endAt - x.startAt);
    r.outcome = x.code === 0 ? 'complete' : 'failed';
    r.generation = gen;
    if (x.code !== 0) r.error = x.out.slice(-500);
  }
  // Config check: the new MESSAGE and generation on every answer, from the
  // new workers. PM2 (node:cluster round-robin): both workers answer. baton:
  // every answer from the 2 pids its 'reload complete' line names, which are
  // its children; not every one need answer, as with DISPATCH=shared a fresh
  // connection goes to the least-loaded worker, and under load that may be
  // the same one each time (see the scale scenario).
  const probe = await probeWorkers(s.port, { want: 2 });
  const children = name === 'baton' ? childPids(s.pid) : null;
  r.probe = { pids: probe.pids, generations: probe.health.map((h) => h.generation), configVersions: probe.health.map((h) => h.configVersion), bodies: probe.bodies, errors: probe.errors, children };
  const fromNewWorkers = name === 'baton'
    ? probe.pids.length > 0 && r.workers?.length === 2 && probe.pids.every((p) => r.workers.includes(p) && children?.includes(p))
    : probe.pids.length === 2;
  r.configOk = r.outcome === 'complete' && probe.errors === 0 && fromNewWorkers &&
    probe.bodies.length === 1 && probe.bodies[0].trim() === message &&
    probe.health.every((h) => String(h.generation) === String(r.generation));
  return r;
}

/**
 * Run the three clients against `s` while `body` runs, return records.
 * @param {any} s @param {{ rate: number, ncLoops: number, ncPauseMs: number, slowConc: number, kaConns: number }} load
 * @param {(t0: number) => Promise<void>} body
 */
async function underLoad(s, load, body) {
  const rec = new Recorder();
  const stop = createStopper();
  const origin = `http://${HOST}:${s.port}`;
  const clients = Promise.all(/** @type {Promise<any>[]} */ ([
    fixedRateClient({ origin, rate: load.rate, connections: load.kaConns, timeoutMs: 10_000, rec, stop, client: 'ka' }),
    newConnLoops({ host: HOST, port: s.port, loops: load.ncLoops, pauseMs: load.ncPauseMs, timeoutMs: 10_000, rec, stop, client: 'nc' }),
    load.slowConc ? closedLoopClient({ origin, path: '/slow?ms=300', concurrency: load.slowConc, timeoutMs: 10_000, rec, stop, client: 'slow' }) : Promise.resolve(),
  ]));
  let bodyErr = null;
  const { clientLag } = await withClientLag(async () => { try { await body(rec.t0); } catch (err) { bodyErr = err; } });
  stop.stop();
  const [ka] = await clients;
  const endMs = performance.now() - rec.t0;
  if (bodyErr) throw bodyErr;
  return { rec, endMs, skipped: ka.skipped, clientLag };
}

/** @param {string} name @param {number|null} maxRps */
async function reloadFor(name, maxRps) {
  say(`reloads under load: ${name} (${O.reloads} reloads)`);
  const s = /** @type {any} */ (await start(name));
  try {
    // Warm up (JIT) and, without a throughput figure from this run, measure the max.
    const w = await runAutocannon({ url: `http://${HOST}:${s.port}/`, connections: P.kaConnections, duration: maxRps ? 1 : 2 });
    if (!maxRps) maxRps = w.requests.average;
    const rate = O.rate ?? Math.max(50, Math.min(P.maxRate, Math.round((maxRps ?? 1000) * P.rateFraction)));
    /** @type {any[]} */
    const reloads = [];
    const cliOverheadMs = name === 'pm2' ? round(await s.cliOverhead()) : null;
    const speedBefore = speedProbe();
    const { rec, endMs, skipped, clientLag } = await underLoad(s, { rate, kaConns: 16, ncLoops: 2, ncPauseMs: 5, slowConc: 4 }, async (t0) => {
      await sleep(P.leadInMs);
      for (let i = 1; i <= O.reloads; i++) {
        const r = await doReload(name, s, i, t0);
        reloads.push(r);
        if (!r.configOk || r.outcome !== 'complete') say(`  ${name} reload ${i}: ${r.outcome}${r.configOk ? '' : ', config check failed'} ${JSON.stringify(r.probe)} ${r.error ?? ''}`);
        await sleep(i === O.reloads ? P.tailMs : P.gapMs);
      }
    });
    const speed = [speedBefore, speedProbe()];
    maybeWriteSample(name, rec, reloads, endMs);
    const sum = summarizeReloadRun({ records: rec, reloads, endMs, binMs: P.binMs, settleMs: P.settleMs, rampMs: P.rampMs });
    return { rate, maxRps: round(maxRps, 0), durationS: round(endMs / 1000, 1), cliOverheadMs, kaSkipped: skipped, clientLag, speed, ...sum, reloads, errorCodes: rec.errors };
  } finally { await s.stop(); if (name === 'pm2') /** @type {any} */ (s).reap?.(); }
}

/** Dev aid: BENCH_SAMPLE_OUT=path writes a small recorded sample (for bench/fixtures/sample.json). */
function maybeWriteSample(name, /** @type {Recorder} */ rec, /** @type {any[]} */ reloads, /** @type {number} */ endMs) {
  const out = process.env.BENCH_SAMPLE_OUT;
  if (!out || fs.existsSync(out)) return;
  const keep = Math.max(1, Math.floor(rec.length / 400));
  const cols = { t: /** @type {number[]} */ ([]), lat: /** @type {number[]} */ ([]), kind: /** @type {number[]} */ ([]), client: /** @type {number[]} */ ([]) };
  for (let i = 0; i < rec.length; i++) {
    if (i % keep !== 0 && rec.kind[i] === 0) continue;
    cols.t.push(round(rec.t[i], 3) ?? 0); cols.lat.push(round(rec.lat[i], 3) ?? 0); cols.kind.push(rec.kind[i]); cols.client.push(rec.client[i]);
  }
  fs.writeFileSync(out, JSON.stringify({ server: name, endMs: round(endMs, 1), reloads: reloads.map((r) => ({ signalAt: round(r.signalAt, 1), readyAt: round(r.readyAt, 1), goneAt: round(r.goneAt, 1), outcome: r.outcome, configOk: r.configOk })), records: cols }));
}

// ---- scenario 3: soak -------------------------------------------------------
async function soak() {
  const total = O.soakReloads;
  say(`soak: ${P.soakWarmup} warm-up + ${total} consecutive baton reloads under light load`);
  const s = /** @type {any} */ (await start('baton'));
  try {
    /** @type {any[]} */
    const reloads = [];
    /** @type {any} */
    const info = { rssSeries: [] };
    const { rec } = await underLoad(s, { rate: P.soakRate, kaConns: 4, ncLoops: 1, ncPauseMs: 20, slowConc: 1 }, async (t0) => {
      await sleep(300);
      for (let i = 1; i <= P.soakWarmup; i++) await doSoakReload(s, -i, t0);
      await sleep(500);
      info.rssBefore = rssKb(s.pid);
      info.fdBefore = fdCount(s.pid);
      for (let i = 1; i <= total; i++) {
        const r = await doSoakReload(s, i, t0);
        reloads.push(r);
        if (r.outcome !== 'complete') say(`  soak reload ${i}: ${r.outcome} ${r.reason ?? ''} ${r.error ?? ''}`);
        if (i % 10 === 0) info.rssSeries.push([i, rssKb(s.pid), fdCount(s.pid)]);
        if (i % 50 === 0) say(`  soak: ${i}/${total} reloads, primary RSS ${rssKb(s.pid)} kB, fds ${fdCount(s.pid)}`);
      }
      await sleep(1000);
      info.rssAfter = rssKb(s.pid);
      info.fdAfter = fdCount(s.pid);
      info.children = childPids(s.pid);
      info.probe = await probeWorkers(s.port, { want: 2 });
    });
    const lastMsg = s.vars.MESSAGE;
    const sum = summarizeReloadRun({ records: rec, reloads, binMs: 1000 });
    // Every answer from a child with the last config (as after each reload, not every worker need answer).
    const configOk = info.probe.bodies.length === 1 && info.probe.bodies[0].trim() === lastMsg && info.probe.pids.length > 0 &&
      info.probe.pids.every((/** @type {number} */ p) => info.children.includes(p));
    return {
      reloadCount: total, reloadsCompleted: sum.reloadsCompleted, counts: sum.counts, readyMs: sum.readyMs, goneMs: sum.goneMs,
      latency: latencyStats(okLatencies(rec)),
      rss: { beforeKb: info.rssBefore, afterKb: info.rssAfter, growthKb: info.rssAfter - info.rssBefore },
      rssSeries: info.rssSeries, // [reload #, primary VmRSS kB, open fds] every 10 reloads
      fds: { before: info.fdBefore, after: info.fdAfter },
      workersAtEnd: info.children.length, childPids: info.children, healthzPids: info.probe.pids, configOk,
      outcomes: tally(reloads.map((r) => r.outcome)), errorCodes: rec.errors,
      reloadMsSeries: reloads.map((r) => r.readyMs ?? null),
    };
  } finally { await s.stop(); }
}

/** @param {any} s @param {number} i @param {number} t0 */
async function doSoakReload(s, i, t0) {
  return { i, ...(await signalBatonReload(s, `soak ${i} ${Math.random().toString(36).slice(2, 6)}`, t0)) };
}

/** A timed baton reload (lib/servers.js) with this run's timeouts. @param {any} s @param {string} message @param {number} t0 */
function signalBatonReload(s, message, t0) {
  return reloadBatonTimed(s, message, t0, { readyTimeoutMs: P.reloadTimeoutMs, goneTimeoutMs: P.reloadTimeoutMs });
}

/** @param {string[]} xs */
function tally(xs) {
  /** @type {Record<string, number>} */
  const o = {};
  for (const x of xs) o[x] = (o[x] ?? 0) + 1;
  return o;
}

// ---- scenario 4: shutdown ---------------------------------------------------
/** @param {string} name */
async function shutdownFor(name) {
  say(`shutdown: ${name}`);
  /** @type {any} */
  const out = {};
  for (const mode of ['none', 'idle', 'inflight']) {
    const s = /** @type {any} */ (await start(name));
    const pool = new Pool(`http://${HOST}:${s.port}`, { connections: 8, pipelining: 1 });
    try {
      // Open 8 keep-alive sockets and leave them idle ('none': no connection at all).
      if (mode !== 'none') await Promise.all(Array.from({ length: 8 }, () => pool.request({ path: '/slow?ms=50', method: 'GET' }).then((r) => r.body.text())));
      /** @type {Promise<string>|null} */
      let slow = null;
      if (mode === 'inflight') {
        const t = performance.now();
        slow = pool.request({ path: '/slow?ms=1000', method: 'GET' })
          .then(async (r) => { await r.body.text(); return `${r.statusCode} after ${Math.round(performance.now() - t)} ms`; })
          .catch((e) => `failed: ${e.code ?? e.message}`);
        await sleep(100);
      } else await sleep(200);
      const logged = s.waitFor((/** @type {any} */ o) => o.msg === 'shutdown complete', 15_000).then(() => true, () => false);
      const t0 = performance.now();
      s.signal('SIGTERM');
      const ex = await Promise.race([s.exited, sleep(15_000).then(() => null)]);
      out[mode] = { ms: ex ? round(ex.at - t0, 1) : null, code: ex ? ex.code : 'no exit in 15 s', signal: ex?.signal ?? null, shutdownLogged: name === 'baton' ? await logged : null };
      if (slow) out[mode].slowOutcome = await slow;
    } finally {
      await pool.destroy().catch(() => {});
      await s.stop();
      if (name === 'pm2') /** @type {any} */ (s).reap?.();
    }
  }
  return out;
}

// ---- main -----------------------------------------------------------------
/** @template T @param {string} name @param {() => Promise<T>} f @returns {Promise<T>} */
async function timed(name, f) {
  const t = performance.now();
  try { return await f(); } finally { (results.meta.scenarioS ??= {})[name] = round((performance.now() - t) / 1000, 1); }
}

async function main() {
  const tStart = performance.now();
  if (O.selfCheck !== 'no') {
    try { results.selfCheck = await timed('selfcheck', selfCheck); } catch (err) { recordError('self-check', err); }
  }
  if (O.selfCheck !== 'only') {
    const want = (/** @type {string} */ s) => O.servers.includes(s);
    if (O.only.includes('throughput')) {
      results.throughput = { runs: O.runs, durationS: O.duration, kaConnections: P.kaConnections, ncLoops: P.ncLoops, servers: {} };
      const r = await timed('throughput', () => throughput(['bare', 'cluster', 'pm2', 'baton'].filter(want)));
      results.throughput.servers = r.servers;
      results.throughput.raw = r.raw;
      results.throughput.speed = r.speed;
      results.throughput.noiseFloor = r.noiseFloor;
      results.throughput.ratios = throughputRatios(results.throughput.servers, results.throughput.raw);
    }
    if (O.only.includes('reload')) {
      results.reload = { reloads: O.reloads, servers: {} };
      for (const name of ['baton', 'pm2'].filter(want)) {
        try {
          results.reload.servers[name] = await timed(`reload-${name}`, () => reloadFor(name, results.throughput?.servers?.[name]?.keepAlive?.rps ?? null));
        } catch (err) { recordError(`reload ${name}`, err); }
      }
    }
    if (O.only.includes('soak') && want('baton')) {
      try { results.soak = { baton: await timed('soak', soak) }; } catch (err) { recordError('soak', err); }
    }
    if (O.only.includes('shutdown')) {
      results.shutdown = { servers: {} };
      for (const name of ['baton', 'pm2'].filter(want)) {
        try { results.shutdown.servers[name] = await timed(`shutdown-${name}`, () => shutdownFor(name)); } catch (err) { recordError(`shutdown ${name}`, err); }
      }
    }
    // The scenarios added since (one module each, bench/scenarios/): same
    // contract, run in the order of SCENARIO_MODULES.
    const ctx = { O, P, say, sleep, start, withCpu, speedProbe, recordError, doReload, underLoad, signalBatonReload, batonEntry: () => { buildBaton(); return BATON_ENTRY; } };
    for (const m of SCENARIO_MODULES) {
      if (!O.only.includes(m.name)) continue;
      try { results[m.name] = await timed(m.name, () => m.run(ctx)); } catch (err) { recordError(m.name, err); }
    }
  }
  results.meta.wallS = round((performance.now() - tStart) / 1000, 1);
  results.targets = evaluateTargets(results, SCENARIO_MODULES);
  const report = renderReport(results, SCENARIO_MODULES);
  process.stdout.write(`\n${report}\n`);
  if (O.selfCheck !== 'only' || O.json) writeOutputs();
  process.stdout.write(`\nwall time ${results.meta.wallS} s (${Object.entries(results.meta.scenarioS ?? {}).map(([k, v]) => `${k} ${v}s`).join(', ')})${results.errors.length ? `; ${results.errors.length} harness error(s), see above` : ''}\n`);
  const selfCheckBad = results.selfCheck && !results.selfCheck.exact;
  if (selfCheckBad) say('the failure counter did not match the broken server: results are not trustworthy');
  return results.errors.length || selfCheckBad ? 1 : 0;
}

function writeOutputs() {
  const dir = path.join(BENCH_DIR, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const stamp = results.meta.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const json = JSON.stringify(results, null, 1) + '\n';
  const files = [path.join(dir, `${stamp}.json`), path.join(dir, 'latest.json')];
  if (O.json) files.push(path.resolve(O.json));
  for (const f of files) fs.writeFileSync(f, json);
  const series = Object.entries(results.reload?.servers ?? {}).map(([name, r]) => ({
    name: `${name} (${r.reloadsCompleted}/${r.reloadCount} reloads, ${r.counts.all.failed} failed)`,
    color: /** @type {any} */ (COLORS)[name] ?? '#555', timeline: r.timeline, windows: r.windows,
  }));
  if (series.length) {
    const svg = renderTimelineSvg({
      title: `baton vs PM2: reloads under load (${results.meta.date.slice(0, 19)}Z${O.quick ? ', --quick' : ''})`,
      subtitle: `keep-alive client at a fixed rate (½ of each server's max) + new-connection loop + /slow?ms=300; 2 workers; node ${process.version}, ${results.meta.cpus} cores`,
      series,
      windowLabel: `reload signal → old generation gone, + ${P.settleMs} ms settle`,
    });
    fs.writeFileSync(path.join(dir, `${stamp}.svg`), svg);
    fs.writeFileSync(path.join(dir, 'latest.svg'), svg);
  }
  say(`wrote ${path.relative(REPO_DIR, files[0])}${series.length ? ` and .svg` : ''} (+ latest.*)${O.json ? ` and ${O.json}` : ''}`);
}

main().then((code) => {
  killAllStarted();
  removeTempDirs();
  process.exit(code);
}, (err) => {
  say(`harness error: ${err?.stack ?? err}`);
  killAllStarted();
  removeTempDirs();
  process.exit(1);
});
