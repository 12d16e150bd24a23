// @ts-check
// The supervisor's transitions, driven through its seam: fake worker
// processes and a fake clock, so each case runs in milliseconds. The real
// processes are covered by the integration tests.
import test from 'ava';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfig } from '../dist/config.js';
import { HandOverDispatcher } from '../dist/primary/dispatcher.js';
import { SharedAccept } from '../dist/primary/shared-accept.js';
import { Supervisor } from '../dist/primary/supervisor.js';
import { PROTOCOL_VERSION } from '../dist/protocol.js';

/** @param {Record<string, string>} env */
function config(env) {
  const r = loadConfig({ envFile: '/nonexistent/.env', environment: { WORKERS: '2', ...env } });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r;
}

/** @param {Record<string, string>} [env] @param {{ bootConcurrency?: number, dispatcher?: any }} [opts] */
function harness(env = {}, opts = {}) {
  /** What the fake upgrader was asked. @type {string[]} */
  const upgrades = [];
  /** @type {{ pid: number, sent: any[], killed: boolean, events: any, alive: boolean }[]} */
  const procs = [];
  /** @type {{ at: number, fn: () => void, id: number }[]} */
  let timers = [];
  let now = 0;
  let seq = 0;
  /** @type {Record<string, unknown>[]} */
  const logs = [];
  const sink = new Writable({ write(chunk, _enc, cb) { logs.push(JSON.parse(String(chunk))); cb(); } });
  let nextConfig = config(env);
  /** @type {number[]} */
  const exits = [];
  let stoppedAccepting = 0;

  /** @type {Supervisor | undefined} */
  let self;
  const sup = new Supervisor({
    spawner: {
      spawn(events) {
        const proc = {
          pid: 1000 + procs.length, sent: /** @type {any[]} */ ([]), killed: false, events, alive: true,
          connected: () => proc.alive,
          /** @param {any} msg */
          send(msg) { proc.sent.push(msg); },
          kill() { proc.killed = true; exit(proc, null, 'SIGKILL'); },
        };
        procs.push(proc);
        return proc;
      },
    },
    clock: {
      now: () => now,
      setTimeout: (fn, ms) => { const id = ++seq; timers.push({ at: now + ms, fn, id }); return id; },
      clearTimeout: (id) => { timers = timers.filter((t) => t.id !== id); },
    },
    loadConfig: () => nextConfig,
    environment: {},
    dispatcher: opts.dispatcher ?? new HandOverDispatcher(),
    stopAccepting: () => { stoppedAccepting++; },
    address: () => ({ host: '127.0.0.1', port: 1234 }),
    listeners: () => [{ kind: 'tcp', host: '127.0.0.1', port: 1234 }],
    ticketKeys: () => 'a2V5cw==',
    log: pino({ level: 'debug', mixin: () => ({ generation: self?.generation }) }, sink),
    exit: (code) => { exits.push(code); },
    logOutput: () => ({ mode: 'sync', bufferedBytes: 0, droppedLines: 0 }),
    output: () => ({ format: 'json', colors: false }),
    bootConcurrency: opts.bootConcurrency ?? 16,
    upgrader: {
      start: (node, generation) => { upgrades.push(`start ${node} after ${generation}`); },
      abort: () => { upgrades.push('abort'); },
      handOver: () => { upgrades.push('handover'); },
    },
  }, nextConfig.ok ? nextConfig.loaded : /** @type {never} */ (undefined));

  self = sup;

  /** @param {any} proc @param {number | null} code @param {string | null} signal */
  function exit(proc, code, signal) {
    if (!proc.alive) return;
    proc.alive = false;
    setImmediate(() => proc.events.exit(code, signal));
  }
  const tick = () => new Promise((r) => setImmediate(r));
  const settle = async () => { for (let i = 0; i < 5; i++) await tick(); };

  return {
    sup, procs, logs, exits, upgrades,
    get stoppedAccepting() { return stoppedAccepting; },
    /** @param {Record<string, string> | { ok: false, errors: any[], envFile: string }} next */
    setConfig(next) { nextConfig = 'ok' in next ? /** @type {any} */ (next) : config(next); },
    settle,
    /** Boots `proc` fully: hello → init → ready. @param {any} proc */
    async boot(proc, protocol = PROTOCOL_VERSION) {
      proc.events.message({ type: 'hello', protocol });
      await settle();
      if (!proc.alive) return;
      proc.events.message({ type: 'ready', protocol });
      await settle();
    },
    /** @param {any} proc */
    crash(proc, code = 1) { exit(proc, code, null); },
    /** @param {any} proc */
    drained(proc) { exit(proc, 0, null); },
    /** Advances the fake clock, firing due timers in order. @param {number} ms */
    async advance(ms) {
      now += ms;
      for (;;) {
        const due = timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        timers = timers.filter((t) => t !== due);
        due.fn();
        await settle();
      }
    },
    /** @param {string} msg */
    logged(msg) { return logs.filter((l) => l.msg === msg); },
  };
}

/** @param {ReturnType<typeof harness>} h */
async function running(h) {
  h.sup.start();
  for (const p of h.procs) await h.boot(p);
}

test('boot: workers get their generation\'s config on hello; all ready → running, one ready line', async (t) => {
  const h = harness({ MESSAGE: 'hi' });
  h.sup.start();
  t.is(h.procs.length, 2);
  t.is(h.sup.currentState, 'starting');
  await h.boot(h.procs[0]);
  const init = h.procs[0].sent.find((m) => m.type === 'init');
  t.like(init, { protocol: PROTOCOL_VERSION, generation: 1, configVersion: 1, config: { message: 'hi', workers: 2 } });
  t.is(h.sup.currentState, 'starting', 'not ready until every worker is');
  await h.boot(h.procs[1]);
  t.is(h.sup.currentState, 'running');
  t.like(h.logged('ready')[0], { port: 1234, generation: 1, workers: [1000, 1001] });
});

test('reload: new generation ready → old one drains; reloads during a reload coalesce into one more', async (t) => {
  const h = harness();
  await running(h);
  /** @type {any[]} */
  const replies = [];
  h.setConfig({ MESSAGE: 'v2' });
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  t.is(h.sup.currentState, 'reloading');
  t.is(h.procs.length, 4);
  for (let i = 0; i < 5; i++) h.sup.enqueue({ type: 'reload', source: `burst${i}`, reply: (o) => replies.push(o) });
  await h.settle();
  t.is(h.procs.length, 4, 'no second generation while one boots');
  t.is(h.logged('reload queued: it runs when the current one ends').length, 5);

  h.setConfig({ MESSAGE: 'v3' });
  await h.boot(h.procs[2]);
  await h.boot(h.procs[3]);
  t.deepEqual(h.procs[0].sent.at(-1), { type: 'drain', reason: 'reload' });
  t.deepEqual(h.procs[1].sent.at(-1), { type: 'drain', reason: 'reload' });
  t.like(replies[0], { ok: true, generation: 2 });
  t.is(h.procs.length, 6, 'the queued reload started at once');
  await h.boot(h.procs[4]);
  t.like(h.procs[4].sent.find((m) => m.type === 'init'), { generation: 3, config: { message: 'v3' } });
  await h.boot(h.procs[5]);
  t.is(replies.length, 6);
  t.like(replies[5], { ok: true, generation: 3 });
  t.is(h.sup.currentState, 'running');
});

// DISPATCH=shared: an old worker accepts from the shared socket until it
// reads its drain, so `reload complete` waits until each says it stopped.
const LATE_WARNING = 'old workers did not confirm they stopped accepting: the reload completes without them (each takes new connections until it reads its drain)';

/** A shared-mode primary whose reload's new generation is ready: the old workers (procs 0, 1) were told to drain. @param {number} switchMs */
async function sharedReloadSwitching(switchMs) {
  const h = harness({}, { dispatcher: new SharedAccept(() => [], undefined, { stopAcceptingMs: 250, switchMs }) });
  await running(h);
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  await h.boot(h.procs[2]);
  await h.boot(h.procs[3]);
  return { h, replies };
}

test('reload (DISPATCH=shared): complete only once every old worker has stopped accepting, or exited', async (t) => {
  const { h, replies } = await sharedReloadSwitching(60_000);
  t.deepEqual(h.procs[0].sent.at(-1), { type: 'drain', reason: 'reload' });
  t.is(h.logged('reload complete').length, 0, 'not while old workers may accept');
  t.is(h.sup.currentState, 'reloading');
  h.sup.enqueue({ type: 'reload', source: 'meanwhile' });
  await h.settle();
  t.is(h.logged('reload queued: it runs when the current one ends').length, 1);
  h.procs[0].events.message({ type: 'stopped-accepting' });
  await h.settle();
  t.is(replies.length, 0, 'one of two has stopped');
  h.crash(h.procs[1], 0);
  await h.settle();
  t.is(h.logged('reload complete').length, 1);
  t.like(replies[0], { ok: true, generation: 2 });
  t.is(h.logged('running queued reload').length, 1, 'the queued reload runs after it');
  t.is(h.logged(LATE_WARNING).length, 0);
});

test('reload (DISPATCH=shared): an old worker that never says it stopped accepting delays the reload only until the deadline, with a warning', async (t) => {
  const { h } = await sharedReloadSwitching(30);
  h.procs[0].events.message({ type: 'stopped-accepting' });
  await h.settle();
  t.is(h.logged('reload complete').length, 0);
  const deadline = Date.now() + 5000;
  while (h.logged('reload complete').length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const [warning] = h.logged(LATE_WARNING);
  t.deepEqual(warning?.workerPids, [h.procs[1].pid]);
  t.is(h.logged('reload complete').length, 1);
  t.is(h.sup.currentState, 'running');
});

test('reload (DISPATCH=shared): a stop while the old workers stop accepting shuts down without completing the reload', async (t) => {
  const { h, replies } = await sharedReloadSwitching(60_000);
  h.sup.enqueue({ type: 'stop', source: 'SIGTERM' });
  await h.settle();
  t.is(h.sup.currentState, 'stopping');
  t.like(replies[0], { ok: false });
  for (const p of h.procs) p.events.message({ type: 'stopped-accepting' });
  await h.settle();
  t.is(h.logged('reload complete').length, 0);
});

test('reload: with a boot concurrency of 1 the new generation boots one worker at a time (startup does not wait)', async (t) => {
  const h = harness({ WORKERS: '3' }, { bootConcurrency: 1 });
  h.sup.start();
  t.is(h.procs.length, 3, 'at startup nothing serves yet: all boot at once');
  for (const p of h.procs) await h.boot(p);
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  t.is(h.procs.length, 4, 'one new worker boots');
  await h.boot(h.procs[3]);
  t.is(h.procs.length, 5, 'the next one is forked when the first is ready');
  t.false(h.procs[0].sent.some((m) => m.type === 'drain'), 'the old generation serves until the whole new one is ready');
  await h.boot(h.procs[4]);
  t.is(h.procs.length, 6);
  await h.boot(h.procs[5]);
  t.is(h.procs.length, 6);
  t.like(replies[0], { ok: true, generation: 2 });
  for (const p of h.procs.slice(0, 3)) t.deepEqual(p.sent.at(-1), { type: 'drain', reason: 'reload' });
});

test('reload: a new worker that fails on boot rolls the generation back; the old one never hears of it', async (t) => {
  const h = harness();
  await running(h);
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  h.procs[2].events.message({ type: 'fatal', error: { message: 'boom' } });
  h.crash(h.procs[2]);
  await h.settle();
  t.true(h.procs[3].killed, 'the rest of the new generation is killed');
  t.like(replies[0], { ok: false, kind: 'failed', reason: 'boom' });
  t.is(h.sup.currentState, 'running');
  t.false(h.procs[0].sent.some((m) => m.type === 'drain'));
  t.regex(String(h.logged('reload failed: boom; generation 1 keeps serving')[0]?.msg), /reload failed/);
});

test('reload: a worker speaking another protocol version fails the reload with a clear reason', async (t) => {
  const h = harness();
  await running(h);
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  await h.boot(h.procs[2], PROTOCOL_VERSION + 1);
  await h.settle();
  t.regex(replies[0]?.reason, new RegExp(`worker speaks IPC protocol ${PROTOCOL_VERSION + 1}, this primary speaks ${PROTOCOL_VERSION}`));
  t.is(h.sup.currentState, 'running');
});

test('reload: not ready by READY_TIMEOUT_MS → killed, rolled back', async (t) => {
  const h = harness({ READY_TIMEOUT_MS: '500' });
  await running(h);
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  await h.advance(499);
  t.is(replies.length, 0);
  await h.advance(1);
  t.true(h.procs[2].killed);
  t.like(replies[0], { ok: false, kind: 'failed' });
  t.regex(replies[0].reason, /not ready within 500 ms/);
});

test('reload: invalid config is rejected without forking anything', async (t) => {
  const h = harness();
  await running(h);
  h.setConfig({ ok: false, errors: [{ key: 'PORT', message: 'PORT bad' }], envFile: '/x/.env' });
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  t.is(h.procs.length, 2);
  t.like(replies[0], { ok: false, kind: 'rejected', reason: 'PORT bad' });
  t.is(h.sup.currentState, 'running');
});

test('stop during a reload abandons the new generation and drains the serving one; exit 0 when all are gone', async (t) => {
  const h = harness();
  await running(h);
  h.sup.enqueue({ type: 'reload', source: 'test' });
  await h.settle();
  h.sup.enqueue({ type: 'stop', source: 'SIGTERM' });
  await h.settle();
  t.is(h.sup.currentState, 'stopping');
  t.is(h.stoppedAccepting, 1);
  t.true(h.procs[2].killed && h.procs[3].killed);
  t.deepEqual(h.procs[0].sent.at(-1), { type: 'drain', reason: 'shutdown' });
  h.drained(h.procs[0]);
  await h.settle();
  t.deepEqual(h.exits, []);
  h.drained(h.procs[1]);
  await h.settle();
  t.deepEqual(h.exits, [0]);
});

test('a second stop forces: everything is killed, exit 1', async (t) => {
  const h = harness();
  await running(h);
  h.sup.enqueue({ type: 'stop', source: 'SIGINT' });
  h.sup.enqueue({ type: 'stop', source: 'SIGINT' });
  await h.settle();
  t.true(h.procs.every((p) => p.killed));
  t.deepEqual(h.exits, [1]);
});

test('a crashed worker is respawned into the same generation with exponential backoff', async (t) => {
  const h = harness();
  await running(h);
  h.crash(h.procs[0]);
  await h.settle();
  t.is(h.procs.length, 2, 'not at once');
  await h.advance(100);
  t.is(h.procs.length, 3);
  h.crash(h.procs[2]);
  await h.settle();
  await h.advance(100);
  t.is(h.procs.length, 3, 'the second crash waits longer');
  await h.advance(100);
  t.is(h.procs.length, 4);
  await h.boot(h.procs[3]);
  t.like(h.procs[3].sent.find((m) => m.type === 'init'), { generation: 1 });
});

test('first generation failing to boot exits 3 instead of respawning', async (t) => {
  const h = harness();
  h.sup.start();
  h.procs[0].events.message({ type: 'fatal', error: { message: 'no db' } });
  h.crash(h.procs[0]);
  await h.settle();
  t.deepEqual(h.exits, [3]);
  t.is(h.logged('startup failed: no db').length, 1);
});

test('the drain deadline kills a worker that does not finish', async (t) => {
  const h = harness({ DRAIN_TIMEOUT_MS: '1000' });
  await running(h);
  h.sup.enqueue({ type: 'reload', source: 'test' });
  await h.settle();
  await h.boot(h.procs[2]);
  await h.boot(h.procs[3]);
  h.drained(h.procs[1]);
  await h.advance(1000);
  t.true(h.procs[0].killed);
  t.false(h.procs[1].killed);
  t.is(h.logged('worker did not drain in time; killing it').length, 1);
  t.is(h.logged('generation retired').length, 1);
});

test('upgrade: a reload or a second upgrade meanwhile is refused; a failed new primary leaves this one running', async (t) => {
  const h = harness();
  await running(h);
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'upgrade', source: 'test', node: '/usr/bin/node', reply: (o) => replies.push(o) });
  await h.settle();
  t.is(h.sup.currentState, 'upgrading');
  t.deepEqual(h.upgrades, ['start /usr/bin/node after 1']);
  h.sup.enqueue({ type: 'reload', source: 'test', reply: (o) => replies.push(o) });
  h.sup.enqueue({ type: 'upgrade', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  t.like(replies[0], { ok: false, kind: 'rejected', reason: 'an upgrade of the primary is in progress: reload once it has ended' });
  t.like(replies[1], { ok: false, kind: 'rejected', reason: 'an upgrade is already in progress' });
  h.sup.enqueue({ type: 'upgrade-failed', reason: 'invalid config: WORKERS', exitCode: 78 });
  await h.settle();
  t.is(h.sup.currentState, 'running');
  t.like(replies[2], { ok: false, kind: 'rejected', exitCode: 78 });
  t.is(h.procs.filter((p) => p.alive).length, 2, 'its workers never heard of it');
});

/** A running primary asked to upgrade, whose new primary (4242, Node v99) now serves; resolves with the upgrade's replies so far. @param {ReturnType<typeof harness>} h */
async function upgradeServing(h) {
  await running(h);
  /** @type {any[]} */
  const replies = [];
  h.sup.enqueue({ type: 'upgrade', source: 'test', reply: (o) => replies.push(o) });
  await h.settle();
  h.sup.enqueue({ type: 'upgrade-serving', pid: 4242, node: 'v99' });
  await h.settle();
  return replies;
}

test('upgrade: once the new primary serves, this one hands over and drains as on a reload (no shutdown), then exits 0', async (t) => {
  const h = harness();
  const replies = await upgradeServing(h);
  t.deepEqual(replies, [{ ok: true, pid: 4242, node: 'v99' }]);
  t.deepEqual(h.upgrades.slice(1), ['handover']);
  t.is(h.stoppedAccepting, 1);
  t.true(h.sup.upgraded);
  for (const p of h.procs) t.deepEqual(p.sent.filter((m) => m.type !== 'init').map((m) => m.type + ':' + m.reason), ['drain:reload'], 'drained as on a reload');
  t.false(h.procs.some((p) => p.sent.some((m) => m.type === 'unready')), 'readiness never turned 503');
  for (const p of h.procs) h.drained(p);
  await h.settle();
  t.deepEqual(h.exits, [0]);
  t.is(h.logged('handed over to the new primary: exiting').length, 1);
});

// DISPATCH=shared: this primary's workers accept from the shared socket
// until they read their drain, so the hand-over (and `upgrade complete`)
// waits until each says it stopped, or exited, or the deadline passed.
test('upgrade (DISPATCH=shared): the hand-over and the reply wait until every old worker has stopped accepting, or exited', async (t) => {
  const h = harness({}, { dispatcher: new SharedAccept(() => [], undefined, { stopAcceptingMs: 250, switchMs: 60_000 }) });
  const replies = await upgradeServing(h);
  for (const p of h.procs) t.deepEqual(p.sent.at(-1), { type: 'drain', reason: 'reload' }, 'drained at once');
  t.deepEqual(h.upgrades.slice(1), [], 'no hand-over while old workers may accept');
  t.deepEqual(replies, []);
  h.procs[0].events.message({ type: 'stopped-accepting' });
  await h.settle();
  t.deepEqual(replies, [], 'one of two has stopped');
  h.crash(h.procs[1], 0);
  await h.settle();
  t.deepEqual(h.upgrades.slice(1), ['handover']);
  t.deepEqual(replies, [{ ok: true, pid: 4242, node: 'v99' }]);
  h.drained(h.procs[0]);
  await h.settle();
  t.deepEqual(h.exits, [0]);
  t.deepEqual(h.upgrades.slice(1), ['handover'], 'handed over once');
});

test('upgrade (DISPATCH=shared): an old worker that never says it stopped accepting delays the hand-over only until the deadline, with a warning', async (t) => {
  const h = harness({}, { dispatcher: new SharedAccept(() => [], undefined, { stopAcceptingMs: 250, switchMs: 30 }) });
  await upgradeServing(h);
  h.procs[0].events.message({ type: 'stopped-accepting' });
  await h.settle();
  const deadline = Date.now() + 5000;
  while (h.upgrades.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  t.deepEqual(h.upgrades.slice(1), ['handover']);
  const [warning] = h.logged('old workers did not confirm they stopped accepting: handing over without them (each takes new connections until it reads its drain)');
  t.deepEqual(warning?.workerPids, [h.procs[1].pid]);
});

test('upgrade: a stop during it kills the new primary, then shuts down as usual', async (t) => {
  const h = harness();
  await running(h);
  h.sup.enqueue({ type: 'upgrade', source: 'test' });
  await h.settle();
  h.sup.enqueue({ type: 'stop', source: 'SIGTERM' });
  await h.settle();
  t.deepEqual(h.upgrades.slice(1), ['abort']);
  t.is(h.sup.currentState, 'stopping');
  for (const p of h.procs) h.drained(p);
  await h.settle();
  t.deepEqual(h.exits, [0]);
});
