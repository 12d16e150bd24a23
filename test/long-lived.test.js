// @ts-check
// Long-lived connections drain as well as short requests: WebSockets (ws,
// socket.io) and event streams hear, each at its own moment spread over
// DRAIN_SPREAD_UPGRADED_MS, that their connection should go; the app closes
// them cleanly and the clients reconnect to the new generation. An app that
// never closes them still loses its old worker by DRAIN_TIMEOUT_MS.
import test from 'ava';
import http from 'node:http';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { FIXTURES, pollUntil, startBaton } from './helpers/baton.js';
import { get, startLoad } from './helpers/http.js';

const APPS = join(FIXTURES, 'apps');

/**
 * A WebSocket client that reconnects whenever it is closed, and records each
 * close (code, time) and the last answer.
 * @param {number} port
 */
function reconnectingClient(port) {
  const c = {
    /** @type {{ code: number, at: number }[]} */ closes: [],
    last: '',
    errors: 0,
    stopped: false,
    /** @type {WebSocket | undefined} */ ws: undefined,
    open() {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      c.ws = ws;
      ws.on('open', () => ws.send('ping'));
      ws.on('message', (data) => { c.last = String(data); });
      ws.on('error', () => { c.errors++; });
      ws.on('close', (code) => {
        c.closes.push({ code, at: Date.now() });
        if (!c.stopped) setTimeout(() => c.open(), 10);
      });
    },
    stop() {
      c.stopped = true;
      c.ws?.terminate();
    },
  };
  c.open();
  return c;
}

test.serial('50 WebSockets through 3 reloads: each gets the app\'s close frame, spread over the window, and reconnects to the new generation; HTTP load alongside loses nothing', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'ws.mjs'), GREETING: 'g0', DRAIN_SPREAD_UPGRADED_MS: '1500' } });
  const clients = Array.from({ length: 50 }, () => reconnectingClient(baton.port));
  t.teardown(() => clients.forEach((c) => c.stop()));
  t.true(await pollUntil(() => clients.every((c) => c.last === 'g0 ping'), 10000), 'all 50 connected and answered');
  const load = startLoad(baton.port, { keepAlive: 8, newConn: 2, slow: 0 });
  try {
    for (let i = 1; i <= 3; i++) {
      const closesBefore = clients.map((c) => c.closes.length);
      baton.writeEnv({ GREETING: `g${i}` });
      const reloadAt = Date.now();
      t.is((await baton.reload()).msg, 'reload complete');
      t.true(await pollUntil(() => clients.every((c) => c.last === `g${i} ping`), 10000), `reload ${i}: every client reconnected to the new generation`);
      const closes = clients.flatMap((c, k) => c.closes.slice(closesBefore[k]));
      t.is(closes.length, 50, `reload ${i}: one close per client`);
      t.deepEqual([...new Set(closes.map((x) => x.code))], [1012], 'the app\'s close code, never 1006 (a bare TCP reset)');
      // The window opens when the old generation's workers start to drain
      // (the boot before it takes longer on a busy machine).
      const drains = baton.logs.filter((l) => l.msg === 'draining' && l.generation === i).map((l) => Date.parse(String(l.time)));
      t.true(drains.length > 0, `reload ${i}: the old workers logged their drain`);
      const drainAt = Math.min(...drains);
      const after = closes.map((x) => x.at - drainAt).sort((a, b) => a - b);
      const spread = /** @type {number} */ (after.at(-1)) - /** @type {number} */ (after[0]);
      t.true(spread > 600, `reload ${i}: closes spread over ${spread} ms`);
      t.true(/** @type {number} */ (after.at(-1)) < 1500 + 1000, `reload ${i}: all within the window: ${after.at(-1)} ms after the drain began (${drainAt - reloadAt} ms after the signal)`);
    }
  } finally {
    await load.stop();
  }
  t.is(load.counts.failed, 0, JSON.stringify(load.failures.slice(0, 3)));
  t.true(load.counts.ok > 100);
  t.is(clients.reduce((n, c) => n + c.errors, 0), 0);
});

test('an app with no drain hook: its old worker closes the WebSockets itself just before DRAIN_TIMEOUT_MS, says how many, and exits', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'ws.mjs'), DRAIN_HOOK: '0', DRAIN_TIMEOUT_MS: '1500', WORKERS: '1' } });
  const ready = await baton.waitForLog('ready');
  const oldPid = /** @type {number[]} */ (ready.workers)[0];
  const clients = Array.from({ length: 10 }, () => reconnectingClient(baton.port));
  t.teardown(() => clients.forEach((c) => c.stop()));
  t.true(await pollUntil(() => clients.every((c) => c.last === 'hello ping'), 10000));
  const since = baton.logs.length;
  const reloadAt = Date.now();
  t.is((await baton.reload()).msg, 'reload complete');
  const draining = await baton.waitForLog((l) => l.msg === 'draining' && l.pid === oldPid, { since });
  t.is(draining.longLived, 10, 'the draining line says how many long-lived connections it holds');
  const closed = await baton.waitForLog((l) => /^closed \d+ connections still open at the drain deadline$/.test(String(l.msg)) && l.pid === oldPid, { since });
  t.is(closed.closed, 10);
  const exit = await baton.waitForLog((l) => l.msg === 'worker exited' && l.workerPid === oldPid, { since });
  t.deepEqual([exit.code, exit.signal], [0, null]);
  t.true(Date.now() - reloadAt < 1500 + 1000, 'gone by DRAIN_TIMEOUT_MS');
  t.true(await pollUntil(() => clients.every((c) => c.closes.length >= 1 && c.last === 'hello ping'), 10000), 'the clients reconnected');
});

test('baton status and /metrics count upgraded connections per worker', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'ws.mjs'), METRICS_PORT: '0' } });
  const clients = Array.from({ length: 6 }, () => reconnectingClient(baton.port));
  t.teardown(() => clients.forEach((c) => c.stop()));
  t.true(await pollUntil(() => clients.every((c) => c.last === 'hello ping'), 5000));
  const { sendRequest } = await import('../dist/control.js');
  const status = async () => /** @type {any} */ ((await sendRequest(join(baton.dir, 'baton.sock'), { cmd: 'status' }, 3000)).response).status;
  // Workers report every second.
  t.true(await pollUntil(async () => (await status()).workers.reduce((/** @type {number} */ n, /** @type {any} */ w) => n + w.upgraded, 0) === 6, 5000));
  const st = await status();
  const metrics = (await get(st.metrics.port, '/metrics')).body;
  const gauges = metrics.split('\n').filter((l) => l.startsWith('baton_connections_upgraded{'));
  t.is(gauges.length, 2, 'one per worker');
  t.is(gauges.reduce((n, l) => n + Number(l.split(' ').pop()), 0), 6);
});

test('a factory app\'s WebSockets on ctx.server are told through ctx.drainSignal and reconnect', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'factory-ws.mjs'), WORKERS: '1', DRAIN_SPREAD_UPGRADED_MS: '0' } });
  const c = reconnectingClient(baton.port);
  t.teardown(() => c.stop());
  t.true(await pollUntil(() => c.last === 'g1 ping', 5000));
  t.is((await get(baton.port, '/')).body, 'factory g1\n');
  t.is((await baton.reload()).msg, 'reload complete');
  t.true(await pollUntil(() => c.last === 'g2 ping', 5000));
  t.deepEqual(c.closes.map((x) => x.code), [1001]);
});

test('an upgrade request nobody handles reaches the app\'s request handler, as without baton', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'http.mjs'), WORKERS: '1' } });
  const res = await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: baton.port, path: '/', headers: { connection: 'upgrade', upgrade: 'websocket' } }, (r) => {
      let body = '';
      r.on('data', (d) => { body += d; });
      r.on('end', () => resolve({ status: r.statusCode, body }));
    });
    req.on('upgrade', () => reject(new Error('upgraded')));
    req.on('error', reject);
    req.end();
  });
  t.deepEqual(res, { status: 200, body: 'hello from http\n' });
});

test('an SSE stream across a reload ends cleanly when its connection is told to go, and the reconnect lands on the new generation', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'http.mjs'), GREETING: 'old', WORKERS: '1', DRAIN_SPREAD_UPGRADED_MS: '300' } });
  /** @param {string} path */
  const stream = (path) => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: baton.port, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; stream.onData?.(text); });
      res.on('end', () => resolve({ text, complete: res.complete }));
      res.on('error', reject);
    }).on('error', reject);
  });
  /** @type {((text: string) => void) | undefined} */
  stream.onData = undefined;
  let seen = '';
  stream.onData = (text) => { seen = text; };
  const first = stream('/events');
  t.true(await pollUntil(() => seen.includes('data: old 2'), 5000));
  baton.writeEnv({ GREETING: 'new' });
  t.is((await baton.reload()).msg, 'reload complete');
  const ended = /** @type {{ text: string, complete: boolean }} */ (await first);
  t.true(ended.complete, 'the stream ended with its terminating chunk, not a reset');
  t.regex(ended.text, /event: bye\ndata: reconnect\n\n$/);
  seen = '';
  const second = stream('/events');
  t.true(await pollUntil(() => seen.includes('data: new 1'), 5000), 'the reconnect is served by the new generation');
  baton.signal('SIGTERM');
  const last = /** @type {{ text: string, complete: boolean }} */ (await second);
  t.true(last.complete);
  t.is((await baton.waitExit()).code, 0);
});

test.serial('socket.io (websocket transport) through a reload: the client reconnects by itself and exchanges messages with the new generation', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'socketio.mjs'), GREETING: 'one', DRAIN_SPREAD_UPGRADED_MS: '200' } });
  const socket = io(`http://127.0.0.1:${baton.port}`, { transports: ['websocket'], reconnectionDelay: 50, reconnectionDelayMax: 200 });
  t.teardown(() => { socket.close(); });
  const echo = (/** @type {string} */ msg) => /** @type {Promise<string>} */ (socket.timeout(3000).emitWithAck('echo', msg));
  await new Promise((r) => socket.once('connect', () => r(undefined)));
  t.regex(await echo('a'), /^one a \d+$/);
  let reconnects = 0;
  socket.io.on('reconnect', () => { reconnects++; });
  let disconnects = 0;
  socket.on('disconnect', () => { disconnects++; });
  baton.writeEnv({ GREETING: 'two' });
  t.is((await baton.reload()).msg, 'reload complete');
  t.true(await pollUntil(() => disconnects >= 1 && socket.connected, 10000), 'disconnected by the drain, then connected again');
  t.regex(await echo('b'), /^two b \d+$/);
  t.true(reconnects + disconnects >= 2);
});
