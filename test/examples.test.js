// The examples in examples/ run under the real built primary, and reload with
// zero failed requests while under load: 16 keep-alive clients (an undici
// Pool), a loop opening a new connection per request, and a slow request in
// flight across the reload. The reload must visibly change what GET / says.
//
// Each example's dependencies (express@5, fastify@5, ws@8) are installed into
// examples/<name>/node_modules on first run (npm install, no lockfile).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import dotenv from 'dotenv';
import { Client, Pool } from 'undici';
import { ROOT, startBaton } from './helpers/baton.js';

const execFileP = promisify(execFile);

const KEEP_ALIVE_CLIENTS = 16;
const SLOW_MS = 1500;
/** Upper bound for the whole load phase: the load loops always end by then. */
const LOAD_DEADLINE_MS = 12_000;

// Two drop-in apps (they call listen() themselves) and one factory app.
const EXAMPLES = [
  { name: 'express', framework: 'express', key: 'GREETING', tag: 'express' },
  { name: 'fastify', framework: 'fastify', key: 'GREETING', tag: 'fastify' },
  { name: 'express-factory', framework: 'express', key: 'MESSAGE', tag: 'express' },
];

/** Installs an example's dependencies unless they are already there. */
async function ensureDeps(dir, framework) {
  const ready = () => existsSync(join(dir, 'node_modules', framework, 'package.json'))
    && existsSync(join(dir, 'node_modules', 'baton', 'package.json'));
  if (ready()) return;
  try {
    await execFileP('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--prefer-offline'], {
      cwd: dir, timeout: 180_000, maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    throw new Error(`npm install in ${dir} failed: ${err.message}\n${err.stderr ?? ''}`);
  }
  if (!ready()) throw new Error(`npm install in ${dir} did not install ${framework} and baton`);
}

/** GET path on a fresh connection; returns { status, body }. */
async function getOnce(origin, path) {
  const client = new Client(origin);
  try {
    const res = await client.request({ path, method: 'GET' });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await client.close();
  }
}

/**
 * Load that runs until stop() (or the deadline): `clients` keep-alive loops
 * sharing a Pool of as many connections, and one loop that opens a new
 * connection for every request. Every non-200 or error is a failure.
 */
function startLoad(origin, clients) {
  const pool = new Pool(origin, { connections: clients, pipelining: 1 });
  const stats = {
    ok: 0,
    failures: /** @type {string[]} */ ([]),
    /** Last body each keep-alive loop saw; index = loop. */
    lastBody: /** @type {string[]} */ (Array.from({ length: clients }, () => '')),
    perLoop: Array.from({ length: clients }, () => 0),
    newConnOk: 0,
    newConnLastBody: '',
  };
  let stopped = false;
  const deadline = Date.now() + LOAD_DEADLINE_MS;
  const running = () => !stopped && Date.now() < deadline;

  async function keepAliveLoop(i) {
    while (running()) {
      try {
        const res = await pool.request({ path: '/', method: 'GET' });
        const body = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`);
        stats.ok++;
        stats.perLoop[i]++;
        stats.lastBody[i] = body;
      } catch (err) {
        stats.failures.push(`keep-alive loop ${i}: ${err.code ?? ''} ${err.message}`);
      }
    }
  }

  async function newConnectionLoop() {
    while (running()) {
      try {
        const { status, body } = await getOnce(origin, '/');
        if (status !== 200) throw new Error(`HTTP ${status}: ${body.slice(0, 200)}`);
        stats.ok++;
        stats.newConnOk++;
        stats.newConnLastBody = body;
      } catch (err) {
        stats.failures.push(`new-connection loop: ${err.code ?? ''} ${err.message}`);
      }
    }
  }

  const loops = Promise.all([
    ...Array.from({ length: clients }, (_, i) => keepAliveLoop(i)),
    newConnectionLoop(),
  ]);
  return {
    stats,
    async stop() {
      stopped = true;
      await loops;
      await pool.close();
    },
  };
}

/** Resolves once check() is true, re-checking every `everyMs`; rejects at the deadline. */
async function until(check, timeoutMs, describe, everyMs = 10) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

for (const example of EXAMPLES) {
  test.serial(`${example.name} example: reload under load changes the response, no failed request`, async (t) => {
    t.timeout(180_000, 'installing the example and reloading under load');
    const dir = join(ROOT, 'examples', example.name);
    await ensureDeps(dir, example.framework);

    // The example's own .env.example, with the app path made absolute (baton
    // runs in a temp dir) and test defaults (free port, loopback, 2 workers).
    const sample = dotenv.parse(readFileSync(join(dir, '.env.example'), 'utf8'));
    t.is(sample.APP_MODULE, './app.js', '.env.example sets APP_MODULE=./app.js');
    t.truthy(sample[example.key], `.env.example sets ${example.key}`);
    const before = `before reload ${example.name} ${process.pid}`;
    const after = `after reload ${example.name} ${process.pid}`;
    const baton = await startBaton({
      t,
      env: { ...sample, APP_MODULE: join(dir, 'app.js'), PORT: '0', HOST: '127.0.0.1', WORKERS: '2', [example.key]: before },
    });
    const origin = `http://127.0.0.1:${baton.port}`;

    const first = await getOnce(origin, '/');
    t.is(first.status, 200);
    t.true(first.body.includes(before), first.body);
    t.true(first.body.includes(`(${example.tag}, generation 1`), first.body);
    const health = await getOnce(origin, '/healthz');
    t.is(health.status, 200, 'the worker answers the health path itself');
    t.is(JSON.parse(health.body).generation, 1);

    const load = startLoad(origin, KEEP_ALIVE_CLIENTS);
    try {
      // Every keep-alive loop and the new-connection loop has been served.
      await until(() => load.stats.perLoop.every((n) => n > 0) && load.stats.newConnOk > 0, 5000,
        () => `all load loops to get a response: ${JSON.stringify(load.stats.perLoop)}, new-conn ${load.stats.newConnOk}`);

      // A slow request on a connection that a generation-1 worker already
      // serves: the reload must let it finish there.
      const slowClient = new Client(origin);
      t.teardown(() => slowClient.destroy());
      const warm = await slowClient.request({ path: '/', method: 'GET' });
      t.true((await warm.body.text()).includes('generation 1'));
      const slow = slowClient.request({ path: `/slow?ms=${SLOW_MS}`, method: 'GET' })
        .then(async (res) => ({ status: res.statusCode, body: await res.body.text() }));
      slow.catch(() => {}); // awaited below

      baton.writeEnv({ [example.key]: after });
      const sinceReload = baton.logs.length;
      const outcome = await baton.reload(15_000);
      t.is(outcome.msg, 'reload complete', `reload outcome: ${JSON.stringify(outcome)}`);

      // The slow request finishes on the old generation, with its old text.
      const slowRes = await slow;
      t.is(slowRes.status, 200);
      t.true(slowRes.body.includes(`slept ${SLOW_MS} ms`), slowRes.body);
      t.true(slowRes.body.includes('generation 1'), `served by the old generation: ${slowRes.body}`);
      await slowClient.close();

      // Old connections move over as generation 1 drains; once it has
      // retired, every loop (including fresh connections) sees the new text.
      await baton.waitForLog('generation retired', { since: sinceReload, timeoutMs: 10_000 });
      const before2 = [...load.stats.perLoop];
      const newConnBefore = load.stats.newConnOk;
      // Two more answers each: the first may have been on its way from the old
      // generation as its retirement was logged; the next was asked after it.
      await until(() => load.stats.perLoop.every((n, i) => n >= before2[i] + 2) && load.stats.newConnOk >= newConnBefore + 2, 5000,
        () => `every loop to get a response after the old generation retired: ${JSON.stringify(load.stats.perLoop)}`);
      for (const [i, body] of load.stats.lastBody.entries()) {
        t.true(body.includes(after) && body.includes('generation 2'), `keep-alive loop ${i} last saw ${JSON.stringify(body)}`);
      }
      t.true(load.stats.newConnLastBody.includes(after), load.stats.newConnLastBody);
    } finally {
      await load.stop();
    }
    t.deepEqual(load.stats.failures.slice(0, 10), [], `${load.stats.failures.length} failed requests out of ${load.stats.ok + load.stats.failures.length}`);
    t.true(load.stats.ok > KEEP_ALIVE_CLIENTS * 2, `served ${load.stats.ok} requests`);
    t.log(`${load.stats.ok} requests, ${load.stats.failures.length} failed`);

    const latest = await getOnce(origin, '/');
    t.true(latest.body.includes(after), latest.body);

    // Ordered shutdown: exit 0, nothing left in the process group.
    baton.signal('SIGTERM');
    const exit = await baton.waitExit(15_000);
    t.deepEqual(exit, { code: 0, signal: null }, baton.dump());
    await until(() => baton.groupPids().length === 0, 5000, () => `process group to be empty: ${baton.groupPids()}`);
  });
}

test.serial('websocket example: a client is told to go with 1012 on a reload and reconnects to the new generation', async (t) => {
  t.timeout(180_000, 'installing the example');
  const dir = join(ROOT, 'examples', 'websocket');
  await ensureDeps(dir, 'ws');
  const { default: WebSocket } = await import('ws');
  const sample = dotenv.parse(readFileSync(join(dir, '.env.example'), 'utf8'));
  const baton = await startBaton({ t, env: { ...sample, APP_MODULE: join(dir, 'app.js'), PORT: '0', HOST: '127.0.0.1', WORKERS: '2', GREETING: 'first', DRAIN_SPREAD_UPGRADED_MS: '200' } });
  /** @returns {Promise<{ ws: import('ws').WebSocket, hello: string, closed: Promise<number> }>} */
  const open = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${baton.port}/`);
    const closed = new Promise((r) => ws.once('close', (code) => r(code)));
    ws.once('message', (data) => resolve({ ws, hello: String(data), closed: /** @type {Promise<number>} */ (closed) }));
    ws.once('error', reject);
  });
  const first = await open();
  t.is(first.hello, 'first (generation 1)');
  baton.writeEnv({ GREETING: 'second' });
  t.is((await baton.reload()).msg, 'reload complete');
  t.is(await first.closed, 1012, 'Service Restart, sent by the app');
  const second = await open();
  t.is(second.hello, 'second (generation 2)');
  second.ws.close();
});
