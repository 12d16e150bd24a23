// @ts-check
// Pure result summarising for the bench: error classification, percentiles,
// failure counts, in/out-of-reload-window split, timelines, ratios, targets and
// table formatting. No side effects on import; no I/O.

/** Outcome kinds, in the order used by the numeric `kind` column of a record set. */
export const KINDS = /** @type {const} */ (['ok', 'refused', 'reset', 'timeout', 'non2xx', 'other']);
/** Client kinds, in the order used by the numeric `client` column. */
export const CLIENTS = /** @type {const} */ (['ka', 'nc', 'slow']);
export const CLIENT_LABELS = { ka: 'keep-alive (fixed rate)', nc: 'new conn per request', slow: '/slow?ms=300' };

/**
 * A record set, columnar: request i started at t[i] ms (relative to the scenario
 * start, measured from its *intended* start for fixed-rate clients), took lat[i]
 * ms until the body was read or it failed, ended as KINDS[kind[i]], was sent by
 * CLIENTS[client[i]].
 * @typedef {{ t: ArrayLike<number>, lat: ArrayLike<number>, kind: ArrayLike<number>, client: ArrayLike<number> }} Records
 */

/**
 * Map a client-side error to a failure kind.
 * @param {any} err
 * @returns {'refused'|'reset'|'timeout'|'other'}
 */
export function classifyError(err) {
  const seen = new Set();
  let e = err;
  // undici wraps the socket error in `cause`; look through the chain.
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const code = e.code;
    if (e.benchTimeout === true || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' ||
        code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT') return 'timeout';
    if (code === 'ECONNREFUSED') return 'refused';
    if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET' || code === 'ECONNABORTED' ||
        code === 'HPE_INVALID_CONSTANT' || code === 'UND_ERR_CLOSED') return 'reset';
    e = e.cause;
  }
  if (err && /socket hang up|other side closed/i.test(String(err.message))) return 'reset';
  return 'other';
}

/**
 * Nearest-rank percentile of an ascending-sorted array (p in 0..100).
 * @param {ArrayLike<number>} sorted
 * @param {number} p
 */
export function percentileSorted(sorted, p) {
  const n = sorted.length;
  if (n === 0) return null;
  const rank = Math.ceil((p / 100) * n);
  return sorted[Math.min(n - 1, Math.max(0, rank - 1))];
}

/** @param {ArrayLike<number>} values */
function sortedCopy(values) {
  const a = Float64Array.from(values);
  a.sort();
  return a;
}

/**
 * @param {ArrayLike<number>} values
 * @returns {{count:number, p50:number|null, p90:number|null, p99:number|null, max:number|null, mean:number|null}}
 */
export function latencyStats(values) {
  const s = sortedCopy(values);
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i];
  return {
    count: s.length,
    p50: round(percentileSorted(s, 50)),
    p90: round(percentileSorted(s, 90)),
    p99: round(percentileSorted(s, 99)),
    max: s.length ? round(s[s.length - 1]) : null,
    mean: s.length ? round(sum / s.length) : null,
  };
}

/** @param {number|null|undefined} x @param {number} [d] */
export function round(x, d = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x ?? null;
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** @param {ArrayLike<number>} values */
export function median(values) {
  const s = sortedCopy(values);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The run whose `key` is the median (lower median for even counts) — so the
 * reported latencies belong to the same run as the reported throughput.
 * @template T
 * @param {T[]} runs
 * @param {(r: T) => number} key
 * @returns {T | null}
 */
export function medianRun(runs, key) {
  if (runs.length === 0) return null;
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[(sorted.length - 1) >> 1];
}

/** @param {number|null|undefined} a @param {number|null|undefined} b */
export function ratio(a, b) {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return round(a / b, 3);
}

/** Latencies of the answered (kind ok) records. @param {{ length: number, kind: ArrayLike<number>, lat: ArrayLike<number> }} rec */
export function okLatencies(rec) {
  const a = [];
  for (let i = 0; i < rec.length; i++) if (rec.kind[i] === 0) a.push(rec.lat[i]);
  return a;
}

/**
 * @param {Records} rec
 * @param {(i:number)=>boolean} [filter]
 */
export function countKinds(rec, filter) {
  /** @type {Record<string, number>} */
  const c = { total: 0, failed: 0 };
  for (const k of KINDS) c[k] = 0;
  for (let i = 0; i < rec.t.length; i++) {
    if (filter && !filter(i)) continue;
    c.total++;
    const k = KINDS[rec.kind[i]] ?? 'other';
    c[k]++;
    if (k !== 'ok') c.failed++;
  }
  return c;
}

/**
 * Failure counts per client kind and overall.
 * @param {Records} rec
 */
export function countByClient(rec) {
  /** @type {Record<string, Record<string, number>>} */
  const out = {};
  for (let ci = 0; ci < CLIENTS.length; ci++) {
    const c = countKinds(rec, (i) => rec.client[i] === ci);
    if (c.total > 0) out[CLIENTS[ci]] = c;
  }
  out.all = countKinds(rec);
  return out;
}

/**
 * Does the interval [a, b] overlap any window [s, e]?
 * @param {number} a @param {number} b @param {Array<[number, number]>} windows
 */
export function overlapsAny(a, b, windows) {
  for (const [s, e] of windows) if (a <= e && b >= s) return true;
  return false;
}

/**
 * Latency of successful requests whose [start, start+latency] overlaps a reload
 * window vs the rest, for one client kind (default: the fixed-rate keep-alive client).
 * Requests started before `fromMs` (the load's own ramp-up) are left out.
 * @param {Records} rec
 * @param {Array<[number, number]>} windows  [startMs, endMs] in the records' time base
 * @param {{ client?: string, okOnly?: boolean, fromMs?: number }} [o]
 */
export function splitByWindows(rec, windows, o = {}) {
  const ci = CLIENTS.indexOf(/** @type {any} */ (o.client ?? 'ka'));
  const okOnly = o.okOnly ?? true;
  const fromMs = o.fromMs ?? 0;
  /** @type {number[]} */ const inside = [];
  /** @type {number[]} */ const outside = [];
  for (let i = 0; i < rec.t.length; i++) {
    if (ci >= 0 && rec.client[i] !== ci) continue;
    if (okOnly && rec.kind[i] !== 0) continue;
    if (rec.t[i] < fromMs) continue;
    const a = rec.t[i];
    const b = a + rec.lat[i];
    (overlapsAny(a, b, windows) ? inside : outside).push(rec.lat[i]);
  }
  const ins = latencyStats(inside);
  const outs = latencyStats(outside);
  return { inside: ins, outside: outs, p99Ratio: ratio(ins.p99, outs.p99) };
}

/**
 * Completions per second (by end time) and p99 latency (by start time) per bin.
 * @param {Records} rec
 * @param {{ binMs?: number, client?: string, endMs?: number }} [o]
 * @returns {Array<{ t: number, rps: number, p99: number|null, failed: number }>}
 */
export function timeline(rec, o = {}) {
  const binMs = o.binMs ?? 500;
  const ci = o.client ? CLIENTS.indexOf(/** @type {any} */ (o.client)) : -1;
  let end = o.endMs ?? 0;
  if (o.endMs === undefined) for (let i = 0; i < rec.t.length; i++) end = Math.max(end, rec.t[i] + rec.lat[i]);
  // Whole bins only: a trailing partial bin would show a false drop in req/s.
  const nb = Math.max(1, Math.floor(end / binMs));
  const done = new Array(nb).fill(0);
  const failed = new Array(nb).fill(0);
  /** @type {number[][]} */
  const lats = Array.from({ length: nb }, () => []);
  for (let i = 0; i < rec.t.length; i++) {
    if (ci >= 0 && rec.client[i] !== ci) continue;
    const sb = Math.max(0, Math.floor(rec.t[i] / binMs));
    const eb = Math.max(0, Math.floor((rec.t[i] + rec.lat[i]) / binMs));
    if (rec.kind[i] === 0) {
      if (eb < nb) done[eb]++;
      if (sb < nb) lats[sb].push(rec.lat[i]);
    } else if (eb < nb) failed[eb]++;
  }
  return done.map((d, b) => ({
    t: round(b * binMs / 1000, 3),
    rps: round(d * 1000 / binMs, 1),
    p99: round(percentileSorted(sortedCopy(lats[b]), 99)),
    failed: failed[b],
  }));
}

/** @param {Array<number|null|undefined>} xs */
function maxOf(xs) {
  const v = xs.filter((x) => x != null && Number.isFinite(x));
  return v.length ? Math.max(.../** @type {number[]} */ (v)) : null;
}

/**
 * Reload windows: [signal, old generation gone (else new generation ready)],
 * the end extended by `settleMs` so the new generation's cold start counts as
 * part of the reload, not as the steady state it is compared with.
 * @param {Array<{ signalAt: number, readyAt?: number|null, goneAt?: number|null }>} reloads
 * @param {number} [settleMs]
 * @returns {Array<[number, number]>}
 */
export function reloadWindows(reloads, settleMs = 0) {
  return reloads.map((r) => [r.signalAt, (r.goneAt ?? r.readyAt ?? r.signalAt) + settleMs]);
}

/**
 * Summarise one reloads-under-load run from its raw records and reload log.
 * @param {{ records: Records, reloads: Array<{ signalAt: number, readyAt: number|null, goneAt: number|null,
 *           readyMs?: number|null, goneMs?: number|null, configOk?: boolean|null, outcome?: string }>,
 *           endMs?: number, binMs?: number, settleMs?: number, rampMs?: number }} run
 */
export function summarizeReloadRun(run) {
  const settleMs = run.settleMs ?? 500;
  const fromMs = run.rampMs ?? 0;
  const windows = reloadWindows(run.reloads, settleMs);
  const readyMs = run.reloads.map((r) => r.readyMs ?? (r.readyAt != null ? r.readyAt - r.signalAt : null));
  const goneMs = run.reloads.map((r) => r.goneMs ?? (r.goneAt != null ? r.goneAt - r.signalAt : null));
  const okReloads = run.reloads.filter((r) => (r.outcome ?? 'complete') === 'complete').length;
  const tl = timeline(run.records, { binMs: run.binMs ?? 500, client: 'ka', endMs: run.endMs });
  return {
    counts: countByClient(run.records),
    latency: splitByWindows(run.records, windows, { client: 'ka', fromMs }),
    latencyStrict: splitByWindows(run.records, reloadWindows(run.reloads, 0), { client: 'ka', fromMs }),
    settleMs,
    rampMs: fromMs,
    reloadCount: run.reloads.length,
    reloadsCompleted: okReloads,
    readyMs: { p50: round(median(readyMs.filter((x) => x != null).map(Number))), max: round(maxOf(readyMs)) },
    goneMs: { p50: round(median(goneMs.filter((x) => x != null).map(Number))), max: round(maxOf(goneMs)) },
    configOkAll: run.reloads.length > 0 && run.reloads.every((r) => r.configOk === true),
    windows,
    timeline: tl,
    worstBinP99: round(maxOf(tl.filter((b) => b.t * 1000 >= fromMs).map((b) => b.p99))),
  };
}

/**
 * Pick the median run of a list of throughput runs ({rps, p50, p99, max, ...}).
 * @param {Array<{rps:number, p50:number|null, p99:number|null, max:number|null}>} runs
 */
export function summarizeThroughputRuns(runs) {
  const m = medianRun(runs, (r) => r.rps);
  return m ? { ...m, runs: runs.length, allRps: runs.map((r) => round(r.rps, 0)) } : null;
}

/**
 * Paired ratio: runs are measured in interleaved rounds, so a[i] and b[i] ran
 * seconds apart; the median of the per-round ratios cancels slow drifts of a
 * shared machine better than the ratio of the two medians.
 * @param {Array<{rps:number}>|undefined} a @param {Array<{rps:number}>|undefined} b
 */
export function pairedRatio(a, b) {
  if (!a || !b) return null;
  const n = Math.min(a.length, b.length);
  const r = [];
  for (let i = 0; i < n; i++) if (b[i].rps > 0) r.push(a[i].rps / b[i].rps);
  return r.length ? round(median(r), 3) : null;
}

/**
 * The A/A control: a second, identical node:cluster measured in the same
 * rounds as the first. Its ratio to the first (median of per-round ratios,
 * as the targets use, and each round's) is what the machine's noise alone
 * does to a ratio.
 * @param {{ka: Array<{rps:number}>, nc: Array<{rps:number}>}} aa @param {{ka: Array<{rps:number}>, nc: Array<{rps:number}>}} cl
 */
export function noiseFloor(aa, cl) {
  /** @param {Array<{rps:number}>} a @param {Array<{rps:number}>} b */
  const rounds = (a, b) => a.slice(0, b.length).map((x, i) => round(x.rps / b[i].rps, 3));
  return {
    keepAlive: { paired: pairedRatio(aa.ka, cl.ka), rounds: rounds(aa.ka, cl.ka) },
    newConn: { paired: pairedRatio(aa.nc, cl.nc), rounds: rounds(aa.nc, cl.nc) },
  };
}

/**
 * Ratios of baton's throughput to the bare cluster ceiling, to PM2 and to bare:
 * ratio of medians, and (with the raw rounds) the median of per-round ratios.
 * @param {Record<string, Record<string, {rps:number}|null|undefined>>} tp  server -> mode -> summary
 * @param {Record<string, {ka: Array<{rps:number}>, nc: Array<{rps:number}>}>} [raw] server -> rounds
 */
export function throughputRatios(tp, raw) {
  /** @type {Record<string, {vsCluster: number|null, vsPm2: number|null, vsBare: number|null, cpuPerReqVsCluster: number|null, pairedVsCluster: number|null, pairedVsPm2: number|null}>} */
  const out = {};
  for (const mode of ['keepAlive', 'newConn']) {
    const k = mode === 'keepAlive' ? 'ka' : 'nc';
    const b = tp.baton?.[mode]?.rps;
    const cpu = /** @type {any} */ (tp.baton?.[mode])?.serverCpuUsPerReq;
    out[mode] = {
      vsCluster: ratio(b, tp.cluster?.[mode]?.rps), vsPm2: ratio(b, tp.pm2?.[mode]?.rps), vsBare: ratio(b, tp.bare?.[mode]?.rps),
      cpuPerReqVsCluster: ratio(cpu, /** @type {any} */ (tp.cluster?.[mode])?.serverCpuUsPerReq),
      pairedVsCluster: raw ? pairedRatio(raw.baton?.[k], raw.cluster?.[k]) : null,
      pairedVsPm2: raw ? pairedRatio(raw.baton?.[k], raw.pm2?.[k]) : null,
    };
  }
  return out;
}

/**
 * @typedef {{ id: string, label: string, value: string, threshold: string, status: 'PASS'|'FAIL'|'SKIP' }} TargetRow
 */

/**
 * Evaluate the project targets against a results object (as written to JSON).
 * @param {any} r
 * @returns {TargetRow[]}
 */
/**
 * @typedef {{ name: string, run: (ctx: any) => Promise<any>, targets?: (x: any, add: (id: string, label: string, value: any, threshold: string, pass: boolean|null) => void, all: any) => void, report?: (x: any, all: any) => string[] }} ScenarioModule
 * @param {any} r @param {ScenarioModule[]} [modules] the scenarios of bench/scenarios/ (their own targets)
 */
export function evaluateTargets(r, modules = []) {
  /** @type {TargetRow[]} */
  const rows = [];
  /** @param {string} id @param {string} label @param {any} value @param {string} threshold @param {boolean|null} pass */
  const add = (id, label, value, threshold, pass) =>
    rows.push({ id, label, value: value == null ? 'n/a' : String(value), threshold, status: pass == null ? 'SKIP' : pass ? 'PASS' : 'FAIL' });

  const sc = r.selfCheck;
  add('selfcheck', 'failure counter matches broken server exactly', sc ? (sc.exact ? 'exact' : 'MISMATCH') : null, 'exact', sc ? sc.exact : null);

  const rl = r.reload?.servers?.baton;
  add('reload-failures', 'baton failed requests, reloads under load', rl ? rl.counts.all.failed : null, '0', rl ? rl.counts.all.failed === 0 : null);
  const so = r.soak?.baton;
  add('soak-failures', 'baton failed requests, soak', so ? so.counts.all.failed : null, '0', so ? so.counts.all.failed === 0 : null);

  // Per-round paired ratios when the raw rounds are there, else ratio of medians.
  const tb = r.throughput?.servers?.baton?.keepAlive?.rps;
  const paired = r.throughput?.raw ? throughputRatios(r.throughput.servers ?? {}, r.throughput.raw).keepAlive : null;
  const rc = paired?.pairedVsCluster ?? ratio(tb, r.throughput?.servers?.cluster?.keepAlive?.rps);
  add('ka-vs-cluster', 'keep-alive req/s vs bare cluster', rc == null ? null : `${rc.toFixed(3)}x`, '>= 0.97x', rc == null ? null : rc >= 0.97);
  const ratios = r.throughput?.servers ? throughputRatios(r.throughput.servers, r.throughput.raw) : null;
  const kc = ratios?.keepAlive?.cpuPerReqVsCluster;
  add('ka-cpu-vs-cluster', 'keep-alive server CPU per request vs bare cluster', kc == null ? null : `${kc.toFixed(3)}x`, '<= 1.05x', kc == null ? null : kc <= 1.05);
  const nc = ratios?.newConn ? (ratios.newConn.pairedVsCluster ?? ratios.newConn.vsCluster) : null;
  add('nc-vs-cluster', 'new connection per request: req/s vs bare cluster', nc == null ? null : `${nc.toFixed(3)}x`, '>= 1.00x', nc == null ? null : nc >= 1);
  const rp = paired?.pairedVsPm2 ?? ratio(tb, r.throughput?.servers?.pm2?.keepAlive?.rps);
  add('ka-vs-pm2', 'keep-alive req/s vs PM2', rp == null ? null : `${rp.toFixed(3)}x`, '>= 1.00x', rp == null ? null : rp >= 1);

  const lat = rl?.latency;
  const pr = lat?.p99Ratio;
  add('p99-window', 'p99 in reload windows vs outside', lat ? `${fmtMs(lat.inside.p99)} / ${fmtMs(lat.outside.p99)} = ${pr == null ? 'n/a' : pr.toFixed(2) + 'x'}` : null,
    '<= 2.00x', lat ? pr != null && pr <= 2 : null);

  const readyMax = maxOf([rl?.readyMs?.max, so?.readyMs?.max]);
  add('reload-time', 'reload signal -> new generation ready (max)', readyMax == null ? null : fmtMs(readyMax), '<= 1000 ms', readyMax == null ? (rl || so ? false : null) : readyMax <= 1000);
  add('reload-config', 'new config on every answer, from the new workers, after each reload', rl ? (rl.configOkAll ? 'yes' : 'NO') : null, 'yes', rl ? rl.configOkAll : null);

  const g = so?.rss?.growthKb;
  add('soak-rss', 'soak primary RSS growth', g == null ? null : `${(g / 1024).toFixed(2)} MB`, '< 5 MB', g == null ? (so ? false : null) : g < 5 * 1024);
  add('soak-fd', 'soak primary open fds before -> after', so?.fds ? `${so.fds.before} -> ${so.fds.after}` : null, 'equal', so?.fds ? so.fds.after === so.fds.before : so ? false : null);
  add('soak-workers', 'soak workers at end', so ? so.workersAtEnd : null, '2', so ? so.workersAtEnd === 2 : null);

  // Idle keep-alive connections are kept up to SHUTDOWN_IDLE_CLOSE_MS (5 s)
  // in case they carry one more request (closing them at once races the
  // client: see the README's signal table); with nothing connected the exit
  // is immediate.
  const sdb = r.shutdown?.servers?.baton;
  const sd = sdb?.idle;
  add('shutdown-idle', 'SIGTERM -> exit 0 with idle keep-alive', sd ? fmtMs(sd.ms) : null, '<= 5500 ms', sd ? sd.ms != null && sd.ms <= 5500 && sd.code === 0 : null);
  const sn = sdb?.none;
  add('shutdown-none', 'SIGTERM -> exit 0 with nothing connected', sn ? fmtMs(sn.ms) : null, '<= 500 ms', sn ? sn.ms != null && sn.ms <= 500 && sn.code === 0 : null);
  for (const m of modules) if (r[m.name] && m.targets) m.targets(r[m.name], add, r);
  return rows;
}

/**
 * The load clients' own event-loop delay per server: a client held up for
 * longer than a request takes delays requests, which read as server latency.
 * @param {Record<string, any>} servers
 */
export function clientLagLine(servers) {
  const lags = Object.entries(servers).filter(([, x]) => x?.clientLag).map(([n, x]) => `${n} max ${fmtMs(x.clientLag.maxMs)}, p99 ${fmtMs(x.clientLag.p99Ms)}`);
  if (!lags.length) return null;
  const worst = Math.max(...Object.values(servers).map((x) => x?.clientLag?.maxMs ?? 0));
  return `(bench client's own event-loop delay: ${lags.join('; ')})${worst > CLIENT_LAG_WARN_MS ? `\nWARNING: the bench's client was held up for ${fmtMs(worst)}: latencies near that are the client's, not the server's` : ''}`;
}

/** A client event-loop delay above this is reported as a warning. */
export const CLIENT_LAG_WARN_MS = 50;

/** @param {number|null|undefined} ms */
export function fmtMs(ms) {
  if (ms == null || !Number.isFinite(ms)) return 'n/a';
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/** @param {number|null|undefined} n */
export function fmtInt(n) {
  if (n == null || !Number.isFinite(n)) return 'n/a';
  return Math.round(n).toLocaleString('en-US');
}

/**
 * Format rows as an aligned plain-text table. Numbers (and strings that look
 * numeric) are right-aligned.
 * @param {string[]} headers
 * @param {Array<Array<string|number|null|undefined>>} rows
 */
export function formatTable(headers, rows) {
  const cells = rows.map((r) => r.map((c) => (c == null ? '' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const isNum = (/** @type {string} */ s) => /^[-+]?[\d,.]+( ?(ms|x|%|MB|KB|s))?$/.test(s);
  const line = (/** @type {string[]} */ r) =>
    r.map((c, i) => (isNum(c) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(headers), sep, ...cells.map(line)].join('\n');
}

/**
 * The full human-readable report.
 * @param {any} r results object
 */
/** @param {any} r @param {ScenarioModule[]} [modules] */
export function renderReport(r, modules = []) {
  const out = [];
  if (r.selfCheck) {
    const s = r.selfCheck;
    out.push('== Self-check: failure counter vs deliberately broken server ==');
    const kinds = ['total', 'ok', 'refused', 'reset', 'timeout', 'non2xx', 'other'];
    out.push(formatTable(['', ...kinds], [
      ['server truth', ...kinds.map((k) => s.truth?.[k])],
      ['bench counted', ...kinds.map((k) => s.counted?.[k])],
      ...(s.autocannon ? [
        ['server truth (autocannon run)', s.autocannon.serverRequests, s.autocannon.serverRequests - s.autocannon.truthFailed, 0, s.autocannon.serverReset, 0, s.autocannon.serverNon2xx, 0],
        ['autocannon 9 counted', s.autocannon.sent, s.autocannon.ok, '', s.autocannon.errors, s.autocannon.timeouts, s.autocannon.non2xx, ''],
      ] : []),
    ]));
    out.push(`self-check: ${s.exact ? 'EXACT (counter trusted)' : 'MISMATCH (counter NOT trusted)'}` +
      (s.autocannon ? `; autocannon counted ${s.autocannon.errors + s.autocannon.non2xx + s.autocannon.timeouts} failures where the server caused ${s.autocannon.truthFailed}` : ''));
    out.push('');
  }
  const tp = r.throughput?.servers;
  if (tp) {
    out.push(`== Steady throughput (median of ${r.throughput.runs} run(s), ${r.throughput.durationS}s each, 2 workers) ==`);
    const rows = [];
    for (const [name, s] of Object.entries(tp)) {
      for (const [mode, label] of [['keepAlive', `keep-alive (${r.throughput.kaConnections} conns)`], ['newConn', `new conn/request (${r.throughput.ncLoops} loops)`]]) {
        const m = /** @type {any} */ (s)[mode];
        if (!m) continue;
        rows.push([name, label, fmtInt(m.rps), fmtMs(m.p50), fmtMs(m.p99), fmtMs(m.max), m.errors ?? 0,
          m.serverCpuUsPerReq == null ? 'n/a' : `${m.serverCpuUsPerReq}`, m.foreignCpuPct == null ? 'n/a' : `${m.foreignCpuPct}%`, (m.allRps ?? []).map(fmtInt).join(' / ')]);
      }
    }
    out.push(formatTable(['server', 'mode', 'req/s', 'p50', 'p99', 'max', 'errors', 'srv µs CPU/req', 'noise', 'runs req/s'], rows));
    out.push('(keep-alive: autocannon, latencies in whole ms; new conn: own client, agent:false; srv µs CPU/req: CPU of the server\'s' +
      ' processes per request; noise: machine CPU used by processes not started by the bench during the median run)');
    const noisy = Object.entries(tp).flatMap(([n, s]) => Object.values(/** @type {any} */ (s)).filter((m) => m && (m.foreignCpuPct ?? 0) > 10).map(() => n));
    if (noisy.length) out.push(`WARNING: other processes used > 10% of the machine during runs of ${[...new Set(noisy)].join(', ')}: req/s is unreliable, compare CPU/req`);
    const ra = r.throughput.ratios;
    if (ra) {
      out.push(`baton req/s   keep-alive: ${fx(ra.keepAlive.vsCluster)} of cluster, ${fx(ra.keepAlive.vsPm2)} of PM2, ${fx(ra.keepAlive.vsBare)} of bare` +
        `;  new-conn: ${fx(ra.newConn.vsCluster)} of cluster, ${fx(ra.newConn.vsPm2)} of PM2, ${fx(ra.newConn.vsBare)} of bare`);
      if (ra.keepAlive.pairedVsCluster != null) {
        out.push(`baton req/s, median of per-round ratios  keep-alive: ${fx(ra.keepAlive.pairedVsCluster)} of cluster, ${fx(ra.keepAlive.pairedVsPm2)} of PM2` +
          `;  new-conn: ${fx(ra.newConn.pairedVsCluster)} of cluster, ${fx(ra.newConn.pairedVsPm2)} of PM2  (used for the targets)`);
      }
      out.push(`baton server CPU per request vs cluster: keep-alive ${fx(ra.keepAlive.cpuPerReqVsCluster)}, new-conn ${fx(ra.newConn.cpuPerReqVsCluster)}`);
      const nf = r.throughput.noiseFloor;
      if (nf) {
        const spread = (/** @type {number[]} */ xs) => `${fx(Math.min(...xs))}-${fx(Math.max(...xs))}`;
        out.push(`noise floor: a second node:cluster, same rounds, against the first (median of per-round ratios): keep-alive ${fx(nf.keepAlive.paired)}` +
          ` (rounds ${spread(nf.keepAlive.rounds)}), new-conn ${fx(nf.newConn.paired)} (rounds ${spread(nf.newConn.rounds)}): identical servers differ this much here`);
      }
      const sp = r.throughput.speed;
      if (sp?.length > 1) out.push(`machine speed per round (CPU-bound probe, % of the fastest): ${sp.map((x) => `${Math.round((x / Math.max(...sp)) * 100)}%`).join(' / ')}`);
    }
    out.push('');
  }
  const rl = r.reload?.servers;
  if (rl) {
    out.push('== Reloads under load (keep-alive fixed rate + new-conn loop + /slow?ms=300) ==');
    const rows = [];
    for (const [name, s] of Object.entries(rl)) {
      const x = /** @type {any} */ (s);
      rows.push([name, `${x.reloadsCompleted}/${x.reloadCount}`, fmtInt(x.rate), fmtInt(x.counts.all.total), x.counts.all.failed,
        `${x.counts.all.refused}/${x.counts.all.reset}/${x.counts.all.timeout}/${x.counts.all.non2xx}/${x.counts.all.other}`,
        fmtMs(x.latency.inside.p99), fmtMs(x.latency.outside.p99), fmtMs(x.latency.inside.max), fmtMs(x.latency.outside.max),
        fmtMs(x.worstBinP99), fmtMs(x.readyMs.p50), fmtMs(x.readyMs.max), fmtMs(x.goneMs.p50), fmtMs(x.goneMs.max), x.configOkAll ? 'yes' : 'NO']);
    }
    out.push(formatTable(['server', 'reloads', 'ka rate/s', 'requests', 'failed', 'ref/rst/tmo/5xx/oth', 'p99 in', 'p99 out', 'max in', 'max out', 'worst p99/bin',
      'ready p50', 'ready max', 'gone p50', 'gone max', 'config ok'], rows));
    out.push(`(latency: keep-alive client, first ${Object.values(rl)[0]?.rampMs ?? 0} ms of load (ramp-up) left out; reload window = signal -> old generation gone + ${Object.values(rl)[0]?.settleMs ?? 0} ms settle; without the settle margin p99 in/out: ` +
      Object.entries(rl).map(([n, x]) => `${n} ${fmtMs(/** @type {any} */ (x).latencyStrict?.inside.p99)} / ${fmtMs(/** @type {any} */ (x).latencyStrict?.outside.p99)}`).join(', ') + ')');
    const speeds = Object.entries(rl).filter(([, x]) => /** @type {any} */ (x).speed).map(([n, x]) => `${n} ${/** @type {any} */ (x).speed.join(' -> ')}`);
    if (speeds.length) out.push(`(machine speed probe before -> after each run, sha256/ms: ${speeds.join(', ')})`);
    const lags = clientLagLine(rl);
    if (lags) out.push(lags);
    for (const [n, x] of Object.entries(rl)) if (/** @type {any} */ (x).kaSkipped) out.push(`WARNING ${n}: the load client skipped ${/** @type {any} */ (x).kaSkipped} due requests (client swamped)`);
    const pm2 = rl.pm2;
    if (pm2?.cliOverheadMs != null) out.push(`(PM2 ready/gone = 'pm2 reload --update-env' command duration; its CLI start-up alone takes ~${fmtMs(pm2.cliOverheadMs)})`);
    for (const [name, s] of Object.entries(rl)) {
      const x = /** @type {any} */ (s);
      const per = Object.entries(x.counts).filter(([k]) => k !== 'all').map(([k, c]) => `${k} ${/** @type {any} */ (c).failed}/${fmtInt(/** @type {any} */ (c).total)}`).join(', ');
      out.push(`${name} failures by client: ${per}`);
    }
    out.push('');
  }
  const so = r.soak?.baton;
  if (so) {
    out.push(`== Soak: ${so.reloadsCompleted}/${so.reloadCount} consecutive baton reloads under light load ==`);
    out.push(formatTable(['requests', 'failed', 'RSS before', 'RSS after', 'growth', 'fds before', 'fds after', 'workers end', 'ready p50', 'ready max', 'gone max', 'config ok'], [[
      fmtInt(so.counts.all.total), so.counts.all.failed, `${(so.rss.beforeKb / 1024).toFixed(1)} MB`, `${(so.rss.afterKb / 1024).toFixed(1)} MB`,
      `${(so.rss.growthKb / 1024).toFixed(2)} MB`, so.fds.before, so.fds.after, so.workersAtEnd, fmtMs(so.readyMs.p50), fmtMs(so.readyMs.max), fmtMs(so.goneMs.max), so.configOk ? 'yes' : 'NO',
    ]]));
    if (so.rssSeries?.length > 2) out.push(`primary RSS every 10 reloads (MB): ${so.rssSeries.map((/** @type {number[]} */ x) => (x[1] / 1024).toFixed(1)).join(' ')}`);
    out.push('');
  }
  const sd = r.shutdown?.servers;
  if (sd) {
    out.push('== Shutdown: SIGTERM -> process exit ==');
    const rows = [];
    for (const [name, s] of Object.entries(sd)) {
      const x = /** @type {any} */ (s);
      rows.push([name, fmtMs(x.none?.ms), x.none?.code, fmtMs(x.idle?.ms), x.idle?.code, fmtMs(x.inflight?.ms), x.inflight?.code, x.inflight?.slowOutcome ?? 'n/a']);
    }
    out.push(formatTable(['server', 'nothing connected', 'exit', '8 idle keep-alive', 'exit', 'with /slow?ms=1000 in flight', 'exit', 'slow request'], rows));
    out.push('');
  }
  for (const m of modules) if (r[m.name] && m.report) out.push(...m.report(r[m.name], r), '');
  const targets = r.targets ?? evaluateTargets(r, modules);
  out.push('== Targets ==');
  out.push(formatTable(['target', 'value', 'threshold', 'result'], targets.map((t) => [t.label, t.value, t.threshold, t.status])));
  const failed = targets.filter((t) => t.status === 'FAIL');
  out.push(failed.length ? `MISSED ${failed.length} target(s): ${failed.map((t) => t.id).join(', ')}` : 'all evaluated targets met');
  return out.join('\n');
}

/** @param {number|null|undefined} x */
function fx(x) {
  return x == null ? 'n/a' : `${x.toFixed(2)}x`;
}
