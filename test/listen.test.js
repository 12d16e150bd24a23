// @ts-check
// Listening anywhere: LISTEN with TCP and Unix addresses at once, stale and
// live socket files, and systemd socket activation with the real
// systemd-socket-activate (it execs its command with LISTEN_FDS set).
import test from 'ava';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendRequest } from '../dist/control.js';
import { FIXTURES, PRIMARY, envText, pollUntil, processGroup, startBaton } from './helpers/baton.js';
import { get, getUnix } from './helpers/http.js';

const haveActivate = (() => {
  try {
    execFileSync('systemd-socket-activate', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();


/** A free TCP port on 127.0.0.1 (bound, then released). */
async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', () => r(undefined)));
  const port = /** @type {import('node:net').AddressInfo} */ (s.address()).port;
  await new Promise((r) => s.close(() => r(undefined)));
  return port;
}

/** @param {string} dir */
async function status(dir) {
  const { response } = await sendRequest(join(dir, 'baton.sock'), { cmd: 'status' }, 3000);
  return /** @type {any} */ (response).status;
}

test('LISTEN with a TCP address and a Unix socket at once: both answer, the socket has UNIX_SOCKET_MODE, ready and status list both', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'http.sock');
  const baton = await startBaton({ t, env: { LISTEN: `127.0.0.1:0,unix:${sock}`, UNIX_SOCKET_MODE: '0640', MESSAGE: 'both' } });
  t.is((await get(baton.port, '/')).body, 'both\n');
  t.is((await getUnix(sock)).body, 'both\n');
  t.is(statSync(sock).mode & 0o777, 0o640);
  const ready = await baton.waitForLog('ready');
  t.deepEqual(ready.listeners, [{ kind: 'tcp', host: '127.0.0.1', port: baton.port }, { kind: 'unix', path: sock }]);
  t.deepEqual((await status(baton.dir)).listeners, ready.listeners);
  // A reload keeps both; the workers see the TCP one as PORT.
  baton.writeEnv({ MESSAGE: 'again' });
  t.is((await baton.reload()).msg, 'reload complete');
  t.is((await getUnix(sock)).body, 'again\n');
  baton.writeEnv({ LISTEN: '127.0.0.1:0' });
  t.regex(String((await baton.reload()).msg), /^reload rejected: LISTEN cannot change on reload/);
  baton.signal('SIGTERM');
  t.is((await baton.waitExit()).code, 0);
  t.false(existsSync(sock), 'the socket file is removed at exit');
});

test('a stale Unix socket file (its server was killed) is replaced; a live one is refused with exit 4', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'http.sock');
  // A server killed with SIGKILL leaves its socket file behind.
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`], { stdio: 'ignore' });
  t.true(existsSync(sock), 'stale file in place');
  const baton = await startBaton({ t, env: { LISTEN: `unix:${sock}`, WORKERS: '1' } });
  t.is((await getUnix(sock, '/healthz')).status, 200);

  const second = await startBaton({ t, env: { LISTEN: `unix:${sock}`, WORKERS: '1' }, waitReady: false });
  t.is((await second.waitExit()).code, 4);
  t.truthy(second.logs.find((l) => l.level === 'fatal' && /cannot listen on unix:.*http\.sock: a live process answers on it/.test(String(l.msg))));
  t.is((await getUnix(sock, '/healthz')).status, 200, 'the first one still answers');
  baton.signal('SIGTERM');
  await baton.waitExit();
});

for (const dispatch of ['primary', 'shared']) (haveActivate ? test : test.skip)(`socket activation with systemd-socket-activate (DISPATCH=${dispatch}): served from the inherited socket, no bind, workers without LISTEN_*`, async (t) => {
  const port = await freePort();
  const baton = await startBaton({ t, wrap: ['systemd-socket-activate', '-l', `127.0.0.1:${port}`, '--fdname=web'], env: { PORT: '1', MESSAGE: 'activated', DISPATCH: dispatch }, waitReady: false });
  await baton.until(() => /Listening on 127\.0\.0\.1:\d+ as 3/.test(baton.stderr), 10000, () => 'systemd-socket-activate to listen');
  // The first connection starts baton; it waits in the kernel's queue meanwhile.
  const res = await get(port, '/');
  t.is(res.body, 'activated\n');
  const activated = await baton.waitForLog((l) => /^socket activation: serving 1 socket\(s\) systemd passed \(web\)/.test(String(l.msg)));
  t.deepEqual(activated.listeners, [{ kind: 'tcp', host: '127.0.0.1', port, name: 'web' }]);
  t.falsy(baton.logs.find((l) => /cannot listen on/.test(String(l.msg))), 'PORT=1 was never bound');
  const st = await status(baton.dir);
  for (const w of st.workers) {
    const env = readFileSync(`/proc/${w.pid}/environ`, 'utf8').split('\0');
    t.deepEqual(env.filter((e) => e.startsWith('LISTEN_')), [], `worker ${w.pid} has no LISTEN_* variables`);
  }
  baton.signal('SIGTERM');
  t.is((await baton.waitExit()).code, 0);
});

(haveActivate ? test : test.skip)('Accept=yes (a connection, not a listening socket) is refused with a clear message', async (t) => {
  const port = await freePort();
  const baton = await startBaton({ t, wrap: ['systemd-socket-activate', '--accept', '-l', `127.0.0.1:${port}`], waitReady: false });
  await baton.until(() => /Listening on/.test(baton.stderr), 10000, () => 'systemd-socket-activate to listen');
  // With --accept it forks a child per connection (it does not exec itself).
  const client = get(port, '/', { timeoutMs: 5000 }).catch((e) => e);
  await baton.until(() => /Child \d+ died with code 78/.test(baton.stderr), 10000, () => 'the activated baton to exit 78');
  // Its stdout is another pipe than the wrapper's stderr: the line may come after.
  const fatal = await baton.waitForLog((l) => l.level === 'fatal', { timeoutMs: 5000 });
  t.regex(String(fatal.msg), /baton needs a listening socket, Accept=no \(the default\) in its \.socket unit, not Accept=yes/, baton.dump());
  await client;
});

/**
 * A restart behind one inherited socket (restart-on-fd.mjs under
 * systemd-socket-activate) with 4 request loops throughout: all succeed.
 * @param {import('ava').ExecutionContext} t
 * @param {{ env: Record<string, string>, firstEnv?: Record<string, string> }} o
 */
async function restartBehindSocket(t, o) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'baton-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, '.env'), envText({ WORKERS: '2', MESSAGE: 'behind the socket', ...o.env }));
  const wrapper = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, '-E', 'RUN_MS=1500', '-E', `FIRST_BATON_ENV=${JSON.stringify(o.firstEnv ?? {})}`, process.execPath, join(FIXTURES, 'restart-on-fd.mjs'), PRIMARY], {
    cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' },
  });
  const pgid = /** @type {number} */ (wrapper.pid);
  t.teardown(() => { try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ } });
  let out = '';
  let err = '';
  // When each line came: a failure says which phase it fell in.
  let lastLine = { text: 'before', at: Date.now() };
  wrapper.stdout.setEncoding('utf8').on('data', (d) => { out += d; lastLine = { text: String(d).trim().split('\n').pop() ?? '', at: Date.now() }; });
  wrapper.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
  t.true(await pollUntil(() => /Listening on/.test(err), 10000), err);
  let ok = 0;
  /** @type {string[]} */
  const failures = [];
  let running = true;
  const loops = Array.from({ length: 4 }, async () => {
    while (running) {
      try {
        const res = await get(port, '/', { timeoutMs: 15000 });
        if (res.status === 200 && res.body === 'behind the socket\n') ok++;
        else failures.push(`status ${res.status}`);
      } catch (e) { failures.push(`${/** @type {any} */ (e).code ?? e} at ${new Date().toISOString()}, ${Date.now() - lastLine.at} ms after "${lastLine.text}"`); }
    }
  });
  t.true(await pollUntil(() => out.includes('done'), 20000), `wrapper said: ${out}\n${err}`);
  running = false;
  await Promise.all(loops);
  // The wrapper's (the socket's) pid is the one systemd-socket-activate exec'd into.
  process.kill(pgid, 'SIGUSR1');
  t.regex(out, /started \d+\nstopped \d+ 0\nstarted \d+\ndone/, 'two batons, the first exited 0');
  t.deepEqual(failures.slice(0, 5), [], `${failures.length} failed of ${ok + failures.length}: ${out}\nbaton's log, last lines:\n${err.split('\n').slice(-60).join('\n')}`);
  t.log(`answered ${ok}`);
  // The loops ran (how many answers depends on the machine's load).
  t.true(ok >= 8, `answered ${ok}`);
  t.true(await pollUntil(() => processGroup(pgid).length === 0, 10000), 'everything exited');
}

(haveActivate ? test : test.skip)('a restart behind one inherited socket (as with a .socket unit): baton stopped and started again on the same fd, requests throughout all succeed', async (t) => {
  await restartBehindSocket(t, { env: {} });
});

(haveActivate ? test : test.skip)('a baton stopped behind an inherited socket before its workers were ready leaves the queued connections to the next one: all answered', async (t) => {
  // The first baton's workers take 4 s to boot; it is stopped after 1.5 s.
  await restartBehindSocket(t, { env: { APP_MODULE: join(FIXTURES, 'slow-boot.mjs'), BOOT_MS: '100' }, firstEnv: { BOOT_MS: '4000' } });
});

// The same with one worker of the first baton ready long before the other:
// the primary still counts it as booting, and kills it at the stop. With
// DISPATCH=shared it must not have accepted anything by then (it gets the
// socket to accept on only once its generation serves).
(haveActivate ? test : test.skip)('a baton stopped behind an inherited socket while one worker is ready and the other still boots loses nothing', async (t) => {
  await restartBehindSocket(t, { env: { APP_MODULE: join(FIXTURES, 'slow-boot.mjs'), BOOT_MS: '100', BOOT_MS_WORKER_1: '100' }, firstEnv: { BOOT_MS: '4000' } });
});
