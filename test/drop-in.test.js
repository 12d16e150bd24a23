// @ts-check
// Apps as their users write them, unchanged: they build their own server and
// call listen() (Express, Fastify, Koa, Hono, plain node:http). baton
// captures the listen, feeds the app's server, and everything it does for
// factory apps holds: zero-drop reloads, the new config, ordered shutdown.
import test from 'ava';
import { join } from 'node:path';
import { FIXTURES, ROOT, pollUntil, startBaton } from './helpers/baton.js';
import { get, startLoad, waitInFlight } from './helpers/http.js';

const APPS = join(FIXTURES, 'apps');

for (const name of ['express', 'fastify', 'http']) {
  test.serial(`an unmodified ${name} app that calls listen(): served, 0 failed through 5 reloads under load, the new config served, SIGTERM exits 0`, async (t) => {
    const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, `${name}.mjs`), GREETING: 'v0' } });
    t.is((await get(baton.port, '/')).body, `v0 from ${name}\n`);
    const load = startLoad(baton.port, { keepAlive: 16, newConn: 2, slow: 2, slowMs: 300 });
    try {
      await load.waitForMore(300);
      for (let i = 1; i <= 5; i++) {
        baton.writeEnv({ GREETING: `v${i}` });
        t.is((await baton.reload()).msg, 'reload complete', `reload ${i}`);
        await load.waitForMore(300);
      }
    } finally {
      await load.stop();
    }
    t.deepEqual(load.failures.slice(0, 5), [], `failed ${load.counts.failed}`);
    t.is(load.counts.failed, 0);
    t.true(load.counts.byClient.slow > 5 && load.counts.byClient.newConn > 20, JSON.stringify(load.counts.byClient));
    t.true(load.bodies.has(`v5 from ${name}`), 'the last config reached the clients');
    t.is((await get(baton.port, '/')).body, `v5 from ${name}\n`);
    baton.signal('SIGTERM');
    t.is((await baton.waitExit()).code, 0);
    t.falsy(baton.logs.find((l) => l.msg === 'worker exited unexpectedly'));
  });
}

for (const name of ['express', 'fastify']) {
  test(`Ctrl+C to the whole group while a ${name} app with its own SIGINT handler has a request in flight: the request completes, exit 0`, async (t) => {
    const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, `${name}.mjs`), WORKERS: '1' } });
    const slow = get(baton.port, '/slow?ms=800');
    await waitInFlight(baton.port, 1);
    baton.signalGroup('SIGINT');
    const res = await slow;
    t.is(res.status, 200);
    t.is(res.body, 'slept 800 ms\n');
    t.is((await baton.waitExit()).code, 0);
    t.falsy(baton.logs.find((l) => l.msg === 'worker exited unexpectedly'));
  });
}

test('the app\'s own SIGTERM handler runs once, after the worker has drained, not when the signal arrives', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'express.mjs'), WORKERS: '1' } });
  const slow = get(baton.port, '/slow?ms=600');
  await waitInFlight(baton.port, 1);
  baton.signal('SIGTERM');
  t.is((await slow).status, 200);
  t.is((await baton.waitExit()).code, 0);
  const drained = baton.logs.findIndex((l) => l.msg === 'worker drained, exiting');
  const handler = baton.logs.findIndex((l) => l.raw === 'express got SIGTERM: closing');
  t.true(drained >= 0 && handler > drained, `handler line ${handler}, drained line ${drained}`);
  t.is(baton.logs.filter((l) => typeof l.raw === 'string' && /got SIG/.test(l.raw)).length, 1, 'once, and never for the SIGINT it did not get');
});

test('Koa, Hono and NestJS apps that call listen() are served and reload', async (t) => {
  for (const name of ['koa', 'hono', 'nest']) {
    const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, `${name}.mjs`), GREETING: 'one' } });
    t.is((await get(baton.port, '/')).body, `one from ${name}\n`);
    baton.writeEnv({ GREETING: 'two' });
    t.is((await baton.reload()).msg, 'reload complete');
    t.is((await get(baton.port, '/')).body, `two from ${name}\n`);
  }
});

test('a captured server looks listening: callback and \'listening\' ran, listening is true, address() is the port clients use (PORT=0)', async (t) => {
  const http = await startBaton({ t, env: { APP_MODULE: join(APPS, 'http.mjs'), WORKERS: '1' } });
  const addr = JSON.parse((await get(http.port, '/addr')).body);
  t.true(addr.listening);
  t.is(addr.address.port, http.port);
  await http.waitForLog((l) => l.raw === 'http listening (callback), event seen: true');
  const fastify = await startBaton({ t, env: { APP_MODULE: join(APPS, 'fastify.mjs'), WORKERS: '1' } });
  const f = JSON.parse((await get(fastify.port, '/addr')).body);
  t.true(f.listening);
  t.is(f.address.port, fastify.port);
  t.true(f.addresses.length >= 1 && f.addresses.every((/** @type {any} */ a) => a.port === fastify.port), JSON.stringify(f.addresses));
});

test('an app that listens 500 ms after import gets no traffic before it: a request sent during its boot is answered after it listened', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'listens-late.mjs'), WORKERS: '1', PORT: '0' }, waitReady: false });
  const bound = await baton.waitForLog((l) => typeof l.port === 'number' && l.msg === 'listening');
  const sentAt = Date.now();
  const res = await get(/** @type {number} */ (bound.port), '/');
  const body = JSON.parse(res.body);
  t.true(body.listenedAt >= sentAt, 'the request was sent before the app listened');
  t.true(body.answeredAt >= body.listenedAt);
  const ready = await baton.waitForLog('ready');
  t.is(ready.port, bound.port);
});

test('an app that never listens: start-up exits 3 saying so; a reload to it is rolled back with that reason', async (t) => {
  const boot = await startBaton({ t, env: { APP_MODULE: join(APPS, 'never-listens.mjs'), READY_TIMEOUT_MS: '800', WORKERS: '1' }, waitReady: false });
  t.is((await boot.waitExit()).code, 3);
  t.truthy(boot.logs.find((l) => /^startup failed: worker \d+ not ready within 800 ms: the app never called listen\(\)/.test(String(l.msg))));

  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'http.mjs'), GREETING: 'old' } });
  baton.writeEnv({ APP_MODULE: join(APPS, 'never-listens.mjs'), READY_TIMEOUT_MS: '800' });
  const failed = await baton.reload();
  t.regex(String(failed.msg), /^reload failed: worker \d+ not ready within 800 ms: the app never called listen\(\).*; generation 1 keeps serving/);
  t.is((await get(baton.port, '/')).body, 'old from http\n');
});

test('an app that listens on a second port fails its boot naming that port; nothing binds it', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'second-port.mjs'), ADMIN_PORT: '9464', WORKERS: '1' }, waitReady: false });
  t.is((await baton.waitExit()).code, 3);
  const failed = baton.logs.find((l) => String(l.msg).startsWith('startup failed:'));
  t.regex(String(failed?.msg), /the app listens on port 9464 besides its main port: baton serves the app on port \d+/);
  const probe = await get(9464, '/').then(() => 'answered', (e) => e.code);
  t.is(probe, 'ECONNREFUSED', 'the admin port was never bound');
});

test('an unchanged app\'s own server.close() drains that worker, its callback runs once drained, and the generation gets a replacement', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(APPS, 'http.mjs'), WORKERS: '1' } });
  const before = JSON.parse((await get(baton.port, '/healthz')).body);
  t.is((await get(baton.port, '/close-server')).body, 'closing\n');
  await baton.waitForLog((l) => l.msg === 'the app closed its server: the worker drains and is replaced' && l.workerPid === before.pid);
  await baton.waitForLog((l) => l.raw === 'http server closed');
  await baton.waitForLog((l) => l.msg === 'worker exited' && l.workerPid === before.pid && l.code === 0);
  t.true(await pollUntil(async () => JSON.parse((await get(baton.port, '/healthz')).body).pid !== before.pid, 5000));
  t.is((await get(baton.port, '/')).body, 'hello from http\n');
  t.falsy(baton.logs.find((l) => l.msg === 'worker exited unexpectedly'));
});

test('the app as an argument: `node dist/primary.js ./server.mjs` and `baton start ./server.mjs`, relative to the working directory; `baton check ./server.mjs`', async (t) => {
  const { execFile } = await import('node:child_process');
  const files = { 'server.mjs': "import http from 'node:http';\nhttp.createServer((req, res) => res.end(`${process.env.GREETING} from http\\n`)).listen(process.env.PORT);\n" };
  const primary = await startBaton({ t, env: { GREETING: 'positional' }, args: ['./server.mjs'], files });
  t.is((await get(primary.port, '/')).body, 'positional from http\n');
  t.is(/** @type {any} */ ((await primary.waitForLog('config loaded')).sources).APP_MODULE, 'flag');
  const viaCli = await startBaton({ t, env: { GREETING: 'cli' }, args: ['./server.mjs'], files, viaCli: true });
  t.is((await get(viaCli.port, '/')).body, 'cli from http\n');

  /** @param {string[]} args @returns {Promise<{ code: number, stdout: string, stderr: string }>} */
  const run = (args) => new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], { cwd: primary.dir, env: { PATH: process.env.PATH ?? '' } },
      (err, stdout, stderr) => resolve({ code: err ? /** @type {any} */ (err).code : 0, stdout, stderr }));
  });
  const ok = await run(['check', './server.mjs']);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /app \.\/server\.mjs/);
  const missing = await run(['check', './nope.mjs']);
  t.is(missing.code, 78);
  t.regex(missing.stderr, /APP_MODULE \.\/nope\.mjs: no such file/);
  const two = await run(['start', 'a.mjs', 'b.mjs']);
  t.is(two.code, 2);
  t.regex(two.stderr, /one app module at most/);
});
