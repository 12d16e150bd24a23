// @ts-check
// The `baton` command against a real primary: reload that reports its
// outcome, status, check, stop, scale, metrics, and bad input.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { FIXTURES, ROOT, envText, pollUntil, processGroup, startBaton } from './helpers/baton.js';
import { get, metric, startLoad } from './helpers/http.js';

const CLI = join(ROOT, 'dist', 'cli.js');

/**
 * Runs `baton ...args` in `cwd` with a clean environment.
 * @param {string} cwd @param {string[]} args @param {Record<string, string>} [env]
 * @returns {Promise<{ code: number | null, stdout: string, stderr: string }>}
 */
function baton(cwd, args, env = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30000 }, (err, stdout, stderr) => {
      resolve({ code: err ? /** @type {{ code?: number }} */ (err).code ?? null : 0, stdout, stderr });
    });
  });
}

/** @param {string} cwd */
async function statusJson(cwd) {
  const res = await baton(cwd, ['status', '--json']);
  if (res.code !== 0) throw new Error(`status failed: ${res.stderr}`);
  return JSON.parse(res.stdout);
}

test('baton reload: exit 0 with the generation when the new one serves', async (t) => {
  const b = await startBaton({ t, env: { MESSAGE: 'one' } });
  b.writeEnv({ MESSAGE: 'two' });
  const res = await baton(b.dir, ['reload']);
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, /^reload complete: generation 2 serving after \d+ ms/);
  t.is((await get(b.port, '/')).body, 'two\n');
});

test('baton reload: exit 1 with the worker\'s error when the new generation crashes on boot and is rolled back', async (t) => {
  const b = await startBaton({ t, env: { MESSAGE: 'one' } });
  b.writeEnv({ APP_MODULE: join(FIXTURES, 'crashes-on-boot.mjs') });
  const res = await baton(b.dir, ['reload']);
  t.is(res.code, 1);
  t.regex(res.stderr, /reload failed: database unreachable \(fixture crashes-on-boot\)/);
  t.is((await get(b.port, '/')).body, 'one\n');
  const st = await statusJson(b.dir);
  t.like(st, { generation: 1, lastReload: { ok: false } });
});

test('baton reload: exit 78 listing the invalid keys', async (t) => {
  const b = await startBaton({ t });
  b.writeEnv({ WORKERS: 'many', DRAIN_TIMEOUT_MS: '-5' });
  const res = await baton(b.dir, ['reload']);
  t.is(res.code, 78);
  t.regex(res.stderr, /reload rejected/);
  t.regex(res.stderr, /WORKERS .*must be a whole number/);
  t.regex(res.stderr, /DRAIN_TIMEOUT_MS .*must be a whole number/);
  // Each reason once: not in the headline and again in the list.
  t.is(res.stderr.match(/WORKERS \(from/g)?.length, 1, res.stderr);
  t.is(res.stderr.match(/DRAIN_TIMEOUT_MS \(from/g)?.length, 1, res.stderr);
});

test('baton status --json: generation and worker states before and after a reload; the plain form is a table', async (t) => {
  const b = await startBaton({ t });
  const before = await statusJson(b.dir);
  t.like(before, { state: 'running', generation: 1, configVersion: 1, targetWorkers: 2, lastReload: null, listeners: [{ kind: 'tcp', host: '127.0.0.1', port: b.port }], upgradedFrom: null });
  t.deepEqual(before.workers.map((/** @type {any} */ w) => [w.generation, w.state]), [[1, 'ready'], [1, 'ready']]);
  b.writeEnv({ MESSAGE: 'changed' });
  t.is((await baton(b.dir, ['reload'])).code, 0);
  const after = await statusJson(b.dir);
  t.like(after, { generation: 2, configVersion: 2, lastReload: { ok: true, generation: 2 } });
  t.true(after.workers.filter((/** @type {any} */ w) => w.generation === 2 && w.state === 'ready').length === 2);
  const plain = await baton(b.dir, ['status']);
  t.is(plain.code, 0);
  t.regex(plain.stdout, /^baton primary \d+: running, generation 2 \(config v2\)/);
  t.regex(plain.stdout, /ID\s+PID\s+GEN\s+STATE\s+UPTIME\s+SERVED\s+IN FLIGHT\s+UPGRADED/);
});

test('baton check: exit 0 on a good file, 78 listing every invalid key, without touching anything', async (t) => {
  const dir = (await startBaton({ t, waitReady: false, noEnvFile: true, args: ['--help'] })).dir;
  writeFileSync(join(dir, 'good.env'), envText({ PORT: '9000', WORKERS: '3', DATABASE_URL: 'x' }));
  writeFileSync(join(dir, 'bad.env'), envText({ PORT: 'x', LOG_LEVEL: 'loud', APP_MODULE: './nope.js' }));
  writeFileSync(join(dir, 'missing-app.env'), envText({ APP_MODULE: './nope.js' }));
  const good = await baton(dir, ['check', '--env-file', 'good.env']);
  t.is(good.code, 0, good.stderr);
  t.regex(good.stdout, /config OK: .*good\.env\n {2}listen 0\.0\.0\.0:9000, 3 workers, app \(demo\), 1 app keys/);
  const bad = await baton(dir, ['check', '--env-file', 'bad.env']);
  t.is(bad.code, 78);
  t.regex(bad.stderr, /PORT .*must be a whole number/);
  t.regex(bad.stderr, /LOG_LEVEL .*must be one of/);
  const app = await baton(dir, ['check', '--env-file', 'missing-app.env']);
  t.is(app.code, 78);
  t.regex(app.stderr, /APP_MODULE \.\/nope\.js: no such file/);
});

test('baton stop: waits until the primary has exited; PID file and socket are removed', async (t) => {
  const b = await startBaton({ t });
  t.is(Number((await import('node:fs')).readFileSync(join(b.dir, 'baton.pid'), 'utf8')), b.pid);
  t.is(statSync(join(b.dir, 'baton.sock')).mode & 0o777, 0o600);
  const res = await baton(b.dir, ['stop']);
  t.is(res.code, 0, res.stderr);
  t.regex(res.stdout, new RegExp(`primary ${b.pid} stopped`));
  t.truthy(b.exitInfo, 'the primary had exited when baton stop returned');
  t.deepEqual((await b.exited), { code: 0, signal: null });
  t.false(existsSync(join(b.dir, 'baton.pid')));
  t.false(existsSync(join(b.dir, 'baton.sock')));
});

test('no primary running: exit 69 with a clear message; bad usage: exit 2', async (t) => {
  const b = await startBaton({ t, waitReady: false, noEnvFile: true, args: ['--help'] });
  for (const cmd of ['reload', 'status', 'stop']) {
    const res = await baton(b.dir, [cmd]);
    t.is(res.code, 69, cmd);
    t.regex(res.stderr, /no baton primary is running \(nothing answers on \/.*\/baton\.sock\)/);
    t.notRegex(res.stderr, /at .*\.js:\d+/, 'no stack trace');
  }
  t.is((await baton(b.dir, ['frobnicate'])).code, 2);
  t.is((await baton(b.dir, ['reload', '--force'])).code, 2);
  t.is((await baton(b.dir, ['scale', 'zero'])).code, 2);
  t.is((await baton(b.dir, ['reload', '--timeout', 'soon'])).code, 2);
  t.is((await baton(b.dir, [])).code, 2);
});

test('a second baton start in the same directory is refused and steals nothing', async (t) => {
  const b = await startBaton({ t });
  const second = spawn(process.execPath, [CLI, 'start', '--port', '0'], { cwd: b.dir, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  second.stderr.on('data', (c) => { stderr += c; });
  const code = await new Promise((r) => second.on('exit', r));
  t.is(code, 4);
  t.regex(stderr, /refusing to start: another baton primary is running here: \/.*\/baton\.sock answers/);
  const st = await statusJson(b.dir);
  t.is(st.pid, b.pid, 'the socket still reaches the first primary');
  t.is((await get(b.port, '/')).status, 200);
});

test('a stale control socket from a killed primary is replaced', async (t) => {
  const first = await startBaton({ t });
  process.kill(-first.pid, 'SIGKILL');
  await first.exited;
  t.true(existsSync(join(first.dir, 'baton.sock')), 'SIGKILL leaves the socket behind');
  const second = spawn(process.execPath, [join(ROOT, 'dist', 'primary.js')], { cwd: first.dir, env: { PATH: process.env.PATH }, detached: true, stdio: 'ignore' });
  t.teardown(() => { try { process.kill(-(/** @type {number} */ (second.pid)), 'SIGKILL'); } catch { /* gone */ } });
  t.true(await pollUntil(async () => (await baton(first.dir, ['status'])).code === 0, 10000));
  t.is((await statusJson(first.dir)).pid, second.pid);
});

test('garbage on the control socket is answered with an error and the primary keeps serving', async (t) => {
  const b = await startBaton({ t });
  /** @param {string | Buffer} payload */
  const raw = (payload) => new Promise((resolve) => {
    const s = connect(join(b.dir, 'baton.sock'));
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (c) => { out += c; });
    s.on('close', () => resolve(out));
    s.on('error', () => {});
    s.write(payload);
  });
  t.regex(String(await raw('hello\n')), /"ok":false,"kind":"bad-request","reason":"not JSON"/);
  t.regex(String(await raw('{"cmd":"rm -rf"}\n')), /unknown cmd/);
  t.regex(String(await raw('{"cmd":"scale","workers":0}\n')), /scale needs/);
  t.regex(String(await raw('[1,2]\n')), /unknown cmd/);
  t.regex(String(await raw(Buffer.alloc(100 * 1024, 'a'))), /request larger than 65536 bytes/);
  t.is((await get(b.port, '/')).status, 200);
  t.is((await baton(b.dir, ['status'])).code, 0);
});

test.serial('scaling up and down under load (SIGTTIN, SIGTTOU, baton scale) drops nothing, and the count holds across reloads until WORKERS changes', async (t) => {
  const b = await startBaton({ t, env: { WORKERS: '2' } });
  const load = startLoad(b.port, { keepAlive: 16, newConn: 2, slow: 2 });
  /** @param {number} n */
  const readyCount = async (n) => pollUntil(async () => (await statusJson(b.dir)).workers.filter((/** @type {any} */ w) => w.state === 'ready').length === n
    && processGroup(b.pid).length === n + 1, 10000);
  try {
    await load.waitForMore(300);
    b.signal('SIGTTIN');
    t.true(await readyCount(3), 'SIGTTIN: 3 workers');
    await load.waitForMore(300);
    t.is((await baton(b.dir, ['scale', '1'])).code, 0);
    t.true(await readyCount(1), 'scale 1: 1 worker');
    await load.waitForMore(300);
    b.signal('SIGTTOU');
    await b.waitForLog('scale ignored: never below 1 worker');
    t.true(await readyCount(1), 'never below 1');
    t.is((await baton(b.dir, ['scale', '3'])).code, 0);
    t.true(await readyCount(3));
    b.writeEnv({ MESSAGE: 'reloaded' });
    t.is((await baton(b.dir, ['reload'])).code, 0);
    t.true(await readyCount(3), 'the scaled count holds across a reload');
    await load.waitForMore(300);
    b.writeEnv({ WORKERS: '4' });
    t.is((await baton(b.dir, ['reload'])).code, 0);
    t.true(await readyCount(4), 'a WORKERS change replaces the scaled count');
    await load.waitForMore(300);
  } finally {
    await load.stop();
  }
  t.deepEqual(load.failures.slice(0, 5), []);
  t.is(load.counts.failed, 0);
});

test.serial('metrics: request counters grow with traffic and never fall across reloads; reloads are counted by outcome', async (t) => {
  const b = await startBaton({ t, env: { METRICS_PORT: '0' } });
  const st = await statusJson(b.dir);
  const metricsPort = st.metrics.port;
  t.is(st.metrics.host, '127.0.0.1');
  /** @param {string} series */
  const scrape = async (series) => (await metric(metricsPort, series)) ?? 0;
  for (let i = 0; i < 20; i++) await get(b.port, '/');
  // Workers report every second: poll until the 20 requests are counted.
  t.true(await pollUntil(async () => (await scrape('baton_http_requests_total{code="200",protocol="http/1.1"}')) === 20, 5000));
  b.writeEnv({ MESSAGE: 'next' });
  t.is((await baton(b.dir, ['reload'])).code, 0);
  await b.waitForLog('generation retired');
  t.is(await scrape('baton_http_requests_total{code="200",protocol="http/1.1"}'), 20, 'the retired workers\' counts are kept');
  for (let i = 0; i < 5; i++) await get(b.port, '/');
  t.true(await pollUntil(async () => (await scrape('baton_http_requests_total{code="200",protocol="http/1.1"}')) === 25, 5000));
  t.is(await scrape('baton_reloads_total{outcome="success"}'), 1);
  t.is(await scrape('baton_generation'), 2);
  t.is(await scrape('baton_reload_duration_seconds_count'), 1);
  b.writeEnv({ WORKERS: 'x' });
  t.is((await baton(b.dir, ['reload'])).code, 78);
  t.is(await scrape('baton_reloads_total{outcome="rejected"}'), 1);
  t.is((await get(metricsPort, '/other')).status, 404);
});
