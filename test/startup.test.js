// @ts-check
// Start-up: config precedence, bad input, and the documented exit codes.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { FIXTURES, PRIMARY, startBaton } from './helpers/baton.js';
import { get } from './helpers/http.js';

test('invalid .env at start: exit 78 with a message naming the key', async (t) => {
  const baton = await startBaton({ t, env: { PORT: 'eighty', WORKERS: '0' }, waitReady: false });
  const exit = await baton.waitExit();
  t.is(exit.code, 78);
  t.regex(baton.stderr, /PORT \(from .*\.env\) must be a whole number from 0 to 65535, got "eighty"/);
  t.regex(baton.stderr, /WORKERS \(from .*\.env\) must be from 1 to 1024, got 0/);
  t.truthy(baton.logs.find((l) => l.level === 'fatal' && l.key === 'PORT'));
});

test('no .env file: defaults and the environment apply, and the log says so', async (t) => {
  const baton = await startBaton({ t, noEnvFile: true, processEnv: { PORT: '0', HOST: '127.0.0.1', WORKERS: '1' } });
  t.truthy(baton.logs.find((l) => l.msg === 'no .env file: using defaults and the environment'));
  t.is((await get(baton.port, '/')).body, 'Before hot reload\n');
});

test('precedence: flags > environment > .env > defaults, and a shadowed .env change is warned about', async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'from file', WORKERS: '2' }, processEnv: { MESSAGE: 'from env' }, args: ['--workers', '1'] });
  const ready = await baton.waitForLog('ready');
  t.is(/** @type {number[]} */ (ready.workers).length, 1, '--workers beats .env');
  t.is((await get(baton.port, '/')).body, 'from env\n', 'the environment beats .env');
  baton.writeEnv({ MESSAGE: 'file changed' });
  await baton.reload();
  t.truthy(baton.logs.find((l) => l.level === 'warn' && l.key === 'MESSAGE' && /environment \(or a flag\) sets it/.test(String(l.msg))));
  t.is((await get(baton.port, '/')).body, 'from env\n');
});

test('unknown .env keys reach the app in process.env; a CommonJS default-export listener works', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'default-listener.cjs'), GREETING: 'hello' } });
  t.is((await get(baton.port, '/')).body, 'listener hello\n');
  baton.writeEnv({ GREETING: 'bonjour' });
  t.is((await baton.reload()).msg, 'reload complete');
  t.is((await get(baton.port, '/')).body, 'listener bonjour\n');
});

test('an unknown flag is a usage error: exit 2 with the usage text', (t) => {
  const res = spawnSync(process.execPath, [PRIMARY, '--prot', '80'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
  t.is(res.status, 2);
  t.regex(res.stderr, /Unknown option '--prot'/);
  t.regex(res.stderr, /Usage: node dist\/primary.js/);
});

test('first generation crashes on boot: exit 3 with the worker\'s error, no respawn loop', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'crashes-on-boot.mjs') }, waitReady: false });
  const exit = await baton.waitExit();
  t.is(exit.code, 3);
  t.truthy(baton.logs.find((l) => l.level === 'fatal' && /^startup failed: database unreachable/.test(String(l.msg))));
  t.is(baton.groupPids().length, 0);
});

test('first generation never ready: exit 3 after READY_TIMEOUT_MS', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: join(FIXTURES, 'never-ready.mjs'), READY_TIMEOUT_MS: '300' }, waitReady: false });
  t.is((await baton.waitExit()).code, 3);
  t.truthy(baton.logs.find((l) => /^startup failed: worker \d+ not ready within 300 ms/.test(String(l.msg))));
});

test('APP_MODULE that does not exist: exit 3 saying it cannot be loaded', async (t) => {
  const baton = await startBaton({ t, env: { APP_MODULE: './missing.js', WORKERS: '1' }, waitReady: false });
  t.is((await baton.waitExit()).code, 3);
  t.truthy(baton.logs.find((l) => /^startup failed: cannot load APP_MODULE \.\/missing\.js/.test(String(l.msg))));
});

test('port already in use: exit 4 naming the address', async (t) => {
  const blocker = createServer();
  await new Promise((r) => blocker.listen(0, '127.0.0.1', () => r(undefined)));
  t.teardown(() => blocker.close());
  const port = /** @type {import('node:net').AddressInfo} */ (blocker.address()).port;
  const baton = await startBaton({ t, env: { PORT: String(port) }, waitReady: false });
  t.is((await baton.waitExit()).code, 4);
  // Bound and listened on at once (DISPATCH=primary) or bound first (shared): either step names it.
  t.truthy(baton.logs.find((l) => l.level === 'fatal' && new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port}: (listen|bind) EADDRINUSE`).test(String(l.msg))), JSON.stringify(baton.logs.filter((l) => l.level === 'fatal')));
});

test('secrets never reach the logs: keys that look secret are redacted where config is logged', async (t) => {
  const baton = await startBaton({ t, env: { DB_PASSWORD: 'hunter2', STRIPE_API_KEY: 'sk_live_x', AUTH_TOKEN: 'tok', DATABASE_URL: 'postgres://db/app' } });
  const loaded = await baton.waitForLog('config loaded');
  const env = /** @type {{ env: Record<string, string> }} */ (loaded.config).env;
  t.deepEqual(env, { DB_PASSWORD: '[redacted]', STRIPE_API_KEY: '[redacted]', AUTH_TOKEN: '[redacted]', DATABASE_URL: 'postgres://db/app' });
  baton.writeEnv({ DB_PASSWORD: 'hunter3' });
  await baton.reload();
  const all = baton.logs.map((l) => JSON.stringify(l)).join('\n') + baton.stderr;
  for (const secret of ['hunter2', 'hunter3', 'sk_live_x', '"tok"']) t.false(all.includes(secret), `${secret} leaked`);
});

test('LOG_FORMAT=pretty prints one readable line per event instead of JSON', async (t) => {
  const baton = await startBaton({ t, env: { LOG_FORMAT: 'pretty', WORKERS: '1' }, waitReady: false });
  await baton.until(() => baton.logs.find((l) => typeof l.raw === 'string' && /primary\[\d+\] g1 ready/.test(l.raw)), 10000, () => 'a pretty ready line');
  t.true(baton.logs.every((l) => typeof l.raw === 'string'), 'no JSON line');
  // The config as a person reads it: the keys not at their default, each with its source.
  const config = String(baton.logs.find((l) => /config loaded/.test(String(l.raw)))?.raw);
  t.regex(config, /config loaded: PORT=0 \(file\), HOST=127\.0\.0\.1 \(file\), WORKERS=1 \(file\), .*LOG_FORMAT=pretty \(file\)/);
  t.notRegex(config, /MESSAGE=|HEALTH_PATH=|\{"/, 'keys at their default and JSON are left out');
  t.true(config.length < 400, `${config.length} characters`);
  baton.signal('SIGTERM');
  t.is((await baton.waitExit()).code, 0);
});
