// @ts-check
// The bench's own load clients, with per-request accounting. Every request that
// is issued ends in exactly one record: ok, or a failure classified by kind.
// (autocannon is only used for saturation throughput, where a lost request
// cannot hide: see bench/README.md.)
import http from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import autocannon from 'autocannon';
import { KINDS, CLIENTS, classifyError } from './summary.js';

const KIND = Object.fromEntries(KINDS.map((k, i) => [k, i]));
const CLIENT = Object.fromEntries(CLIENTS.map((k, i) => [k, i]));

/**
 * How long this process's event loop, where every load client runs, was
 * held up while `f` ran: a frozen client delays the requests it should have
 * sent, and that would read as server latency. (Before the .env write went
 * async, a synchronous write just before each SIGHUP froze the clients for
 * 100-400 ms on this machine's disk, inside baton's reload windows only.)
 * @template T @param {() => Promise<T>} f @returns {Promise<{ result: T, clientLag: { maxMs: number, p99Ms: number } }>}
 */
export async function withClientLag(f) {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  try {
    const result = await f();
    return { result, clientLag: { maxMs: Math.round(h.max / 1e5) / 10, p99Ms: Math.round(h.percentile(99) / 1e5) / 10 } };
  } finally { h.disable(); }
}

/** Columnar request log (see Records in summary.js); times relative to t0 (performance.now()). */
export class Recorder {
  /** @param {number} [t0] */
  constructor(t0 = performance.now()) {
    this.t0 = t0;
    /** @type {number[]} */ this.t = [];
    /** @type {number[]} */ this.lat = [];
    /** @type {number[]} */ this.kind = [];
    /** @type {number[]} */ this.client = [];
    /** @type {Record<string, number>} error code tally, for diagnosis */
    this.errors = {};
  }
  /**
   * @param {number} startAbs performance.now() at (intended) start
   * @param {number} endAbs
   * @param {string} kind
   * @param {string} client
   * @param {any} [err]
   */
  add(startAbs, endAbs, kind, client, err) {
    this.t.push(startAbs - this.t0);
    this.lat.push(endAbs - startAbs);
    this.kind.push(KIND[kind] ?? KIND.other);
    this.client.push(CLIENT[client] ?? 0);
    if (err) {
      const code = `${client}:${kind}:${err.code ?? err.cause?.code ?? err.name ?? 'error'}`;
      this.errors[code] = (this.errors[code] ?? 0) + 1;
    }
  }
  get length() { return this.t.length; }
  toJSON() { return { t: this.t, lat: this.lat, kind: this.kind, client: this.client }; }
}

export function createStopper() {
  const s = { stopped: false, stop() { s.stopped = true; } };
  return s;
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * One request through an undici pool, recorded.
 * @param {Pool} pool @param {string} path @param {number} timeoutMs @param {Recorder} rec
 * @param {string} client @param {number} startAbs intended start (for latency)
 */
async function poolRequest(pool, path, timeoutMs, rec, client, startAbs) {
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ac.abort(); }, timeoutMs);
  try {
    const { statusCode, body } = await pool.request({ path, method: 'GET', signal: ac.signal });
    await body.text();
    rec.add(startAbs, performance.now(), statusCode >= 200 && statusCode < 300 ? 'ok' : 'non2xx', client);
  } catch (err) {
    const kind = timedOut ? 'timeout' : classifyError(err);
    rec.add(startAbs, performance.now(), kind, client, timedOut ? { code: 'bench-timeout' } : err);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Open-loop fixed-rate keep-alive client (undici Pool). Latency is measured from
 * each request's *intended* start, so stalls are not hidden (no coordinated omission).
 * @param {{ origin: string, path?: string, rate: number, connections?: number, timeoutMs?: number,
 *           rec: Recorder, stop: {stopped: boolean}, client?: string, maxInFlight?: number }} o
 */
export async function fixedRateClient(o) {
  const pool = new Pool(o.origin, { connections: o.connections ?? 16, pipelining: 1 });
  const path = o.path ?? '/';
  const timeoutMs = o.timeoutMs ?? 10_000;
  const client = o.client ?? 'ka';
  const maxInFlight = o.maxInFlight ?? 20_000;
  const start = performance.now();
  const interval = 1000 / o.rate;
  let issued = 0;
  let skipped = 0;
  /** @type {Set<Promise<void>>} */
  const inflight = new Set();
  await new Promise((resolve) => {
    const iv = setInterval(() => {
      if (o.stop.stopped) { clearInterval(iv); resolve(undefined); return; }
      const due = Math.floor((performance.now() - start) / interval);
      while (issued < due) {
        // Never silently drop a due request: if the client itself is swamped it
        // is counted as skipped (and reported), not hidden.
        if (inflight.size >= maxInFlight) { skipped++; issued++; continue; }
        const p = poolRequest(pool, path, timeoutMs, o.rec, client, start + issued * interval);
        issued++;
        inflight.add(p);
        p.finally(() => inflight.delete(p));
      }
    }, 2);
  });
  await Promise.all(inflight);
  await pool.close().catch(() => {});
  return { issued, skipped };
}

/**
 * Closed-loop keep-alive client: `concurrency` loops, each sending the next
 * request when the previous one ended. Stops on `stop` or after `count` requests.
 * @param {{ origin: string, path?: string, concurrency: number, timeoutMs?: number, rec: Recorder,
 *           stop?: {stopped: boolean}, count?: number, client?: string, pauseMs?: number }} o
 */
export async function closedLoopClient(o) {
  const pool = new Pool(o.origin, { connections: o.concurrency, pipelining: 1 });
  const path = o.path ?? '/';
  let remaining = o.count ?? Infinity;
  const loop = async () => {
    while (!(o.stop?.stopped) && remaining > 0) {
      remaining--;
      await poolRequest(pool, path, o.timeoutMs ?? 10_000, o.rec, o.client ?? 'ka', performance.now());
      if (o.pauseMs) await sleep(o.pauseMs);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, loop));
  await pool.close().catch(() => {});
}

/**
 * One request on a brand-new TCP connection (agent: false => Connection: close), like curl.
 * @param {{ host: string, port: number, path: string, timeoutMs: number }} o
 * @returns {Promise<{ status: number, body: string }>}
 */
export function newConnRequest(o) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: o.host, port: o.port, path: o.path, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }); });
      res.on('aborted', () => { clearTimeout(timer); reject(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })); });
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('bench timeout'), { benchTimeout: true })), o.timeoutMs);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/**
 * `loops` concurrent loops of new-connection requests (curl in a loop).
 * @param {{ host: string, port: number, path?: string, loops: number, timeoutMs?: number, rec: Recorder,
 *           stop?: {stopped: boolean}, count?: number, pauseMs?: number, client?: string }} o
 */
export async function newConnLoops(o) {
  let remaining = o.count ?? Infinity;
  const loop = async () => {
    while (!(o.stop?.stopped) && remaining > 0) {
      remaining--;
      const s = performance.now();
      try {
        const r = await newConnRequest({ host: o.host, port: o.port, path: o.path ?? '/', timeoutMs: o.timeoutMs ?? 10_000 });
        o.rec.add(s, performance.now(), r.status >= 200 && r.status < 300 ? 'ok' : 'non2xx', o.client ?? 'nc');
      } catch (err) {
        const kind = classifyError(err);
        o.rec.add(s, performance.now(), kind, o.client ?? 'nc', err);
      }
      if (o.pauseMs) await sleep(o.pauseMs);
    }
  };
  await Promise.all(Array.from({ length: o.loops }, loop));
}

/**
 * autocannon, keep-alive saturation run.
 * @param {{ url: string, connections: number, duration?: number, amount?: number, timeout?: number }} o
 * @returns {Promise<any>}
 */
export function runAutocannon(o) {
  return new Promise((resolve, reject) => {
    /** @type {any} */
    const opts = { url: o.url, connections: o.connections, pipelining: 1, timeout: o.timeout ?? 10 };
    if (o.amount !== undefined) opts.amount = o.amount; else opts.duration = o.duration;
    autocannon(opts, (err, res) => {
      if (err) reject(err); else resolve(res);
    });
  });
}
