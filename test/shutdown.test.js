// @ts-check
// SIGTERM, SIGINT and SIGQUIT: ordered shutdown. In-flight requests finish,
// the primary exits 0, and no process of its group is left.
import test from 'ava';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { FIXTURES, pollUntil, startBaton } from './helpers/baton.js';
import { get, waitInFlight } from './helpers/http.js';

for (const sig of /** @type {const} */ (['SIGTERM', 'SIGINT', 'SIGQUIT'])) {
  test(`${sig} with a /slow request in flight: it completes, exit 0, nothing left`, async (t) => {
    const baton = await startBaton({ t, env: { WORKERS: '1' } });
    const slow = get(baton.port, '/slow?ms=1000');
    await waitInFlight(baton.port, 1);
    baton.signal(sig);
    const res = await slow;
    t.is(res.status, 200);
    t.is(res.body, 'slept 1000 ms in generation 1\n');
    t.is(res.headers.connection, 'close');
    const exit = await baton.waitExit();
    t.deepEqual(exit, { code: 0, signal: null });
    t.truthy(baton.logs.find((l) => l.msg === 'shutdown started' && l.source === sig));
    t.truthy(baton.logs.find((l) => l.msg === 'shutdown complete' && l.exitCode === 0));
    t.true(await pollUntil(() => baton.groupPids().length === 0, 2000), `left: ${baton.groupPids()}`);
  });
}

test('shutdown stops accepting: a new connection after SIGTERM is refused', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1' } });
  const slow = get(baton.port, '/slow?ms=1000');
  await waitInFlight(baton.port, 1);
  const since = baton.logs.length;
  baton.signal('SIGTERM');
  // The port stays open for the sweep that accepts what was queued (at most 250 ms).
  const stopped = await baton.waitForLog('stopped accepting new connections', { since });
  t.true(/** @type {number} */ (stopped.sweepMs) <= 300, `sweep took ${stopped.sweepMs} ms`);
  const err = await get(baton.port, '/').then(() => undefined, (e) => e);
  t.is(err?.code, 'ECONNREFUSED');
  t.is((await slow).status, 200);
  t.is((await baton.waitExit()).code, 0);
});

test('shutdown with idle keep-alive connections keeps them SHUTDOWN_IDLE_CLOSE_MS for one more request, answered with Connection: close, not for their whole keep-alive timeout', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '2', KEEP_ALIVE_TIMEOUT_MS: '60000', SHUTDOWN_IDLE_CLOSE_MS: '1500' } });
  const { Client } = await import('undici');
  const clients = Array.from({ length: 8 }, () => new Client(`http://127.0.0.1:${baton.port}`));
  t.teardown(() => Promise.all(clients.map((c) => c.destroy())));
  for (const c of clients) await (await c.request({ path: '/', method: 'GET' })).body.text();
  const since = baton.logs.length;
  baton.signal('SIGTERM');
  // Both workers have begun to drain (after the shutdown's accept sweep).
  await baton.until(() => baton.logs.slice(since).filter((l) => l.msg === 'draining' && l.reason === 'shutdown').length >= 2, 10000, () => 'both workers draining');
  // An idle connection that sends one more request during the shutdown: answered, then closed.
  const late = await clients[0]?.request({ path: '/', method: 'GET' });
  t.is(late?.statusCode, 200);
  t.is(late?.headers.connection, 'close');
  await late?.body.text();
  const exit = await baton.waitExit(10000);
  t.is(exit.code, 0);
  const done = await baton.waitForLog('shutdown complete', { since });
  t.true(/** @type {number} */ (done.durationMs) >= 1200 && /** @type {number} */ (done.durationMs) < 4000, `took ${done.durationMs} ms`);
});

test('shutdown with nothing connected is immediate', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '2', SHUTDOWN_IDLE_CLOSE_MS: '5000' } });
  const since = baton.logs.length;
  baton.signal('SIGTERM');
  t.is((await baton.waitExit(5000)).code, 0);
  const done = await baton.waitForLog('shutdown complete', { since });
  t.true(/** @type {number} */ (done.durationMs) < 1000, `took ${done.durationMs} ms`);
});

test('a second SIGINT forces: workers are killed, exit 1', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1' } });
  const slow = get(baton.port, '/slow?ms=30000').then(() => 'answered', (e) => e.code);
  await waitInFlight(baton.port, 1);
  const since = baton.logs.length;
  baton.signal('SIGINT');
  await baton.waitForLog('shutdown started', { since });
  baton.signal('SIGINT');
  const exit = await baton.waitExit(5000);
  t.is(exit.code, 1);
  t.truthy(baton.logs.find((l) => l.msg === 'forced shutdown: killing workers'));
  t.is(await slow, 'ECONNRESET');
  t.true(await pollUntil(() => baton.groupPids().length === 0, 2000));
});

test('past DRAIN_TIMEOUT_MS the shutdown closes what is left and exits 1', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1', APP_MODULE: join(FIXTURES, 'ignores-drain.mjs'), DRAIN_TIMEOUT_MS: '500' } });
  void get(baton.port, '/hang').catch(() => {});
  await waitInFlight(baton.port, 1);
  baton.signal('SIGTERM');
  const exit = await baton.waitExit(5000);
  t.is(exit.code, 1);
  t.truthy(baton.logs.find((l) => l.msg === 'worker closed 1 connections still open at the drain deadline'));
  t.truthy(baton.logs.find((l) => l.msg === 'shutdown complete with errors' && l.exitCode === 1));
});

test('a worker stuck during a shutdown is killed at DRAIN_TIMEOUT_MS: exit 1', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1', APP_MODULE: join(FIXTURES, 'ignores-drain.mjs'), DRAIN_TIMEOUT_MS: '500', STUCK_ON_DRAIN: '1' } });
  baton.signal('SIGTERM');
  const exit = await baton.waitExit(5000);
  t.is(exit.code, 1);
  t.truthy(baton.logs.find((l) => l.msg === 'worker did not drain in time; killing it'));
  t.truthy(baton.logs.find((l) => l.msg === 'shutdown complete with errors' && l.exitCode === 1));
});

test('SIGTERM in the middle of a reload abandons it and shuts down cleanly', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'slow-boot.mjs'), BOOT_MS: '100' } });
  baton.writeEnv({ BOOT_MS: '5000', MESSAGE: 'never served' });
  const since = baton.logs.length;
  baton.signal('SIGHUP');
  await baton.waitForLog('reload started', { since });
  baton.signal('SIGTERM');
  const exit = await baton.waitExit(5000);
  t.is(exit.code, 0);
  t.truthy(baton.logs.find((l) => l.msg === 'reload abandoned: shutting down'));
  t.falsy(baton.logs.find((l) => l.msg === 'reload complete'));
  t.true(await pollUntil(() => baton.groupPids().length === 0, 2000));
});

test('Ctrl+C to the whole process group: workers ignore it, the request in flight completes, exit 0', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1' } });
  const slow = get(baton.port, '/slow?ms=800');
  await waitInFlight(baton.port, 1);
  // Ctrl+C in a terminal sends SIGINT to every process of the foreground group.
  baton.signalGroup('SIGINT');
  const res = await slow;
  t.is(res.status, 200);
  t.is((await baton.waitExit()).code, 0);
  t.falsy(baton.logs.find((l) => l.msg === 'worker exited unexpectedly'));
});

/**
 * A POST on a new connection: 200, or how it failed ('refused': never sent,
 * a proxy retries it elsewhere; 'reset': cut after it was sent, a proxy
 * answers 502, as it cannot know whether it ran).
 * @param {number} port @returns {Promise<string>}
 */
function postOnNewConnection(port) {
  return new Promise((resolve) => {
    const body = 'x'.repeat(512);
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers: { 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
      res.on('error', () => resolve('reset'));
    });
    req.on('error', (/** @type {NodeJS.ErrnoException} */ err) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : err.code === 'ECONNRESET' ? 'reset' : String(err.code ?? err.message)));
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

for (const dispatch of ['primary', 'shared']) {
  test(`DISPATCH=${dispatch}: connections queued while ${dispatch === 'primary' ? 'the primary was' : 'the workers were'} busy when SIGTERM came are answered, not reset by the closing port`, async (t) => {
    // Closing a listening socket resets the connections queued on it, whose
    // clients have sent their request already (nginx answers such a POST
    // with 502). What accepts (the primary, or with a shared queue the
    // workers) is stopped (SIGSTOP) while clients connect and send, so that
    // they wait in the kernel's queue, then SIGTERM and SIGCONT: the
    // shutdown must accept them before it closes the port.
    const baton = await startBaton({ t, args: [join(FIXTURES, 'apps', 'echo-post.mjs')], env: { WORKERS: '2', DISPATCH: dispatch } });
    const ready = await baton.waitForLog('ready');
    const acceptors = dispatch === 'primary' ? [baton.pid] : /** @type {number[]} */ (ready.workers);
    t.is(await postOnNewConnection(baton.port), '200');
    for (const pid of acceptors) process.kill(pid, 'SIGSTOP');
    t.teardown(() => { for (const pid of acceptors) { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } } });
    const posts = Array.from({ length: 20 }, () => postOnNewConnection(baton.port));
    // Connected and sent: the kernel completed the handshakes; check it holds them.
    t.true(await pollUntil(() => acceptQueue(baton.port) >= 20, 5000), `queued: ${acceptQueue(baton.port)}`);
    process.kill(baton.pid, 'SIGTERM');
    for (const pid of acceptors) process.kill(pid, 'SIGCONT');
    const outcomes = await Promise.all(posts);
    t.deepEqual(outcomes, outcomes.map(() => '200'), outcomes.join(' '));
    t.deepEqual(await baton.waitExit(), { code: 0, signal: null });
    t.is(await postOnNewConnection(baton.port), 'refused');
  });
}

/** Connections waiting in the accept queue of 127.0.0.1:port (Recv-Q of its LISTEN socket in /proc/net/tcp). @param {number} port */
function acceptQueue(port) {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // f[1] local address, f[3] state (0A: LISTEN), f[4] tx_queue:rx_queue
    if (f[1] === hex && f[3] === '0A') return parseInt(String(f[4]).split(':')[1], 16);
  }
  return 0;
}
