// @ts-check
// TLS and h2: baton against a bare node:cluster with the same certificate and
// handler (bench/apps/cluster-tls.js), and lossless reloads under TLS load.
// See bench/README.md, "TLS and h2".
//
// 1. New TLS handshakes/s: loops of `https.get` with `agent: false` (a fresh
//    Agent, hence no session cache) and no `session` option, one request per
//    connection: every connection is a full handshake (checked:
//    `isSessionReused()` is counted and reported). Not `h2load --h1` with
//    `Connection: close`: h2load reconnects then, but resumes its TLS session
//    (measured: 492 of 500 connections resumed), and h2load has no
//    one-request-per-connection mode in a timed (-D) run.
// 2. TLS keep-alive req/s: `h2load --h1 -c 64 -D s` (autocannon over https
//    without h2load).
// 3. h2 req/s: `h2load -c 10 -m 10 -D s`, baton with HTTP2 on against
//    `http2.createSecureServer` (allowHTTP1: the same ALPN offer).
// 4. Reloads under TLS load (baton only): h1 new-connection loops plus an h1
//    keep-alive client (undici), then, separately, h2load h2 runs.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { Recorder, createStopper, runAutocannon } from '../lib/clients.js';
import { HOST, makeTempDir, reloadBatonTimed } from '../lib/servers.js';
import {
  classifyError, countByClient, countKinds, fmtInt, fmtMs, formatTable, latencyStats, median, okLatencies, pairedRatio, round, summarizeThroughputRuns,
} from '../lib/summary.js';

export const name = 'tls';

const TICK_MS = 10; // USER_HZ = 100 on Linux
const SERVERS = /** @type {const} */ (['baton', 'cluster']);
const MODES = /** @type {const} */ (['keepAlive', 'h2', 'handshake']);
const MODE_LABELS = {
  keepAlive: 'TLS keep-alive (h1, 64 conns)',
  h2: 'h2 (10 clients x 10 streams)',
  handshake: 'new TLS handshakes (8 loops)',
};

/** @param {any} O */
function params(O) {
  return {
    kaConnections: 64,
    h2Clients: 10,
    h2Streams: 10,
    hsLoops: 8,
    warmupS: O.quick ? 1 : 2,
    reloads: O.quick ? 2 : 3,
    // Reload runs: enough load to have requests and streams in flight at every
    // moment of a drain, not so much that 2 cores only measure queueing.
    reloadNcLoops: 4,
    reloadNcPauseMs: 5,
    reloadKaConns: 8,
    reloadKaPauseMs: 2,
    reloadH2Clients: 4,
    reloadH2Streams: 8, // 32 streams in flight
    leadInMs: 1000,
    gapMs: 1000,
    // Requests per h2 reload run: some 30 s at full speed on 2 cores, far
    // more than one reload takes (see h2Reloads).
    reloadH2Requests: 500_000,
    requestTimeoutMs: 10_000,
  };
}

// ---- certificate -----------------------------------------------------------
/**
 * A throwaway self-signed P-256 certificate for 127.0.0.1 in a temp dir of
 * the run (removed at exit; never committed). 30 days: baton warns about a
 * certificate expiring within 7.
 */
function makeCert() {
  const dir = makeTempDir('tls');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '30', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl could not make a certificate (exit ${r.status}): ${r.error ?? r.stderr}`);
  return { dir, cert, key };
}

// ---- clients ---------------------------------------------------------------
/**
 * One GET on a brand-new TLS connection: `agent: false` gives a fresh Agent,
 * whose session cache is empty, so the handshake is a full one.
 * @param {{ port: number, path?: string, timeoutMs: number }} o
 * @returns {Promise<{ status: number, body: string, reused: boolean, protocol: string|null }>}
 */
function tlsRequest(o) {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: HOST, port: o.port, path: o.path ?? '/', agent: false, rejectUnauthorized: false }, (res) => {
      const sock = /** @type {import('node:tls').TLSSocket} */ (res.socket);
      const reused = sock.isSessionReused();
      const protocol = sock.getProtocol();
      const chunks = /** @type {Buffer[]} */ ([]);
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), reused, protocol }); });
      res.on('aborted', () => { clearTimeout(timer); reject(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })); });
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('bench timeout'), { benchTimeout: true })), o.timeoutMs);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/**
 * `loops` concurrent loops of one request per new TLS connection, each
 * recorded exactly once (client 'nc').
 * @param {{ port: number, loops: number, rec: Recorder, stop: { stopped: boolean }, timeoutMs: number, pauseMs?: number,
 *           sleep: (ms: number) => Promise<void> }} o
 */
async function tlsNewConnLoops(o) {
  const st = { reused: 0, protocols: /** @type {Record<string, number>} */ ({}) };
  const loop = async () => {
    while (!o.stop.stopped) {
      const s = performance.now();
      try {
        const r = await tlsRequest({ port: o.port, timeoutMs: o.timeoutMs });
        o.rec.add(s, performance.now(), r.status >= 200 && r.status < 300 ? 'ok' : 'non2xx', 'nc');
        if (r.reused) st.reused++;
        const p = r.protocol ?? 'none';
        st.protocols[p] = (st.protocols[p] ?? 0) + 1;
      } catch (err) {
        o.rec.add(s, performance.now(), classifyError(err), 'nc', err);
      }
      if (o.pauseMs) await o.sleep(o.pauseMs);
    }
  };
  await Promise.all(Array.from({ length: o.loops }, loop));
  return st;
}

/**
 * Closed-loop h1 keep-alive client over TLS (undici: it honours
 * `Connection: close` and never retries, so every request is counted once).
 * @param {{ port: number, connections: number, rec: Recorder, stop: { stopped: boolean }, timeoutMs: number, pauseMs: number,
 *           sleep: (ms: number) => Promise<void> }} o
 */
async function tlsKeepAliveLoops(o) {
  const pool = new Pool(`https://${HOST}:${o.port}`, { connections: o.connections, pipelining: 1, connect: { rejectUnauthorized: false } });
  const loop = async () => {
    while (!o.stop.stopped) {
      const s = performance.now();
      const ac = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => { timedOut = true; ac.abort(); }, o.timeoutMs);
      try {
        const { statusCode, body } = await pool.request({ path: '/', method: 'GET', signal: ac.signal });
        await body.text();
        o.rec.add(s, performance.now(), statusCode >= 200 && statusCode < 300 ? 'ok' : 'non2xx', 'ka');
      } catch (err) {
        o.rec.add(s, performance.now(), timedOut ? 'timeout' : classifyError(err), 'ka', timedOut ? { code: 'bench-timeout' } : err);
      } finally { clearTimeout(timer); }
      if (o.pauseMs) await o.sleep(o.pauseMs);
    }
  };
  await Promise.all(Array.from({ length: o.connections }, loop));
  await pool.close().catch(() => {});
}

// ---- h2load ------------------------------------------------------------------
function h2loadVersion() {
  const r = spawnSync('h2load', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** CPU ticks of this process's waited-for children (cutime + cstime): h2load's CPU once it has exited. */
function childrenTicks() {
  const s = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[13]) + Number(f[14]);
}

/** @param {string} v @param {string} unit */
function toMs(v, unit) {
  const x = Number(v);
  return unit === 'us' ? x / 1000 : unit === 'ms' ? x : unit === 's' ? x * 1000 : NaN;
}

/**
 * Parse h2load's summary. `failed` includes `errored`, which includes
 * `timeout` (h2load(1), OUTPUT).
 * @param {string} out
 */
export function parseH2load(out) {
  const fin = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/.exec(out);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const st = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const lat = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  const proto = /Application protocol: (\S+)/.exec(out);
  if (!fin || !req) return null;
  const n = req.slice(1).map(Number);
  return {
    seconds: toMs(fin[1], fin[2]) / 1000,
    reqPerS: Number(fin[3]),
    total: n[0], started: n[1], done: n[2], succeeded: n[3], failed: n[4], errored: n[5], timeout: n[6],
    status: st ? { '2xx': Number(st[1]), '3xx': Number(st[2]), '4xx': Number(st[3]), '5xx': Number(st[4]) } : null,
    latency: lat ? { min: round(toMs(lat[1], lat[2])), max: round(toMs(lat[3], lat[4])), mean: round(toMs(lat[5], lat[6])) } : null,
    protocol: proto ? proto[1] : null,
  };
}

/**
 * h2load's --log-file: one line per closed stream, `start µs since the
 * epoch, status (-1: failed), µs`. The start is stamped when the HEADERS
 * frame goes out (before_frame_send_callback), so a failed stream with start
 * 0 never left h2load: a request it queued after the server's GOAWAY, which
 * its nghttp2 then refuses locally (RFC 9113 §8.1.4/§6.8: never processed,
 * safe to retry; h2load does not retry and counts it as errored).
 * @param {string} text
 */
export function parseH2loadLog(text) {
  const c = { lines: 0, ok: 0, non2xx: 0, sentFailed: 0, unsent: 0 };
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [start, status] = line.split('\t');
    c.lines++;
    const code = Number(status);
    if (code === -1) { if (Number(start) === 0) c.unsent++; else c.sentFailed++; } else if (code >= 200 && code < 300) c.ok++; else c.non2xx++;
  }
  return c;
}

/**
 * Run h2load to completion (killed, by its pid, past `timeoutMs`), with the
 * CPU it used. `connected` resolves when its first session has negotiated
 * TLS (h2load prints that at once, unbuffered).
 * @param {string[]} args @param {number} timeoutMs
 */
function startH2load(args, timeoutMs) {
  /** @type {(v: boolean) => void} */
  let onConnected = () => {};
  const connected = new Promise((resolve) => { onConnected = resolve; });
  /** @type {Promise<{ code: number|null, out: string, parsed: ReturnType<typeof parseH2load>, cpuTicks: number }>} */
  const done = new Promise((resolve, reject) => {
    const c0 = childrenTicks();
    const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; if (out.includes('Application protocol:')) onConnected(true); });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => { try { process.kill(/** @type {number} */ (child.pid), 'SIGKILL'); } catch { /* gone */ } }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); onConnected(false); reject(e); });
    child.on('exit', (code) => {
      clearTimeout(timer);
      onConnected(false);
      resolve({ code, out, parsed: parseH2load(out), cpuTicks: childrenTicks() - c0 });
    });
  });
  return { connected, done };
}

/** @param {string[]} args @param {number} timeoutMs */
const runH2load = (args, timeoutMs) => startH2load(args, timeoutMs).done;

/** @param {number} s */
const dur = (s) => `${Math.max(1, Math.round(s * 1000))}ms`;

// ---- measurements -------------------------------------------------------------
/**
 * `f` under ctx.withCpu, with h2load's own CPU taken out of the "noise" (it
 * is ours, but not in a process group the bench started).
 * @param {any} ctx @param {number} pgid @param {() => Promise<any>} f
 */
async function measured(ctx, pgid, f) {
  const t0 = performance.now();
  const r = await ctx.withCpu(pgid, f);
  const capacityTicks = ((performance.now() - t0) / TICK_MS) * os.cpus().length;
  if (r.clientTicks && r.foreignCpuPct != null) r.foreignCpuPct = round(Math.max(0, r.foreignCpuPct - (r.clientTicks / capacityTicks) * 100), 1);
  delete r.clientTicks;
  return r;
}

/** @param {number} port @param {number} durationS @param {any} T @param {boolean} h2 */
async function h2loadRun(port, durationS, T, h2) {
  const args = h2
    ? ['-c', String(T.h2Clients), '-m', String(T.h2Streams), '-D', dur(durationS), `https://${HOST}:${port}/`]
    : ['--h1', '-c', String(T.kaConnections), '-D', dur(durationS), `https://${HOST}:${port}/`];
  const r = await runH2load(args, durationS * 1000 + 20_000);
  const p = r.parsed;
  if (!p) throw new Error(`h2load ${args.join(' ')}: exit ${r.code}, no summary:\n${r.out.slice(-1500)}`);
  const want = h2 ? 'h2' : 'http/1.1';
  if (p.protocol !== want) throw new Error(`h2load ${args.join(' ')}: negotiated ${p.protocol}, not ${want}`);
  return {
    rps: round(p.succeeded / p.seconds, 1), mean: p.latency?.mean ?? null, max: p.latency?.max ?? null,
    errors: p.failed, total: p.done, unfinished: p.started - p.done, protocol: p.protocol, clientTicks: r.cpuTicks, tool: 'h2load',
  };
}

/** @param {number} port @param {number} durationS @param {any} T */
async function autocannonRun(port, durationS, T) {
  const r = await runAutocannon({ url: `https://${HOST}:${port}/`, connections: T.kaConnections, duration: durationS });
  return { rps: r.requests.average, mean: r.latency.mean, max: r.latency.max, errors: r.errors + r.timeouts + r.non2xx, total: r.requests.total, tool: 'autocannon' };
}

/** @param {any} ctx @param {number} port @param {number} durationS @param {any} T */
async function handshakeRun(ctx, port, durationS, T) {
  const rec = new Recorder();
  const stop = createStopper();
  const t0 = performance.now();
  const timer = setTimeout(() => stop.stop(), durationS * 1000);
  const st = await tlsNewConnLoops({ port, loops: T.hsLoops, rec, stop, timeoutMs: T.requestTimeoutMs, sleep: ctx.sleep });
  clearTimeout(timer);
  const elapsed = (performance.now() - t0) / 1000;
  const c = countKinds(rec);
  const ls = latencyStats(okLatencies(rec));
  return {
    rps: round(c.ok / elapsed, 1), mean: ls.mean, p50: ls.p50, p99: ls.p99, max: ls.max,
    errors: c.failed, total: c.total, counts: c, resumed: st.reused, tlsVersions: st.protocols, errorCodes: rec.errors,
  };
}

/**
 * One measurement of `mode` against server `s`.
 * @param {any} ctx @param {any} s @param {string} mode @param {any} T @param {boolean} haveH2load
 */
function measure(ctx, s, mode, T, haveH2load) {
  return measured(ctx, s.pid, () => {
    if (mode === 'handshake') return handshakeRun(ctx, s.port, ctx.O.duration, T);
    if (mode === 'h2') return h2loadRun(s.port, ctx.O.duration, T, true);
    return haveH2load ? h2loadRun(s.port, ctx.O.duration, T, false) : autocannonRun(s.port, ctx.O.duration, T);
  });
}

/**
 * Median of per-round ratios of a field (rounds ran back to back).
 * @param {any[]} a @param {any[]} b @param {string} key
 */
function pairedField(a, b, key) {
  const r = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i][key] != null && b[i][key] > 0) r.push(a[i][key] / b[i][key]);
  return r.length ? round(median(r), 3) : null;
}

// ---- reloads ------------------------------------------------------------------
/** A timed reload (lib/servers.js), with its message. @param {any} s @param {string} message @param {number} timeoutMs */
async function reloadBaton(s, message, timeoutMs) {
  return { message, ...(await reloadBatonTimed(s, message, 0, { readyTimeoutMs: timeoutMs, goneTimeoutMs: timeoutMs })) };
}

/**
 * Fresh TLS connections after a reload must all answer the new MESSAGE.
 * @param {number} port @param {string} message @param {any} T
 */
async function configProbe(port, message, T) {
  const bodies = new Set();
  let errors = 0;
  for (let i = 0; i < 4; i++) {
    try { bodies.add((await tlsRequest({ port, timeoutMs: T.requestTimeoutMs })).body.trim()); } catch { errors++; }
  }
  return errors === 0 && bodies.size === 1 && bodies.has(message);
}

/** @param {string} tag @param {number} i */
const reloadMessage = (tag, i) => `tls ${tag} reload ${i} ${Math.random().toString(36).slice(2, 8)}`;

/**
 * (a) h1 over TLS: new-connection loops and a keep-alive client, all through
 * every reload.
 * @param {any} ctx @param {any} s @param {any} T
 */
async function tlsReloads(ctx, s, T) {
  const rec = new Recorder();
  const stop = createStopper();
  const clients = Promise.all([
    tlsNewConnLoops({ port: s.port, loops: T.reloadNcLoops, pauseMs: T.reloadNcPauseMs, rec, stop, timeoutMs: T.requestTimeoutMs, sleep: ctx.sleep }),
    tlsKeepAliveLoops({ port: s.port, connections: T.reloadKaConns, pauseMs: T.reloadKaPauseMs, rec, stop, timeoutMs: T.requestTimeoutMs, sleep: ctx.sleep }),
  ]);
  /** @type {any[]} */
  const reloads = [];
  try {
    await ctx.sleep(T.leadInMs); // load running before the first reload
    for (let i = 1; i <= T.reloads; i++) {
      const r = await reloadBaton(s, reloadMessage('h1', i), ctx.P.reloadTimeoutMs);
      r.configOk = r.outcome === 'complete' && await configProbe(s.port, r.message, T);
      reloads.push(r);
      if (r.outcome !== 'complete' || !r.configOk) ctx.say(`  tls reload ${i}: ${r.outcome}${r.configOk ? '' : ', new MESSAGE not on every fresh connection'} ${r.reason ?? r.error ?? ''}`);
      await ctx.sleep(T.gapMs);
    }
  } finally {
    stop.stop();
    await clients;
  }
  const [nc] = await clients;
  return { reloads, counts: countByClient(rec), resumed: nc.reused, errorCodes: rec.errors };
}

/**
 * (b) h2: one h2load run per reload. h2load opens no new connection after a
 * GOAWAY (its clients just stop), so each reload gets a fresh run whose
 * sessions are all on the old generation, 32 streams in flight when its
 * drain starts. A request count (-n) rather than a duration: h2load then
 * exits by itself once the drain has closed its sessions, and a stream still
 * open at the end is a real loss, not one cut by the clock. The count is far
 * more than it can send before the drain (a run that used them all saw no
 * GOAWAY, and is an error).
 * @param {any} ctx @param {any} s @param {any} T @param {string} dir
 */
async function h2Reloads(ctx, s, T, dir) {
  /** @type {any[]} */
  const reloads = [];
  for (let i = 1; i <= T.reloads; i++) {
    const logFile = path.join(dir, `h2-reload-${i}.log`);
    const args = ['-c', String(T.reloadH2Clients), '-m', String(T.reloadH2Streams), '-n', String(T.reloadH2Requests), `--log-file=${logFile}`, `https://${HOST}:${s.port}/`];
    const h2 = startH2load(args, T.leadInMs + ctx.P.reloadTimeoutMs * 2 + 20_000);
    /** @type {any} */
    let r;
    if (!(await h2.connected)) r = { outcome: 'not run', error: 'h2load did not connect' };
    else {
      await ctx.sleep(T.leadInMs); // load running before the reload
      r = await reloadBaton(s, reloadMessage('h2', i), ctx.P.reloadTimeoutMs);
    }
    const h = await h2.done;
    if (r.outcome === 'complete') r.configOk = await configProbe(s.port, r.message, T);
    const p = h.parsed;
    const log = fs.existsSync(logFile) ? parseH2loadLog(fs.readFileSync(logFile, 'utf8')) : null;
    fs.rmSync(logFile, { force: true });
    if (!p || !log) {
      r.error ??= `h2load: exit ${h.code}, ${p ? 'no log file' : 'no summary'}: ${h.out.slice(-800)}`;
      r.failed = null;
    } else {
      // Sent and not answered 2xx, or started and never done: failures.
      // Queued and never sent (see parseH2loadLog), and the count h2load
      // never started once the GOAWAY came: not requests the server lost.
      const unfinished = p.started - p.done;
      r.h2load = { ...p, latency: undefined };
      r.log = log;
      r.unfinished = unfinished;
      r.failed = log.sentFailed + log.non2xx + unfinished;
      r.answered = log.ok;
      if (p.protocol !== 'h2') r.error ??= `h2load negotiated ${p.protocol}, not h2`;
      else if (p.started === p.total) r.error ??= `h2load sent all ${p.total} requests without a GOAWAY: its sessions were not drained by the reload`;
    }
    reloads.push(r);
    if (r.outcome !== 'complete' || !r.configOk || r.failed !== 0 || r.error) {
      ctx.say(`  h2 reload ${i}: ${r.outcome}, ${r.failed ?? '?'} failed${r.configOk ? '' : ', new MESSAGE not on every fresh connection'} ${r.reason ?? r.error ?? ''}`);
    }
    await ctx.sleep(T.gapMs);
  }
  const sum = (/** @type {(r: any) => number|null|undefined} */ f) => reloads.reduce((a, r) => (a == null || f(r) == null ? null : a + /** @type {number} */ (f(r))), /** @type {number|null} */ (0));
  const errors = reloads.filter((r) => r.error).map((r) => r.error);
  return {
    reloads,
    streams: T.reloadH2Clients * T.reloadH2Streams,
    answered: sum((r) => r.answered), failed: sum((r) => r.failed), unsent: sum((r) => r.log?.unsent),
    h2loadErrored: sum((r) => r.h2load?.errored), notStarted: sum((r) => (r.h2load ? r.h2load.total - r.h2load.started : null)),
    ...(errors.length ? { errors } : {}),
  };
}

// ---- the scenario ----------------------------------------------------------------
/** @param {any} ctx */
export async function run(ctx) {
  const { O, say } = ctx;
  const T = params(O);
  const h2load = h2loadVersion();
  const { dir, cert, key } = makeCert();
  const tlsVars = { TLS_CERT_FILE: cert, TLS_KEY_FILE: key };
  /** @type {any} */
  const out = { params: T, runs: O.runs, durationS: O.duration, certificate: 'self-signed, EC P-256 (openssl)', h2load, modes: {}, speed: [] };
  if (!h2load) say('tls: h2load not installed: the h2 measurements and h2 reloads are skipped, TLS keep-alive uses autocannon');

  // Servers, all up front: h1 pair (baton HTTP2 off vs https.createServer),
  // h2 pair (baton HTTP2 on vs http2.createSecureServer).
  /** @type {Record<string, Record<string, any>>} */
  const srv = { h1: {}, h2: {} };
  const specs = [
    ['h1', 'baton', () => ctx.start('baton', { vars: { ...tlsVars } })],
    ['h1', 'cluster', () => ctx.start('cluster-tls', { vars: { ...tlsVars, PROTO: 'https' } })],
    ...(h2load ? [
      ['h2', 'baton', () => ctx.start('baton', { vars: { ...tlsVars, HTTP2: 'true' } })],
      ['h2', 'cluster', () => ctx.start('cluster-tls', { vars: { ...tlsVars, PROTO: 'h2' } })],
    ] : []),
  ];
  try {
    for (const [pair, who, startIt] of /** @type {Array<[string, string, () => Promise<any>]>} */ (specs)) {
      say(`tls: starting ${who} (${pair === 'h1' ? 'TLS, h1' : 'TLS, h2 + h1'})`);
      try { srv[pair][who] = await startIt(); } catch (err) { ctx.recordError(`tls: start ${who} ${pair}`, err); }
    }
    const haveAll = (/** @type {string} */ pair) => SERVERS.every((n) => srv[pair][n]);

    // Warm-up (JIT, TLS contexts) with the keep-alive kind of each pair.
    for (const pair of /** @type {const} */ (['h1', 'h2'])) {
      if (!haveAll(pair)) continue;
      for (const n of SERVERS) {
        const s = srv[pair][n];
        if (pair === 'h2') await h2loadRun(s.port, T.warmupS, T, true);
        else if (h2load) await h2loadRun(s.port, T.warmupS, T, false);
        else await autocannonRun(s.port, T.warmupS, T);
      }
    }

    // Keep-alive kinds first, new connections last (see bench/README.md:
    // V8's idle-time memory reducer after new-connection traffic).
    const order = (/** @type {number} */ i) => (i % 2 === 0 ? SERVERS : [...SERVERS].reverse());
    for (const mode of MODES) {
      const pair = mode === 'h2' ? 'h2' : 'h1';
      if (mode === 'h2' && !h2load) { out.modes.h2 = { skipped: 'h2load not installed' }; continue; }
      if (!haveAll(pair)) { out.modes[mode] = { error: 'a server did not start' }; continue; }
      /** @type {Record<string, any[]>} */
      const raw = { baton: [], cluster: [] };
      try {
        if (mode === 'handshake') {
          // Handshake code paths warmed, equally for both.
          for (const n of SERVERS) await handshakeRun(ctx, srv.h1[n].port, Math.min(1, T.warmupS), T);
        }
        for (let i = 0; i < O.runs; i++) {
          out.speed.push(ctx.speedProbe());
          say(`tls: ${MODE_LABELS[mode]} round ${i + 1}/${O.runs} (${order(i).join(', ')})`);
          for (const n of order(i)) raw[n].push(await measure(ctx, srv[pair][n], mode, T, Boolean(h2load)));
        }
        out.modes[mode] = {
          tool: mode === 'handshake' ? 'https.get, agent:false' : mode === 'h2' || h2load ? 'h2load' : 'autocannon',
          servers: Object.fromEntries(SERVERS.map((n) => [n, summarizeThroughputRuns(raw[n])])),
          ratio: pairedRatio(raw.baton, raw.cluster),
          cpuRatio: pairedField(raw.baton, raw.cluster, 'serverCpuUsPerReq'),
          raw,
        };
      } catch (err) {
        ctx.recordError(`tls ${mode}`, err);
        out.modes[mode] = { error: String(err).split('\n')[0], raw };
      }
    }

    // Reloads under TLS load, baton only.
    out.reloads = {};
    if (srv.h1.baton) {
      say(`tls: ${T.reloads} reloads under h1 TLS load (new connections + keep-alive)`);
      try { out.reloads.tls = await tlsReloads(ctx, srv.h1.baton, T); } catch (err) { ctx.recordError('tls reloads', err); out.reloads.tls = { error: String(err).split('\n')[0] }; }
    }
    if (!h2load) out.reloads.h2 = { skipped: 'h2load not installed' };
    else if (srv.h2.baton) {
      say(`tls: ${T.reloads} reloads under h2 load (h2load, ${T.reloadH2Clients} x ${T.reloadH2Streams} streams)`);
      try { out.reloads.h2 = await h2Reloads(ctx, srv.h2.baton, T, dir); } catch (err) { ctx.recordError('h2 reloads', err); out.reloads.h2 = { error: String(err).split('\n')[0] }; }
    }
  } finally {
    for (const pair of Object.values(srv)) for (const s of Object.values(pair)) await s.stop();
  }
  return out;
}

// ---- targets and report -------------------------------------------------------------
/** @param {any} x @param {(id: string, label: string, value: any, threshold: string, pass: boolean|null) => void} add */
export function targets(x, add) {
  const ratioTarget = (/** @type {string} */ id, /** @type {string} */ label, /** @type {any} */ m) => {
    if (!m || m.skipped) return add(id, label, m?.skipped ?? null, '>= 0.95x', null);
    if (m.error || m.ratio == null) return add(id, label, 'error', '>= 0.95x', false);
    add(id, label, `${m.ratio.toFixed(3)}x`, '>= 0.95x', m.ratio >= 0.95);
  };
  ratioTarget('tls-handshake-vs-cluster', 'new TLS handshakes/s vs bare cluster', x.modes?.handshake);
  ratioTarget('tls-ka-vs-cluster', 'TLS keep-alive req/s vs bare cluster', x.modes?.keepAlive);
  ratioTarget('h2-vs-cluster', 'h2 req/s vs bare cluster', x.modes?.h2);

  const tl = x.reloads?.tls;
  if (!tl) add('tls-reload-failures', 'baton failed requests, TLS reloads', null, '0', null);
  else if (tl.error) add('tls-reload-failures', 'baton failed requests, TLS reloads', 'error', '0', false);
  else {
    const done = tl.reloads.filter((/** @type {any} */ r) => r.outcome === 'complete').length;
    const failed = tl.counts.all.failed;
    add('tls-reload-failures', 'baton failed requests, TLS reloads', `${failed}${done < tl.reloads.length ? ` (${done}/${tl.reloads.length} reloads completed)` : ''}`,
      '0', failed === 0 && done === tl.reloads.length);
  }
  const h2 = x.reloads?.h2;
  if (!h2 || h2.skipped) add('h2-reload-failures', 'baton failed requests, h2 reloads', h2?.skipped ?? null, '0', null);
  else if (h2.error || h2.errors || h2.failed == null) add('h2-reload-failures', 'baton failed requests, h2 reloads', `error${h2.failed ? `, ${h2.failed} failed` : ''}`, '0', false);
  else {
    const done = h2.reloads.filter((/** @type {any} */ r) => r.outcome === 'complete').length;
    add('h2-reload-failures', 'baton failed requests, h2 reloads',
      `${h2.failed}${h2.unsent ? ` (+${h2.unsent} never sent)` : ''}${done < h2.reloads.length ? ` (${done}/${h2.reloads.length} reloads completed)` : ''}`,
      '0', h2.failed === 0 && done === h2.reloads.length);
  }
}

/** @param {number|null|undefined} v */
const fx = (v) => (v == null ? 'n/a' : `${v.toFixed(3)}x`);

/** @param {any} x @returns {string[]} */
export function report(x) {
  const out = [`== TLS and h2: baton vs bare node:cluster, same certificate and handler (median of ${x.runs} round(s), ${x.durationS}s each, 2 workers) ==`];
  const rows = [];
  const notes = [];
  for (const mode of MODES) {
    const m = x.modes?.[mode];
    if (!m) continue;
    if (m.skipped || m.error) { notes.push(`${mode}: ${m.skipped ? `skipped (${m.skipped})` : `ERROR: ${m.error}`}`); continue; }
    for (const n of SERVERS) {
      const s = m.servers[n];
      if (!s) continue;
      rows.push([MODE_LABELS[mode], n, fmtInt(s.rps), fmtMs(s.mean), fmtMs(s.max), s.errors ?? 0,
        s.serverCpuUsPerReq == null ? 'n/a' : `${s.serverCpuUsPerReq}`, s.foreignCpuPct == null ? 'n/a' : `${s.foreignCpuPct}%`, (s.allRps ?? []).map(fmtInt).join(' / ')]);
    }
    notes.push(`${mode}: baton ${fx(m.ratio)} of cluster (median of per-round ratios), server CPU per request ${fx(m.cpuRatio)} of cluster [${m.tool}]`);
    if (mode === 'handshake') {
      const resumed = SERVERS.reduce((a, n) => a + m.raw[n].reduce((/** @type {number} */ b, /** @type {any} */ r) => b + (r.resumed ?? 0), 0), 0);
      notes.push(`handshake: ${resumed} resumed session(s) over all rounds (must be 0: every connection a full handshake); TLS versions: ${JSON.stringify(m.raw.baton[0]?.tlsVersions ?? {})}`);
    }
  }
  out.push(formatTable(['mode', 'server', 'req/s', 'mean', 'max', 'errors', 'srv µs CPU/req', 'noise', 'runs req/s'], rows));
  out.push(`(handshakes: one request per new connection, req/s is connections/s; keep-alive: ${x.modes?.keepAlive?.tool ?? 'n/a'}${x.h2load ? ', h2: h2load (latencies: its "time for request")' : ''};` +
    ' srv µs CPU/req: CPU of the server\'s processes per request; noise: machine CPU used by processes not started by the bench, h2load excluded)');
  out.push(...notes);
  if (x.speed?.length > 1) out.push(`machine speed per round (CPU-bound probe, % of the fastest): ${x.speed.map((/** @type {number} */ v) => `${Math.round((v / Math.max(...x.speed)) * 100)}%`).join(' / ')}`);

  const rr = [];
  const tl = x.reloads?.tls;
  const rl = (/** @type {any[]} */ rs) => {
    const ready = rs.map((r) => r.readyMs).filter((v) => v != null);
    const gone = rs.map((r) => r.goneMs).filter((v) => v != null);
    return [`${rs.filter((r) => r.outcome === 'complete').length}/${rs.length}`, fmtMs(ready.length ? Math.max(...ready) : null), fmtMs(gone.length ? Math.max(...gone) : null),
      rs.every((r) => r.configOk) ? 'yes' : 'NO'];
  };
  if (tl?.reloads) {
    const c = tl.counts;
    for (const [k, label] of [['nc', 'h1 new TLS connection loops'], ['ka', 'h1 TLS keep-alive (undici)']]) {
      const cc = c[k];
      if (cc) rr.push(['TLS', label, fmtInt(cc.total), cc.failed, `${cc.refused}/${cc.reset}/${cc.timeout}/${cc.non2xx}/${cc.other}`, ...rl(tl.reloads)]);
    }
  } else if (tl?.error) rr.push(['TLS', `error: ${tl.error}`]);
  const h2 = x.reloads?.h2;
  if (h2?.reloads) {
    const t = h2.reloads.reduce((/** @type {any} */ a, /** @type {any} */ r) => ({ ref: a.ref, rst: a.rst + (r.log?.sentFailed ?? 0), tmo: a.tmo + (r.unfinished ?? 0), non2xx: a.non2xx + (r.log?.non2xx ?? 0) }), { ref: 0, rst: 0, tmo: 0, non2xx: 0 });
    rr.push(['h2', `h2load ${h2.streams} streams, one run per reload`, fmtInt((h2.answered ?? 0) + (h2.failed ?? 0)), h2.failed ?? 'n/a', `-/${t.rst}/${t.tmo}/${t.non2xx}/-`, ...rl(h2.reloads)]);
  } else if (h2) rr.push(['h2', h2.skipped ? `skipped: ${h2.skipped}` : `error: ${h2.error}`]);
  if (rr.length) {
    out.push('');
    out.push('Reloads under TLS load (baton):');
    out.push(formatTable(['load', 'client', 'requests', 'failed', 'ref/rst/tmo/non2xx/oth', 'reloads', 'ready max', 'gone max', 'config ok'], rr));
    if (h2?.reloads) {
      out.push(`(h2: failed = streams sent and not answered 2xx (rst column) plus streams started and never done (tmo column). h2load itself reports ${fmtInt(h2.h2loadErrored)} errored:` +
        ` ${fmtInt(h2.notStarted)} it never started once the GOAWAY came (with -n it counts the rest of its quota), ${fmtInt(h2.unsent)} it queued after the GOAWAY and its own nghttp2` +
        ' refused before they left (no send time in its log; never processed, safe to retry: RFC 9113 §8.1.4), and the rst column)');
      for (const e of h2.errors ?? []) out.push(`h2 reload ERROR: ${e}`);
    }
    if (tl?.resumed) out.push(`(TLS reloads: ${tl.resumed} new connection(s) resumed a session)`);
  }
  return out;
}
