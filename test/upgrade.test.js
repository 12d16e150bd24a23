// @ts-check
// Upgrading the primary itself without closing the port: `baton upgrade`
// (and SIGUSR2) start a new primary from the code on disk that inherits the
// sockets, then the old one drains and exits. Failures roll back; an old
// primary killed mid-way leaves one primary or none, never two, never
// orphaned workers.
import test from 'ava';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendRequest } from '../dist/control.js';
import { FIXTURES, ROOT, pollUntil, processGroup, startBaton } from './helpers/baton.js';
import { get, getUnix, startLoad } from './helpers/http.js';

/** @param {string} cwd @param {string[]} args @returns {Promise<{ code: number, stdout: string, stderr: string }>} */
function cli(cwd, args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], { cwd, env: { PATH: process.env.PATH ?? '' }, timeout: 60000 },
      (err, stdout, stderr) => resolve({ code: err ? /** @type {any} */ (err).code : 0, stdout, stderr }));
  });
}

/** @param {string} dir */
async function status(dir) {
  const { response } = await sendRequest(join(dir, 'baton.sock'), { cmd: 'status' }, 3000);
  return /** @type {any} */ (response).status;
}

/** @param {number} pid */
const alive = (pid) => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};

test.serial('three baton upgrades under keep-alive + new-connection + slow load: 0 failed, a new primary each time, the old one and its workers gone, PID file, control socket and metrics with the new one, SIGHUP to it works, --node honoured', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'up', METRICS_PORT: '0' } });
  const before = await status(baton.dir);
  const metricsPort = before.metrics.port;
  // A Node "binary" that records it was used, then runs node.
  const bin = mkdtempSync(join(tmpdir(), 'baton-node-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  const wrapper = join(bin, 'node-wrapper');
  writeFileSync(wrapper, `#!/bin/sh\necho "$$ $*" >> ${join(bin, 'used')}\nexec "${process.execPath}" "$@"\n`);
  chmodSync(wrapper, 0o755);

  const load = startLoad(baton.port, { keepAlive: 16, newConn: 2, slow: 2, slowMs: 300 });
  /** @type {number[]} */
  const primaries = [baton.pid];
  /** @type {number[][]} */
  const workersOf = [before.workers.map((/** @type {any} */ w) => w.pid)];
  try {
    await load.waitForMore(300);
    for (let i = 1; i <= 3; i++) {
      const res = await cli(baton.dir, ['upgrade', ...(i === 2 ? ['--node', wrapper] : [])]);
      t.is(res.code, 0, res.stderr);
      const m = /^upgrade complete: primary (\d+) \(Node (v[\d.]+)\) serves/.exec(res.stdout);
      t.truthy(m, res.stdout);
      const pid = Number(m?.[1]);
      t.is(m?.[2], process.version);
      t.false(primaries.includes(pid), 'a new primary');
      const previous = /** @type {number} */ (primaries.at(-1));
      primaries.push(pid);
      t.true(await pollUntil(() => !alive(previous), 10000), `the old primary ${previous} exited`);
      t.true(await pollUntil(() => (/** @type {number[]} */ (workersOf.at(-1))).every((w) => !alive(w)), 10000), 'and its workers');
      const st = await status(baton.dir);
      t.is(st.pid, pid, 'the control socket reaches the new primary');
      t.deepEqual(st.upgradedFrom, { pid: previous, node: process.version });
      t.is(st.generation, i + 1, 'generations go on numbering');
      workersOf.push(st.workers.map((/** @type {any} */ w) => w.pid));
      t.is(Number(readFileSync(join(baton.dir, 'baton.pid'), 'utf8')), pid, 'the PID file names it');
      t.is((await get(metricsPort, '/metrics')).status, 200, 'metrics on the same port');
      await load.waitForMore(300);
    }
  } finally {
    await load.stop();
  }
  t.deepEqual(load.failures.slice(0, 5), []);
  t.is(load.counts.failed, 0);
  t.true(load.counts.byClient.newConn > 20 && load.counts.byClient.slow > 5, JSON.stringify(load.counts.byClient));
  t.regex(readFileSync(join(bin, 'used'), 'utf8'), /dist\/primary\.js/, '--node ran the new primary');

  const newest = /** @type {number} */ (primaries.at(-1));
  baton.writeEnv({ MESSAGE: 'reloaded after upgrades' });
  process.kill(newest, 'SIGHUP');
  t.true(await pollUntil(async () => (await get(baton.port, '/')).body === 'reloaded after upgrades\n', 10000), 'SIGHUP to the new primary reloads');
  process.kill(newest, 'SIGTERM');
  t.true(await pollUntil(() => processGroup(baton.pid).length === 0, 10000), 'nothing left');
  t.false(existsSync(join(baton.dir, 'baton.sock')));
  t.false(existsSync(join(baton.dir, 'baton.pid')));
});

// An old primary's workers accept from the shared socket until they read
// their drain: the reply to an upgrade waits until none of them can take a
// new connection, as `reload complete` does (see reload.test.js).
for (const dispatch of ['primary', 'shared']) {
  test(`DISPATCH=${dispatch}: from the reply to an upgrade on, every new connection is answered by the new primary's workers`, async (t) => {
    const baton = await startBaton({ t, env: { DISPATCH: dispatch, DRAIN_SPREAD_MS: '0' } });
    const load = startLoad(baton.port, { keepAlive: 8, newConn: 0, slow: 0 });
    let newest = baton.pid;
    try {
      await load.waitForMore(200);
      for (let i = 1; i <= 3; i++) {
        const { response } = await sendRequest(join(baton.dir, 'baton.sock'), { cmd: 'upgrade' }, 30000);
        const reply = /** @type {any} */ (response);
        t.true(reply.ok, JSON.stringify(reply));
        newest = reply.pid;
        const answers = await Promise.all(Array.from({ length: 8 }, () => get(baton.port, '/healthz')));
        const generations = answers.map((a) => JSON.parse(a.body).generation);
        t.deepEqual(generations, generations.map(() => i + 1), `upgrade ${i}: new connections after the reply`);
        await load.waitForMore(200);
      }
    } finally {
      await load.stop();
      try { process.kill(newest, 'SIGTERM'); } catch { /* gone */ }
    }
    t.is(load.counts.failed, 0, JSON.stringify(load.failures.slice(0, 3)));
    t.true(await pollUntil(() => processGroup(baton.pid).length === 0, 10000), 'nothing left');
  });
}

test('SIGUSR2 upgrades too; a reload asked during an upgrade is refused with a clear reason', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'slow-boot.mjs'), BOOT_MS: '100' } });
  // The new primary's workers take 4 s to boot: the upgrade is in progress
  // while both commands (each a Node start-up, slow on a busy machine) run.
  baton.writeEnv({ BOOT_MS: '4000' });
  const since = baton.logs.length;
  baton.signal('SIGUSR2');
  await baton.waitForLog('upgrade started: starting a new primary', { since });
  const [reload, second] = await Promise.all([cli(baton.dir, ['reload']), cli(baton.dir, ['upgrade'])]);
  t.false(baton.logs.slice(since).some((l) => l.msg === 'handed over to the new primary: exiting'), 'both came while it was in progress');
  t.is(reload.code, 1);
  t.regex(reload.stderr, /reload rejected: an upgrade of the primary is in progress/);
  t.is(second.code, 1);
  t.regex(second.stderr, /upgrade rejected: an upgrade is already in progress/);
  await baton.waitForLog('handed over to the new primary: exiting', { since, timeoutMs: 20000 });
  const st = await status(baton.dir);
  t.not(st.pid, baton.pid);
  process.kill(st.pid, 'SIGTERM');
  t.true(await pollUntil(() => processGroup(baton.pid).length === 0, 10000));
});

test('an upgrade whose new primary cannot boot is rolled back: invalid .env (exit 78), a worker that crashes on boot (exit 1); the old primary serves on, its socket files left in place', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'http.sock');
  const baton = await startBaton({ t, env: { MESSAGE: 'the old one', LISTEN: `127.0.0.1:0,unix:${sock}` } });
  baton.writeEnv({ WORKERS: 'lots' });
  const bad = await cli(baton.dir, ['upgrade']);
  t.is(bad.code, 78, bad.stderr);
  t.regex(bad.stderr, /upgrade rejected: invalid config: WORKERS .*must be a whole number/);
  t.is((await status(baton.dir)).pid, baton.pid);
  t.is((await get(baton.port, '/')).body, 'the old one\n');

  baton.writeEnv({ WORKERS: '2', APP_MODULE: join(FIXTURES, 'crashes-on-boot.mjs') });
  const crash = await cli(baton.dir, ['upgrade']);
  t.is(crash.code, 1, crash.stderr);
  t.regex(crash.stderr, /upgrade failed: .*database unreachable \(fixture crashes-on-boot\)/);
  t.is((await status(baton.dir)).pid, baton.pid);
  t.is((await get(baton.port, '/')).body, 'the old one\n');
  t.is(Number(readFileSync(join(baton.dir, 'baton.pid'), 'utf8')), baton.pid);
  // Only the old primary and its two workers are left.
  t.true(await pollUntil(() => processGroup(baton.pid).length === 3, 5000), `left: ${processGroup(baton.pid)}`);
  // The failed primary's exit removed none of the old one's socket files.
  t.is((await status(baton.dir)).pid, baton.pid);
  t.is((await getUnix(sock)).body, 'the old one\n');
});

test('the old primary SIGKILLed while the new one boots: the new one gives up, no primary and no worker is left', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'slow-boot.mjs'), BOOT_MS: '100' } });
  baton.writeEnv({ BOOT_MS: '3000' });
  const since = baton.logs.length;
  const upgrading = cli(baton.dir, ['upgrade']);
  const started = await baton.waitForLog((l) => l.msg === 'starting up' && l.pid !== baton.pid, { since });
  baton.signal('SIGKILL');
  await baton.waitForLog((l) => l.msg === 'the old primary is gone before this one served: giving up' && l.pid === started.pid, { since });
  t.true(await pollUntil(() => processGroup(baton.pid).length === 0, 10000), `left: ${processGroup(baton.pid)}`);
  t.not((await upgrading).code, 0);
});

test('the old primary SIGKILLed once the new one serves: the new one serves alone, with the control socket and PID file', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'survivor' } });
  const since = baton.logs.length;
  const upgrading = cli(baton.dir, ['upgrade']);
  const serving = await baton.waitForLog((l) => String(l.msg).startsWith('serving on the handed-over sockets'), { since });
  baton.signal('SIGKILL');
  t.true(await pollUntil(async () => (await status(baton.dir).catch(() => undefined))?.pid === serving.pid, 10000), 'the control socket reaches the new primary');
  t.is((await get(baton.port, '/')).body, 'survivor\n');
  t.is(Number(readFileSync(join(baton.dir, 'baton.pid'), 'utf8')), serving.pid);
  await upgrading;
  // Only the new primary and its workers.
  t.true(await pollUntil(() => processGroup(baton.pid).length === 3, 10000), `left: ${processGroup(baton.pid)}`);
  process.kill(/** @type {number} */ (serving.pid), 'SIGTERM');
  t.true(await pollUntil(() => processGroup(baton.pid).length === 0, 10000));
});
