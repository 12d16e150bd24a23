// @ts-check
// Behind a real nginx with upstream keep-alive, reloads and an ordered
// shutdown of one instance lose nothing, POSTs included. nginx retries a
// failed request on the other instance only while the request has not been
// sent, or for idempotent methods: a POST sent on an upstream connection that
// baton closes at that instant is a 502 for the client. baton keeps idle
// connections through a shutdown (SHUTDOWN_IDLE_CLOSE_MS) and answers them
// with Connection: close, and nginx's upstream keepalive_timeout (4 s) is
// below baton's keep-alive timeout (5 s), so nginx always closes an idle
// upstream connection first. The configuration is the one in
// docs/deployment.md#behind-nginx (test/helpers/nginx.js writes it).
// The same scenario with SHUTDOWN_IDLE_CLOSE_MS=0 on the stopped instance
// (idle connections ended at once, the old behaviour) gave POSTs 502s in 8
// runs of 10: too often to be luck, not always enough for a test of its own.
import test from 'ava';
import { join } from 'node:path';
import { Pool } from 'undici';
import { FIXTURES, startBaton } from './helpers/baton.js';
import { failureKind } from './helpers/http.js';
import { hasNginx, startNginx } from './helpers/nginx.js';

const APP = join(FIXTURES, 'apps', 'echo-post.mjs');
const BODY = Buffer.alloc(2048, 'x');
const serial = hasNginx ? test.serial : test.serial.skip;

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Loops of POSTs (2 KiB bodies) and GETs through nginx over keep-alive
 * connections, some busy (pauses of 0-5 ms), some with random pauses of
 * 0-200 ms and a few with ~1 s pauses, so that nginx's upstream connections sit idle at
 * random moments. Every request is counted here: a 2xx answer with the body
 * the app gives (the POST's length echoed), or a failure by kind.
 * @param {number} port
 */
function startNginxLoad(port) {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 32, pipelining: 1, headersTimeout: 20000, bodyTimeout: 20000 });
  let running = true;
  const counts = { ok: 0, failed: 0, posts: 0, gets: 0 };
  /** @type {Record<string, number>} */
  const byInstance = {};
  /** @type {Record<string, number>} */
  const failureKinds = {};
  /** @type {{ method: string, kind: string, phase: string, detail: string }[]} */
  const failures = [];
  // What the scenario is doing, to say when a failure happened.
  const state = { phase: 'warm-up' };
  /** @type {Set<() => void>} */
  const watchers = new Set();
  const notify = () => { for (const w of [...watchers]) w(); };

  /** @param {string} method @param {string} kind @param {string} detail */
  const fail = (method, kind, detail) => {
    counts.failed++;
    failureKinds[kind] = (failureKinds[kind] ?? 0) + 1;
    if (failures.length < 50) failures.push({ method, kind, phase: state.phase, detail: detail.slice(0, 200) });
  };

  /** @param {'POST' | 'GET'} method */
  const once = async (method) => {
    try {
      const res = await pool.request(method === 'POST'
        ? { path: '/', method, body: BODY, headers: { 'content-type': 'application/octet-stream' } }
        : { path: '/', method });
      const text = await res.body.text();
      // "<bytes or message> <generation> <instance> <pid>"
      const words = text.trim().split(' ');
      const instance = words[words.length - 2];
      if (res.statusCode < 200 || res.statusCode >= 300) fail(method, `status ${res.statusCode}`, text);
      else if (method === 'POST' && words[0] !== String(BODY.length)) fail(method, 'bad body', text);
      else {
        counts.ok++;
        counts[method === 'POST' ? 'posts' : 'gets']++;
        byInstance[instance] = (byInstance[instance] ?? 0) + 1;
      }
    } catch (err) {
      fail(method, failureKind(err), String(/** @type {Error} */ (err)?.message ?? err));
    }
    notify();
  };

  /** @param {'POST' | 'GET'} method @param {() => number} pauseMs */
  const loop = async (method, pauseMs) => {
    while (running) {
      await once(method);
      const ms = pauseMs();
      if (ms > 0 && running) await sleep(ms);
    }
  };
  // Busy loops pause a few ms too: enough load without taking both cores
  // from the test files that run alongside.
  const busy = () => Math.random() * 5;
  const short = () => Math.random() * 200;
  const long = () => 800 + Math.random() * 400;
  const loops = [
    ...Array.from({ length: 6 }, () => loop('POST', busy)),
    ...Array.from({ length: 3 }, () => loop('GET', busy)),
    ...Array.from({ length: 6 }, () => loop('POST', short)),
    ...Array.from({ length: 3 }, () => loop('GET', short)),
    ...Array.from({ length: 3 }, () => loop('POST', long)),
    ...Array.from({ length: 1 }, () => loop('GET', long)),
  ];

  return {
    counts, byInstance, failureKinds, failures, state,
    /**
     * Resolves once `n` more requests have completed and `check()` (if any)
     * holds. @param {number} n @param {() => boolean} [check]
     */
    waitFor(n, check = () => true, timeoutMs = 15000) {
      const target = counts.ok + counts.failed + n;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { watchers.delete(w); reject(new Error(`load: no progress within ${timeoutMs} ms: ${JSON.stringify({ counts, byInstance })}`)); }, timeoutMs);
        const w = () => {
          if (counts.ok + counts.failed >= target && check()) { clearTimeout(timer); watchers.delete(w); resolve(undefined); }
        };
        watchers.add(w);
        w();
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
 * Two instances (WORKERS=2) behind nginx under load: 5 reloads of the first,
 * then SIGTERM to it, its exit, a new instance on its port, more load.
 * @param {import('ava').ExecutionContext} t
 * @param {Record<string, string>} stoppedEnv extra .env of the instance that is stopped
 */
async function scenario(t, stoppedEnv = {}) {
  const base = { APP_MODULE: APP, WORKERS: '2', MESSAGE: 'hello' };
  const [a, b] = await Promise.all([
    startBaton({ t, env: { ...base, INSTANCE: 'a', ...stoppedEnv } }),
    startBaton({ t, env: { ...base, INSTANCE: 'b' } }),
  ]);
  const nginx = await startNginx({ t, upstreams: [a.port, b.port] });
  const load = startNginxLoad(nginx.port);
  /** @type {import('./helpers/baton.js').Baton | undefined} */
  let a2;
  let exit;
  /** @type {number | undefined} */
  let shutdownMs;
  try {
    await load.waitFor(1000);
    for (let i = 1; i <= 5; i++) {
      load.state.phase = `reload ${i}`;
      const outcome = await a.reload();
      t.is(outcome.msg, 'reload complete', `reload ${i}`);
      // Traffic on the new generation while the old one drains, then the next reload.
      await Promise.all([load.waitFor(1000), sleep(300)]);
    }
    // The SIGTERM comes while the last reload's old generation drains, as
    // nginx reopens the connections the old workers close: those that the
    // kernel queued as the shutdown began must be accepted and answered,
    // not reset with their request sent (a 502 for a POST) when the port
    // closes (docs/deployment.md#behind-nginx).
    load.state.phase = 'draining reload 5';
    load.state.phase = 'shutdown of a';
    a.signal('SIGTERM');
    await a.waitExit(20000);
    exit = a.exitInfo;
    shutdownMs = /** @type {number | undefined} */ (a.logs.find((l) => l.msg === 'shutdown complete')?.durationMs);
    load.state.phase = 'a down, a2 starting';
    a2 = await startBaton({ t, env: { ...base, INSTANCE: 'a2', PORT: String(a.port) } });
    load.state.phase = 'a2 serving';
    // nginx tries the instance again after fail_timeout (1 s): wait until it serves.
    await load.waitFor(300, () => (load.byInstance.a2 ?? 0) >= 500, 20000);
  } finally {
    await load.stop();
  }
  const nginxErrors = nginx.stderr.split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
  await nginx.stop();
  return { load, exit, shutdownMs, port: a.port, a2, nginx, nginxErrors, stoppedLogs: a.dump() };
}

// The stopped instance in each mode: with a shared queue its workers accept,
// and its shutdown must still close the port last, after a sweep.
for (const dispatch of ['primary', 'shared']) {
  serial(`behind nginx: 5 reloads and a shutdown of one instance${dispatch === 'shared' ? ' (DISPATCH=shared)' : ''} under POST and GET load lose nothing`, async (t) => {
    const started = Date.now();
    const { load, exit, shutdownMs, port, a2, nginx, nginxErrors, stoppedLogs } = await scenario(t, dispatch === 'shared' ? { DISPATCH: 'shared' } : {});
    t.log(`${Math.round((Date.now() - started) / 100) / 10} s; answered ${load.counts.ok} (${load.counts.posts} POST, ${load.counts.gets} GET), failed ${load.counts.failed}; the stopped instance took ${shutdownMs} ms to exit`, load.byInstance, load.failureKinds, `nginx logged ${nginxErrors.length} error line(s)`, nginxErrors.slice(0, 3));
    if (load.counts.failed > 0) t.log(`the stopped instance's last log lines:\n${stoppedLogs}`);
    t.deepEqual(exit, { code: 0, signal: null }, 'the stopped instance exited 0');
    t.is(a2?.port, port, 'restarted on the same port');
    t.deepEqual(load.failures.slice(0, 10), [], `failures: ${JSON.stringify(load.failureKinds)}`);
    t.is(load.counts.failed, 0);
    t.true(load.counts.posts >= 500, `POSTs answered: ${load.counts.posts}`);
    t.true(load.counts.gets >= 200, `GETs answered: ${load.counts.gets}`);
    for (const instance of ['a', 'b', 'a2']) t.true((load.byInstance[instance] ?? 0) >= 500, `instance ${instance} served ${load.byInstance[instance] ?? 0}`);
    t.false(/upstream prematurely closed/.test(nginx.stderr), nginxErrors.filter((l) => /prematurely/.test(l)).slice(0, 5).join('\n'));
    // The only errors nginx may log: connections refused while the instance was down (retried elsewhere).
    t.deepEqual(nginxErrors.filter((l) => !/connect\(\) failed \(111: Connection refused\)/.test(l)), []);
  });
}
