// @ts-check
// SIGHUP: the rolling reload, seen from outside as a user would.
import test from 'ava';
import { FIXTURES, pollUntil, startBaton } from './helpers/baton.js';
import { get, startLoad, waitInFlight } from './helpers/http.js';
import { join } from 'node:path';

test('GET / answers MESSAGE; SIGHUP after editing .env changes it and retires the old workers', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'Before hot reload' } });
  const ready = await baton.waitForLog('ready');
  t.is(ready.generation, 1);
  t.is(/** @type {number[]} */ (ready.workers).length, 2);
  t.is((await get(baton.port, '/')).body, 'Before hot reload\n');

  const health = JSON.parse((await get(baton.port, '/healthz')).body);
  t.like(health, { generation: 1, configVersion: 1, status: 'ok' });
  t.is((await get(baton.port, '/nope')).status, 404);

  baton.writeEnv({ MESSAGE: 'After hot reload' });
  const outcome = await baton.reload();
  t.is(outcome.msg, 'reload complete');
  t.is(outcome.generation, 2);
  t.is((await get(baton.port, '/')).body, 'After hot reload\n');
  t.like(JSON.parse((await get(baton.port, '/healthz')).body), { generation: 2, configVersion: 2 });

  const oldPids = /** @type {number[]} */ (ready.workers);
  await baton.waitForLog((l) => l.msg === 'generation retired' && l.retiredGeneration === 1);
  t.true(await pollUntil(() => oldPids.every((p) => !baton.groupPids().includes(p)), 5000), 'old workers gone');
  t.is(baton.groupPids().length, 3, 'primary + 2 workers');
});

test('a /slow request in flight across SIGHUP completes with 200 from the old generation', async (t) => {
  // The request outlasts any reload that completes (READY_TIMEOUT_MS is
  // 10 s here), so it is still in flight when the old worker drains: a
  // 1.5 s one was over once when a loaded machine took 1.7 s to reload.
  // The drain deadline is above it.
  const baton = await startBaton({ t, env: { WORKERS: '1', DRAIN_TIMEOUT_MS: '30000' } });
  const slow = get(baton.port, '/slow?ms=11000');
  await waitInFlight(baton.port, 1);
  baton.writeEnv({ MESSAGE: 'new' });
  const since = baton.logs.length;
  baton.signal('SIGHUP');
  const draining = await baton.waitForLog((l) => l.msg === 'draining' && l.generation === 1 && l.inFlight === 1, { since });
  t.is(draining.reason, 'reload');
  const res = await slow;
  t.is(res.status, 200);
  t.is(res.body, 'slept 11000 ms in generation 1\n');
  t.is(res.headers.connection, 'close', 'a draining worker closes the connection after answering');
  t.is((await get(baton.port, '/')).body, 'new\n');
});

test('invalid .env on SIGHUP: rejected naming the key, old generation keeps serving, a later valid SIGHUP works', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'v1' } });
  baton.writeEnv({ WORKERS: 'lots', MESSAGE: 'v2' });
  const rejected = await baton.reload();
  t.regex(String(rejected.msg), /^reload rejected: WORKERS .*must be a whole number/);
  t.is((await get(baton.port, '/')).body, 'v1\n');
  t.like(JSON.parse((await get(baton.port, '/healthz')).body), { generation: 1 });

  baton.writeEnv({ WORKERS: '2' });
  const ok = await baton.reload();
  t.is(ok.msg, 'reload complete');
  t.is((await get(baton.port, '/')).body, 'v2\n');
});

test('changing PORT on reload is refused with a clear message', async (t) => {
  const baton = await startBaton({ t });
  baton.writeEnv({ PORT: '1' });
  const rejected = await baton.reload();
  t.regex(String(rejected.msg), /^reload rejected: PORT cannot change on reload/);
  t.is((await get(baton.port, '/')).status, 200);
});

test('a new generation that crashes on boot is rolled back; the old one keeps serving', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'old' } });
  const ready = await baton.waitForLog('ready');
  baton.writeEnv({ APP_MODULE: join(FIXTURES, 'crashes-on-boot.mjs'), MESSAGE: 'new' });
  const failed = await baton.reload();
  t.regex(String(failed.msg), /^reload failed: database unreachable \(fixture crashes-on-boot\); generation 1 keeps serving/);
  t.is((await get(baton.port, '/')).body, 'old\n');
  t.deepEqual(baton.groupPids().filter((p) => p !== baton.pid).sort(), /** @type {number[]} */ (ready.workers).slice().sort());
});

test('a new generation not ready within READY_TIMEOUT_MS is killed and rolled back', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'old' } });
  baton.writeEnv({ APP_MODULE: join(FIXTURES, 'never-ready.mjs'), READY_TIMEOUT_MS: '500' });
  const failed = await baton.reload();
  t.regex(String(failed.msg), /^reload failed: worker \d+ not ready within 500 ms/);
  t.is((await get(baton.port, '/')).body, 'old\n');
});

test('a request that never ends is closed by its worker just before DRAIN_TIMEOUT_MS; the worker says so and exits', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'ignores-drain.mjs'), DRAIN_TIMEOUT_MS: '600', WORKERS: '1' } });
  const ready = await baton.waitForLog('ready');
  const oldPid = /** @type {number[]} */ (ready.workers)[0];
  const hang = get(baton.port, '/hang').catch((err) => err);
  await waitInFlight(baton.port, 1);
  const outcome = await baton.reload();
  t.is(outcome.msg, 'reload complete');
  const closed = await baton.waitForLog((l) => l.msg === 'closed 1 connections still open at the drain deadline' && l.pid === oldPid);
  t.is(closed.closed, 1);
  const exit = await baton.waitForLog((l) => l.msg === 'worker exited' && l.workerPid === oldPid);
  t.deepEqual([exit.code, exit.signal], [0, null], 'it exited by itself, before the SIGKILL');
  t.falsy(baton.logs.find((l) => l.msg === 'worker did not drain in time; killing it'));
  t.is((await hang)?.code, 'ECONNRESET', 'the hanging request ends when its worker closes it');
});

test('a worker stuck while draining is killed at DRAIN_TIMEOUT_MS with a warning naming it', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'ignores-drain.mjs'), DRAIN_TIMEOUT_MS: '600', WORKERS: '1', STUCK_ON_DRAIN: '1' } });
  const ready = await baton.waitForLog('ready');
  const outcome = await baton.reload();
  t.is(outcome.msg, 'reload complete');
  const warn = await baton.waitForLog('worker did not drain in time; killing it');
  t.is(warn.workerPid, /** @type {number[]} */ (ready.workers)[0]);
  const exit = await baton.waitForLog((l) => l.msg === 'worker exited' && l.workerPid === warn.workerPid);
  t.is(exit.signal, 'SIGKILL');
});

test('a burst of 20 SIGHUPs ends in one or two reloads with the newest config', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'v0' } });
  const since = baton.logs.length;
  for (let i = 1; i <= 20; i++) {
    baton.writeEnv({ MESSAGE: `v${i}` });
    baton.signal('SIGHUP');
  }
  const lastSignalAt = Date.now();
  // The kernel may merge signals that arrive before the primary handles them;
  // whatever is seen runs at most one reload plus one queued, and the last
  // one reads the newest file.
  await pollUntil(async () => (await get(baton.port, '/')).body === 'v20\n', 10000);
  const health = JSON.parse((await get(baton.port, '/healthz')).body);
  // A queued reload starts in the same tick the previous one completes, and
  // both are logged before the previous generation is retired.
  await baton.waitForLog((l) => l.msg === 'generation retired' && l.retiredGeneration === health.generation - 1, { since });
  const count = (/** @type {string} */ msg) => baton.logs.slice(since).filter((l) => l.msg === msg).length;
  t.true(count('reload requested') >= 1);
  const started = count('reload started');
  // One reload plus one queued: two, unless this process was descheduled
  // mid-burst for longer than a reload (a busy machine), when each reload
  // that completed before the last signal may have started one more.
  const completedDuringBurst = baton.logs.slice(since).filter((l) => l.msg === 'reload complete' && Date.parse(l.time) <= lastSignalAt).length;
  t.true(started >= 1 && started <= 2 + completedDuringBurst, `started ${started} reloads, ${completedDuringBurst} completed during the burst`);
  t.is(count('reload complete'), started);
  t.is((await get(baton.port, '/')).body, 'v20\n');
});

test('a draining worker spreads its keep-alive clients\' reconnects over DRAIN_SPREAD_MS instead of closing them all at once', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1', DRAIN_SPREAD_MS: '1500' } });
  const { Client } = await import('undici');
  // 8 keep-alive connections, each asking in a loop, each noting when the
  // old generation first answered it with Connection: close.
  const clients = Array.from({ length: 8 }, () => new Client(`http://127.0.0.1:${baton.port}`));
  t.teardown(() => Promise.all(clients.map((c) => c.destroy())));
  let signalAt = 0;
  let running = true;
  /** @type {number[]} */
  const closedAfter = [];
  let failed = 0;
  const answered = clients.map(() => 0);
  const loops = clients.map(async (client, i) => {
    let noted = false;
    while (running) {
      try {
        const res = await client.request({ path: '/healthz', method: 'GET' });
        const body = await res.body.json();
        answered[i]++;
        if (!noted && signalAt > 0 && body.generation === 1 && res.headers.connection === 'close') {
          noted = true;
          closedAfter.push(Date.now() - signalAt);
        }
      } catch { failed++; }
    }
  });
  t.true(await pollUntil(() => answered.every((n) => n > 0), 5000), 'every connection is open and serving');
  const since = baton.logs.length;
  signalAt = Date.now();
  baton.signal('SIGHUP');
  await baton.waitForLog((l) => l.msg === 'generation retired' && l.retiredGeneration === 1, { since });
  running = false;
  await Promise.all(loops);
  t.is(failed, 0);
  t.is(closedAfter.length, 8, 'every connection was asked to reconnect');
  closedAfter.sort((a, b) => a - b);
  t.true(/** @type {number} */ (closedAfter.at(-1)) - /** @type {number} */ (closedAfter[0]) > 300, `spread: ${closedAfter.join(', ')} ms after the signal`);
  // The spread starts with the drain (the new generation ready), not with the
  // signal: how long the boot took before it varies with the machine's load.
  const drainAt = Date.parse(String((await baton.waitForLog('reload complete', { since })).time)) - signalAt;
  const sinceDrain = closedAfter.map((ms) => ms - drainAt);
  t.true(/** @type {number} */ (sinceDrain.at(-1)) < 1500 + 500, `within the spread after the drain began: ${sinceDrain.join(', ')} ms`);
});

// The switch is one instant: once `reload complete` is logged, no old worker
// takes a new connection. With DISPATCH=shared the old workers accept from
// the shared socket until they read their drain, so the reload completes
// only once each says it stopped (a keep-alive load keeps them busy, which
// widens that window).
for (const dispatch of ['primary', 'shared']) {
  test(`DISPATCH=${dispatch}: from 'reload complete' on, every new connection is answered by the new generation`, async (t) => {
    const baton = await startBaton({ t, env: { DISPATCH: dispatch, DRAIN_SPREAD_MS: '0' } });
    const load = startLoad(baton.port, { keepAlive: 8, newConn: 0, slow: 0 });
    try {
      await load.waitForMore(200);
      for (let i = 0; i < 6; i++) {
        const outcome = await baton.reload();
        t.is(outcome.msg, 'reload complete');
        const answers = await Promise.all(Array.from({ length: 8 }, () => get(baton.port, '/healthz')));
        const generations = answers.map((a) => JSON.parse(a.body).generation);
        t.deepEqual(generations, generations.map(() => outcome.generation), `reload ${i + 1}: new connections after reload complete`);
      }
    } finally {
      await load.stop();
    }
    t.is(load.counts.failed, 0, JSON.stringify(load.failures.slice(0, 3)));
  });
}
