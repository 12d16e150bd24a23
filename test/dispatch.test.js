// @ts-check
// How connections reach workers: one whose event loop is busy (a CPU-heavy
// request) does not hold up new connections while another worker is free.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import { join } from 'node:path';
import { FIXTURES, pollUntil, startBaton } from './helpers/baton.js';
import { get, metric } from './helpers/http.js';

for (const dispatch of ['primary', 'shared']) {
  test(`DISPATCH=${dispatch}: while one worker's event loop is busy, new connections are answered by the other (at most one waits for the busy one)`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-block-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const mark = join(dir, 'blocking');
    const baton = await startBaton({ t, env: { DISPATCH: dispatch, APP_MODULE: join(FIXTURES, 'blocks-event-loop.mjs'), BLOCK_MARK_FILE: mark } });
    const ready = await baton.waitForLog('ready');
    const pids = /** @type {number[]} */ (ready.workers);
    let blockDone = false;
    const block = get(baton.port, '/block?ms=4000').then((res) => { blockDone = true; return Number(res.body); });
    // Its loop is busy from here on: it can take no connection until it ends.
    t.true(await pollUntil(() => existsSync(mark), 5000), 'the /block request reached a worker');
    const blocking = Number(readFileSync(mark, 'utf8'));
    /** @type {{ pid: number, beforeBlockEnded: boolean }[]} */
    const answers = [];
    const requests = Array.from({ length: 8 }, () => get(baton.port, '/').then((res) => {
      answers.push({ pid: Number(res.body), beforeBlockEnded: !blockDone });
    }));
    await Promise.all(requests);
    const blocked = await block;
    t.is(blocked, blocking);
    t.true(pids.includes(blocked));
    const early = answers.filter((a) => a.beforeBlockEnded);
    t.log(`answered while the other worker was busy: ${early.length} of 8`);
    t.true(early.length >= 7, `answered while one worker was busy: ${early.length} of 8`);
    t.true(early.every((a) => a.pid !== blocked));
  });
}

// Keep-alive connections stay where they land: a burst opened at once must
// not all land on the worker whose event loop ran first (with a shared
// accept queue it drains the whole queue; measured before the balance:
// 32 / 0 in 2 of 5 rounds). How even the split is depends on which worker
// the scheduler runs (on a loaded machine the primary mode too went 6 / 26,
// handing each to whichever takes its last first): that is measured by
// the bench's balance scenario. What the design guarantees is that each
// worker gets some: the primary hands the first ones out round-robin, and a
// shared-queue worker forwards once it holds more than its idle peer.
for (const dispatch of ['primary', 'shared']) {
  test(`DISPATCH=${dispatch}: 32 keep-alive connections opened at once are spread over both workers`, async (t) => {
    const baton = await startBaton({ t, env: { DISPATCH: dispatch, APP_MODULE: join(FIXTURES, 'blocks-event-loop.mjs') } });
    const ready = await baton.waitForLog('ready');
    const pids = /** @type {number[]} */ (ready.workers);
    // Both workers have answered since they were told of each other (the
    // primary tells them as the generation becomes ready).
    const seen = new Set();
    t.true(await pollUntil(async () => { seen.add(Number((await get(baton.port, '/')).body)); return pids.every((p) => seen.has(p)); }, 5000), 'both workers answer');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    t.teardown(() => agent.destroy());
    /** @type {import('node:net').Socket[]} */
    const sockets = [];
    const answers = await Promise.all(Array.from({ length: 32 }, () => new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: baton.port, path: '/', agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { body += c; });
        res.on('end', () => resolve(Number(body)));
      });
      req.on('socket', (s) => sockets.push(s));
      req.on('error', reject);
    })));
    t.is(new Set(sockets).size, 32, 'each request had its own connection');
    const split = pids.map((pid) => answers.filter((p) => p === pid).length);
    t.log(`split over the workers: ${split.join(' / ')}`);
    t.is(split.reduce((a, b) => a + b, 0), 32, 'every answer came from a worker of the generation');
    t.true(split.every((n) => n > 0), `each worker holds some: ${split.join(' / ')}`);
  });
}

// DISPATCH=shared at a cold start: Node cannot listen without accepting, so
// the primary accepts until the first worker hands back a copy of the
// socket it can hold unpolled. The port must answer from the 'listening'
// line on, and the primary must leave accepting to the workers after that.
test('DISPATCH=shared: the port answers from the listening line on; once a worker has the socket the primary accepts none itself', async (t) => {
  const baton = await startBaton({ t, env: { DISPATCH: 'shared', METRICS_PORT: '0' }, waitReady: false });
  const listening = await baton.waitForLog('listening');
  const port = /** @type {number} */ (listening.port);
  const early = await Promise.all(Array.from({ length: 10 }, () => get(port, '/healthz')));
  t.deepEqual(early.map((r) => r.status), Array(10).fill(200), 'sent before any worker was ready: all answered');
  await baton.waitForLog('ready');
  const metricsPort = /** @type {{ port: number }} */ (await baton.waitForLog('metrics at /metrics')).port;
  const dispatched = async () => Number(await metric(metricsPort, 'baton_connections_dispatched_total'));
  const before = await dispatched();
  for (let i = 0; i < 100; i++) t.is((await get(port, '/healthz')).status, 200);
  const handed = (await dispatched()) - before;
  t.log(`handed over by the primary: ${before} before the workers were ready, ${handed} of the next 100`);
  // An idle primary still polling would win most accepts (its loop is free);
  // a worker forwards one now and then when its count lags a close.
  t.true(handed <= 5, `the primary handed ${handed} of 100 sequential connections`);
});
