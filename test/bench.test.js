// Pure tests of the bench's argument parsing and result summarising, run on a
// small recorded sample (bench/fixtures/sample.json). No network, no processes.
import test from 'ava';
import fs from 'node:fs';
import { parseArgs, UsageError, SCENARIOS, SERVERS } from '../bench/lib/args.js';
import {
  KINDS, CLIENTS, classifyError, percentileSorted, latencyStats, median, medianRun, ratio, countKinds, countByClient,
  overlapsAny, splitByWindows, reloadWindows, timeline, summarizeReloadRun, summarizeThroughputRuns, throughputRatios, pairedRatio, noiseFloor,
  evaluateTargets, formatTable, fmtMs, renderReport, clientLagLine, CLIENT_LAG_WARN_MS,
} from '../bench/lib/summary.js';
import { withClientLag } from '../bench/lib/clients.js';
import { renderTimelineSvg, niceTicks } from '../bench/lib/svg.js';
import { vsPm2, targets as fullloadTargets } from '../bench/scenarios/fullload.js';

const sample = JSON.parse(fs.readFileSync(new URL('../bench/fixtures/sample.json', import.meta.url), 'utf8'));
const rec = sample.reload.records;
const reloads = sample.reload.reloads;

// ---- args -------------------------------------------------------------------

test('defaults: full run', (t) => {
  const o = parseArgs([]);
  t.false(o.quick);
  t.is(o.reloads, 10);
  t.is(o.soakReloads, 200);
  t.is(o.duration, 4);
  t.is(o.runs, 8);
  t.is(o.rate, null);
  t.deepEqual(o.only, ['throughput', 'reload', 'soak', 'shutdown', 'fullload', 'balance', 'scale', 'tls', 'dropin']);
  t.deepEqual(o.servers, [...SERVERS]);
  t.is(o.json, null);
  t.is(o.selfCheck, 'yes');
});

test('--quick shortens everything, explicit flags still win', (t) => {
  const q = parseArgs(['--quick']);
  t.deepEqual([q.reloads, q.soakReloads, q.duration, q.runs], [3, 20, 2, 2]);
  const o = parseArgs(['--quick', '--reloads', '5', '--duration', '2.5', '--servers', 'baton,pm2,baton', '--only', 'reload,soak', '--json', 'out.json', '--rate', '1500']);
  t.is(o.reloads, 5);
  t.is(o.duration, 2.5);
  t.is(o.rate, 1500);
  t.deepEqual(o.servers, ['baton', 'pm2']);
  t.deepEqual(o.only, ['reload', 'soak']);
  t.is(o.json, 'out.json');
});

test('--self-check / --no-self-check / --help', (t) => {
  t.is(parseArgs(['--self-check']).selfCheck, 'only');
  t.is(parseArgs(['--no-self-check']).selfCheck, 'no');
  t.true(parseArgs(['--help']).help);
  t.true(parseArgs(['-h']).help);
  t.true(SCENARIOS.includes('selfcheck'));
});

test('bad arguments throw UsageError', (t) => {
  for (const argv of [['--bogus'], ['--reloads', 'x'], ['--reloads', '0'], ['--reloads', '1.5'], ['--duration', '0.1'],
    ['--servers', 'nginx'], ['--only', 'throughput,nap'], ['--only', ''], ['positional'], ['--self-check', '--no-self-check'], ['--json', ' ']]) {
    t.throws(() => parseArgs(argv), { instanceOf: UsageError }, argv.join(' '));
  }
});

// ---- primitives ---------------------------------------------------------------

test('nearest-rank percentiles, median, ratio', (t) => {
  const s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  t.is(percentileSorted(s, 50), 5);
  t.is(percentileSorted(s, 90), 9);
  t.is(percentileSorted(s, 99), 10);
  t.is(percentileSorted(s, 0), 1);
  t.is(percentileSorted([], 50), null);
  t.deepEqual(latencyStats([5, 1, 3]), { count: 3, p50: 3, p90: 5, p99: 5, max: 5, mean: 3 });
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 2, 3]), 2.5);
  t.is(median([]), null);
  t.is(ratio(1, 3), 0.333);
  t.is(ratio(1, 0), null);
  t.is(ratio(null, 2), null);
});

test('classifyError maps client errors to failure kinds', (t) => {
  t.is(classifyError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })), 'refused');
  t.is(classifyError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), 'reset');
  // undici: SocketError 'other side closed', sometimes wrapping the errno error in `cause`
  t.is(classifyError(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' })), 'reset');
  t.is(classifyError(Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } })), 'refused');
  t.is(classifyError(Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' })), 'timeout');
  t.is(classifyError(Object.assign(new Error('bench timeout'), { benchTimeout: true })), 'timeout');
  t.is(classifyError(new Error('something else')), 'other');
});

// ---- the recorded sample ------------------------------------------------------------

test('sample: failure counts overall and per client', (t) => {
  t.is(rec.t.length, 406);
  const all = countKinds(rec);
  t.is(all.total, 406);
  t.is(all.ok, 399);
  t.is(all.reset, 7);
  t.is(all.failed, 7);
  t.is(all.refused + all.timeout + all.non2xx + all.other, 0);
  const by = countByClient(rec);
  t.is(by.ka.total, 385);
  t.is(by.ka.failed, 7);
  t.is(by.nc.total, 21);
  t.is(by.nc.failed, 0);
  t.false('slow' in by, 'no /slow request made it into the subsample');
  t.is(by.all.total, 406);
  t.deepEqual([KINDS[2], CLIENTS[0]], ['reset', 'ka']);
});

test('sample: keep-alive latency percentiles', (t) => {
  const okKa = [];
  for (let i = 0; i < rec.t.length; i++) if (rec.client[i] === 0 && rec.kind[i] === 0) okKa.push(rec.lat[i]);
  const st = latencyStats(okKa);
  t.is(st.count, 378);
  t.is(st.p50, 2.27); // 2.265 rounded to 2 decimals
  t.is(st.p99, 30.13);
  t.is(st.max, 37.22);
});

test('sample: reload windows and the in/out split', (t) => {
  t.deepEqual(reloadWindows(reloads, 0), [[2004.4, 2785.1], [4811.7, 5556.1]]);
  t.deepEqual(reloadWindows(reloads, 500), [[2004.4, 3285.1], [4811.7, 6056.1]]);
  t.true(overlapsAny(2000, 2004.4, [[2004.4, 2785.1]]), 'touching counts as overlapping');
  t.false(overlapsAny(0, 2004.3, [[2004.4, 2785.1]]));

  const strict = splitByWindows(rec, reloadWindows(reloads, 0));
  t.is(strict.inside.count, 87);
  t.is(strict.outside.count, 291);
  t.is(strict.inside.p99, 10.79);
  t.is(strict.outside.p99, 32.35);
  t.is(strict.outside.max, 37.22);
  t.is(strict.p99Ratio, 0.334);

  const settled = splitByWindows(rec, reloadWindows(reloads, 500));
  t.is(settled.inside.count, 144);
  t.is(settled.outside.count, 234);
  t.is(settled.inside.max, 13.04);
});

test('sample: timeline bins (whole bins only)', (t) => {
  const tl = timeline(rec, { binMs: 1000, client: 'ka', endMs: sample.reload.endMs });
  t.is(tl.length, 6); // 6659.6 ms -> 6 whole 1 s bins, the partial 7th is dropped
  t.deepEqual(tl.map((b) => b.rps), [56, 58, 57, 59, 59, 57]);
  t.deepEqual(tl.map((b) => b.failed), [0, 0, 0, 0, 0, 7]); // the 7 resets all ended at ~5.08 s
  t.deepEqual(tl.map((b) => b.t), [0, 1, 2, 3, 4, 5]);
});

test('sample: summarizeReloadRun', (t) => {
  const s = summarizeReloadRun({ records: rec, reloads, endMs: sample.reload.endMs, binMs: 1000, settleMs: 500 });
  t.is(s.counts.all.failed, 7);
  t.is(s.reloadCount, 2);
  t.is(s.reloadsCompleted, 2);
  t.true(s.configOkAll);
  t.is(s.readyMs.max, 780.7); // 2785.1 - 2004.4
  t.is(s.readyMs.p50, 762.55); // median of 780.7 and 744.4
  t.is(s.latency.inside.count, 144);
  t.is(s.latencyStrict.inside.count, 87);
  t.is(s.timeline.length, 6);
});

test('sample: throughput medians and ratios', (t) => {
  const tp = Object.fromEntries(Object.entries(sample.throughput).map(([name, r]) =>
    [name, { keepAlive: summarizeThroughputRuns(r.keepAlive), newConn: summarizeThroughputRuns(r.newConn) }]));
  t.is(tp.baton.keepAlive.rps, 32200); // runs 28728, 32280, 32200
  t.is(tp.baton.keepAlive.p99, 6); // latencies come from the median run itself
  t.deepEqual(tp.pm2.keepAlive.allRps, [39600, 37552, 23848]);
  t.is(tp.pm2.keepAlive.rps, 37552);
  t.is(tp.cluster.keepAlive.rps, 41296);
  t.is(tp.bare.newConn.rps, 7272);
  const ra = throughputRatios(tp);
  t.is(ra.keepAlive.vsCluster, 0.78); // 32200 / 41296 = 0.7797
  t.is(ra.keepAlive.vsPm2, 0.857); // 32200 / 37552 = 0.8575
  t.is(ra.newConn.vsPm2, 1.009); // 3692 / 3659.7
  t.is(medianRun([], (x) => x), null);
});

test('targets: PASS/FAIL/SKIP from a results object', (t) => {
  const tp = Object.fromEntries(Object.entries(sample.throughput).map(([name, r]) => [name, { keepAlive: summarizeThroughputRuns(r.keepAlive) }]));
  const pm2Run = summarizeReloadRun({ records: rec, reloads, endMs: sample.reload.endMs, settleMs: 500 });
  const results = {
    selfCheck: { exact: true },
    throughput: { servers: tp },
    reload: { servers: { baton: pm2Run } }, // the PM2 sample posing as baton: 7 failures
    soak: { baton: { counts: { all: { failed: 0 } }, readyMs: { max: 1200 }, rss: { growthKb: 1024 }, fds: { before: 22, after: 23 }, workersAtEnd: 2 } },
    shutdown: { servers: { baton: { idle: { ms: 40, code: 0 } } } },
  };
  const byId = Object.fromEntries(evaluateTargets(results).map((r) => [r.id, r]));
  t.is(byId.selfcheck.status, 'PASS');
  t.is(byId['reload-failures'].status, 'FAIL');
  t.is(byId['reload-failures'].value, '7');
  t.is(byId['soak-failures'].status, 'PASS');
  t.is(byId['ka-vs-cluster'].status, 'FAIL');
  t.is(byId['ka-vs-cluster'].value, '0.780x');
  t.is(byId['ka-vs-pm2'].status, 'FAIL');
  t.is(byId['p99-window'].status, 'PASS'); // 13.04 ms inside vs 32.35 ms outside (cold start)
  t.is(byId['reload-time'].status, 'FAIL'); // soak max 1200 ms > 1000 ms
  t.is(byId['reload-time'].value, '1200 ms');
  t.is(byId['reload-config'].status, 'PASS');
  t.is(byId['soak-rss'].status, 'PASS');
  t.is(byId['soak-fd'].status, 'FAIL');
  t.is(byId['soak-workers'].status, 'PASS');
  t.is(byId['shutdown-idle'].status, 'PASS');
  t.is(byId['shutdown-none'].status, 'SKIP', 'no run with nothing connected in this sample');
  t.is(byId['nc-vs-cluster'].status, 'SKIP', 'no new-connection rounds in this sample');
  const slow = evaluateTargets({ shutdown: { servers: { baton: { idle: { ms: 5600, code: 0 }, none: { ms: 30, code: 0 } } } } });
  t.is(slow.find((x) => x.id === 'shutdown-idle')?.status, 'FAIL');
  t.is(slow.find((x) => x.id === 'shutdown-none')?.status, 'PASS');
  const none = evaluateTargets({});
  t.true(none.every((r) => r.status === 'SKIP'));
});

// ---- formatting -------------------------------------------------------------------

test('formatTable aligns text left and numbers right', (t) => {
  const out = formatTable(['server', 'req/s', 'p99'], [['baton', '32,200', '6.00 ms'], ['pm2', '37,552', '12.5 ms']]);
  t.is(out, [
    'server  req/s   p99',
    '------  ------  -------',
    'baton   32,200  6.00 ms',
    'pm2     37,552  12.5 ms',
  ].join('\n'));
  t.is(fmtMs(1234.5), '1235 ms');
  t.is(fmtMs(null), 'n/a');
});

test('renderReport and the SVG include every server and a marker per reload', (t) => {
  const run = summarizeReloadRun({ records: rec, reloads, endMs: sample.reload.endMs, binMs: 500, settleMs: 500 });
  const text = renderReport({ reload: { servers: { pm2: { ...run, rate: 4000 } } } });
  t.regex(text, /Reloads under load/);
  t.regex(text, /pm2\s+2\/2\s+4,000\s+406\s+7\s+0\/7\/0\/0\/0/);
  t.regex(text, /== Targets ==/);
  const svg = renderTimelineSvg({ title: 'x <&>', series: [{ name: 'pm2', color: '#d1242f', timeline: run.timeline, windows: run.windows }] });
  t.true(svg.startsWith('<svg'));
  t.regex(svg, /x &lt;&amp;&gt;/);
  t.is((svg.match(/<path /g) ?? []).length, 2, 'one marker per reload');
  t.deepEqual(niceTicks(23), [0, 5, 10, 15, 20, 25]);
});

test('sample: paired per-round ratios', (t) => {
  const raw = Object.fromEntries(Object.entries(sample.throughput).map(([n, r]) => [n, { ka: r.keepAlive, nc: r.newConn }]));
  // baton/cluster per round: 28728/38640 = 0.7435, 32280/41296 = 0.7817, 32200/42960 = 0.7495 -> median 0.7495
  t.is(pairedRatio(raw.baton.ka, raw.cluster.ka), 0.75);
  // baton/pm2 per round: 0.7255, 0.8596, 1.3502 -> median 0.8596
  t.is(pairedRatio(raw.baton.ka, raw.pm2.ka), 0.86);
  t.is(pairedRatio(undefined, raw.pm2.ka), null);
  const tp = Object.fromEntries(Object.entries(sample.throughput).map(([n, r]) => [n, { keepAlive: summarizeThroughputRuns(r.keepAlive) }]));
  const rows = Object.fromEntries(evaluateTargets({ throughput: { servers: tp, raw } }).map((r) => [r.id, r]));
  t.is(rows['ka-vs-cluster'].value, '0.750x', 'targets use the paired ratio when rounds are available');
  t.is(rows['ka-vs-pm2'].value, '0.860x');
});

test('sample: the load ramp-up is left out of the latency split', (t) => {
  // Without a ramp the cold first second dominates "outside" (p99 32.35 ms);
  // leaving out requests started before 1000 ms: 178 outside, p99 14.43, max 22.97.
  const s = summarizeReloadRun({ records: rec, reloads, endMs: sample.reload.endMs, settleMs: 500, rampMs: 1000 });
  t.is(s.rampMs, 1000);
  t.is(s.latency.inside.count, 144);
  t.is(s.latency.outside.count, 178);
  t.is(s.latency.outside.p99, 14.43);
  t.is(s.latency.outside.max, 22.97);
  t.is(s.latency.p99Ratio, 0.748); // 10.79 / 14.43 = 0.74775
  // per-1 s-bin p99s are 37.22, 3.80, 13.04, 6.17, 8.05, 8.42: the worst after the ramp is 13.04
  const byBin = summarizeReloadRun({ records: rec, reloads, endMs: sample.reload.endMs, binMs: 1000, rampMs: 1000 });
  t.deepEqual(byBin.timeline.map((b) => b.p99), [37.22, 3.8, 13.04, 6.17, 8.05, 8.42]);
  t.is(byBin.worstBinP99, 13.04);
  t.is(summarizeReloadRun({ records: rec, reloads, endMs: sample.reload.endMs, binMs: 1000 }).worstBinP99, 37.22);
  t.is(s.counts.all.failed, 7, 'failures are still counted over the whole run');
});

test('sample: the A/A noise floor and its report line', (t) => {
  const raw = Object.fromEntries(Object.entries(sample.throughput).map(([n, r]) => [n, { ka: r.keepAlive, nc: r.newConn }]));
  // pm2 stands in for the second cluster (any two servers measured in the same rounds).
  const nf = noiseFloor(raw.pm2, raw.cluster);
  t.is(nf.keepAlive.paired, pairedRatio(raw.pm2.ka, raw.cluster.ka));
  t.deepEqual(nf.keepAlive.rounds, raw.pm2.ka.map((x, i) => Math.round((x.rps / raw.cluster.ka[i].rps) * 1000) / 1000));
  const tp = Object.fromEntries(Object.entries(sample.throughput).map(([n, r]) => [n, { keepAlive: summarizeThroughputRuns(r.keepAlive), newConn: summarizeThroughputRuns(r.newConn) }]));
  const text = renderReport({ throughput: { runs: 3, durationS: 4, kaConnections: 64, ncLoops: 16, servers: tp, raw, ratios: throughputRatios(tp, raw), noiseFloor: nf } });
  const lo = Math.min(...nf.keepAlive.rounds).toFixed(2);
  const hi = Math.max(...nf.keepAlive.rounds).toFixed(2);
  t.true(text.includes(`noise floor: a second node:cluster, same rounds, against the first (median of per-round ratios): keep-alive ${nf.keepAlive.paired.toFixed(2)}x (rounds ${lo}x-${hi}x)`));
  t.false(renderReport({ throughput: { runs: 3, durationS: 4, kaConnections: 64, ncLoops: 16, servers: tp, raw, ratios: throughputRatios(tp, raw) } }).includes('noise floor'));
});

test('full load: the answers/s ratio to PM2 over two passes in reverse order', (t) => {
  const srv = (/** @type {number} */ okPerS, failed = 0) => ({ throughput: { okPerS }, counts: { all: { failed } }, latency: { inside: { p99: 2 }, outside: { p99: 1 } }, configOkAll: true });
  const first = { baton: srv(12000), pm2: srv(10000) };
  const second = { pm2: srv(8000), baton: srv(12000, 1) };
  // 1.2 and 1.5: a drift that slowed PM2's second run; geometric mean sqrt(1.8) = 1.342
  t.deepEqual(vsPm2(first, second), { firstPass: 1.2, secondPass: 1.5, both: 1.342 });
  t.deepEqual(vsPm2(first, {}), { firstPass: 1.2, secondPass: null, both: 1.2 });
  /** @type {Record<string, any>} */
  const rows = {};
  fullloadTargets({ servers: first, secondPass: second, vsPm2: vsPm2(first, second) }, (id, label, value, threshold, pass) => { rows[id] = { value, pass }; });
  t.deepEqual(rows['fullload-vs-pm2'], { value: '1.34x (passes 1.20x, 1.50x)', pass: true });
  t.deepEqual(rows['fullload-failures'], { value: 1, pass: false }, 'a failure in the second pass counts');
  fullloadTargets({ servers: first }, (id, label, value, threshold, pass) => { rows[id] = { value, pass }; });
  t.deepEqual(rows['fullload-vs-pm2'], { value: '1.20x', pass: true }, 'results without a second pass read as before');
});

// ---- the client's own event-loop delay ---------------------------------------

test('withClientLag sees the load clients\' loop held up by a synchronous call, and the report warns of it', async (t) => {
  const { result, clientLag } = await withClientLag(async () => {
    await new Promise((r) => setTimeout(r, 30));
    const until = performance.now() + 150;
    while (performance.now() < until) { /* what a synchronous write on a slow disk does to the clients */ }
    await new Promise((r) => setTimeout(r, 30));
    return 'done';
  });
  t.is(result, 'done');
  t.true(clientLag.maxMs >= 120, `max ${clientLag.maxMs} ms`);
  const line = clientLagLine({ baton: { clientLag }, pm2: { clientLag: { maxMs: 3, p99Ms: 1 } } });
  t.regex(String(line), /baton max .*; pm2 max 3\.00 ms/);
  t.regex(String(line), /WARNING: the bench's client was held up/);
  t.false(String(clientLagLine({ baton: { clientLag: { maxMs: CLIENT_LAG_WARN_MS - 1, p99Ms: 1 } } })).includes('WARNING'));
  t.is(clientLagLine({ baton: {} }), null);
});
