// @ts-check
// Config parsing and validation: pure logic, no process.
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diffConfig, isSecretKey, loadConfig, shadowedKeys } from '../dist/config.js';

/** @param {string} text */
function envFile(text) {
  const dir = mkdtempSync(join(tmpdir(), 'baton-config-'));
  writeFileSync(join(dir, '.env'), text);
  return join(dir, '.env');
}

/** @param {import('../dist/config.js').LoadResult} r */
function ok(r) {
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.loaded;
}

test('defaults apply when there is no file', (t) => {
  const loaded = ok(loadConfig({ envFile: '/nonexistent/.env', environment: {} }));
  t.false(loaded.fileFound);
  t.like(loaded.config, { port: 8080, host: '0.0.0.0', message: 'Before hot reload', drainTimeoutMs: 30000, readyPath: '/readyz', shutdownDelayMs: 0 });
  t.true(loaded.config.workers >= 1);
  t.true(Object.isFrozen(loaded.config) && Object.isFrozen(loaded.config.env));
});

test('precedence: flag > environment > file > default, per key', (t) => {
  const path = envFile('PORT=1000\nHOST=127.0.0.2\nWORKERS=3\nMESSAGE=file\n');
  const loaded = ok(loadConfig({ envFile: path, environment: { PORT: '2000', MESSAGE: 'env' }, flags: { PORT: '3000' } }));
  t.like(loaded.config, { port: 3000, host: '127.0.0.2', workers: 3, message: 'env' });
  t.like(loaded.sources, { PORT: 'flag', HOST: 'file', WORKERS: 'file', MESSAGE: 'env', LOG_LEVEL: 'default' });
  t.deepEqual(shadowedKeys(loaded, { PORT: '2000', MESSAGE: 'env' }).sort(), ['MESSAGE', 'PORT']);
});

test('every invalid key is reported, each naming the key and where it came from', (t) => {
  const path = envFile('PORT=70000\nWORKERS=-1\nLOG_LEVEL=loud\nHEALTH_PATH=health\nDRAIN_TIMEOUT_MS=1.5\n');
  const r = loadConfig({ envFile: path, environment: { READY_TIMEOUT_MS: 'soon' } });
  t.false(r.ok);
  const messages = r.ok ? [] : r.errors.map((e) => e.message);
  t.is(messages.length, 6);
  t.regex(messages.join('\n'), /PORT \(from .*\.env\) must be from 0 to 65535, got 70000/);
  t.regex(messages.join('\n'), /WORKERS .* must be a whole number/);
  t.regex(messages.join('\n'), /LOG_LEVEL .* must be one of trace, debug/);
  t.regex(messages.join('\n'), /HEALTH_PATH .* must be a path starting with \//);
  t.regex(messages.join('\n'), /DRAIN_TIMEOUT_MS .* must be a whole number/);
  t.regex(messages.join('\n'), /READY_TIMEOUT_MS \(from env\) must be a whole number/);
});

test('unknown keys are the app\'s own settings, with the environment winning', (t) => {
  const path = envFile('DATABASE_URL=postgres://file\nFEATURE=on\n');
  const loaded = ok(loadConfig({ envFile: path, environment: { FEATURE: 'off' } }));
  t.deepEqual({ ...loaded.config.env }, { DATABASE_URL: 'postgres://file', FEATURE: 'off' });
});

test('an unreadable .env (a directory) is a config error, not "defaults"', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-config-'));
  const r = loadConfig({ envFile: dir, environment: {} });
  t.false(r.ok);
  t.is(r.ok ? '' : r.errors[0]?.key, 'ENV_FILE');
});

test('diff: changed keys, restart-only keys, and file changes the environment shadows', (t) => {
  const a = ok(loadConfig({ envFile: envFile('PORT=1\nMESSAGE=a\nX=1\n'), environment: { MESSAGE: 'env' } }));
  const b = ok(loadConfig({ envFile: envFile('PORT=2\nMESSAGE=b\nX=2\n'), environment: { MESSAGE: 'env' } }));
  const diff = diffConfig(a, b, { MESSAGE: 'env' });
  t.deepEqual(diff.changed.sort(), ['PORT', 'X']);
  t.deepEqual(diff.restartOnly, ['PORT']);
  t.deepEqual(diff.shadowed, ['MESSAGE']);
});

test('secret-looking keys', (t) => {
  for (const k of ['DB_PASSWORD', 'PASSWORD', 'API_KEY', 'STRIPE_SECRET', 'GITHUB_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'PRIVATE_KEY']) t.true(isSecretKey(k), k);
  for (const k of ['DATABASE_URL', 'MESSAGE', 'KEYBOARD', 'MONKEY_COUNT']) t.false(isSecretKey(k), k);
});

test('DISPATCH: shared by default, primary by default with STICKY=ip, and shared with STICKY=ip is an error naming STICKY', (t) => {
  t.is(ok(loadConfig({ envFile: '/nonexistent/.env', environment: {} })).config.dispatch, 'shared');
  const sticky = ok(loadConfig({ envFile: '/nonexistent/.env', environment: { STICKY: 'ip' } }));
  t.is(sticky.config.dispatch, 'primary');
  t.is(ok(loadConfig({ envFile: '/nonexistent/.env', environment: { DISPATCH: 'primary' } })).config.dispatch, 'primary');
  const both = loadConfig({ envFile: envFile('DISPATCH=shared\nSTICKY=ip\n'), environment: {} });
  t.false(both.ok);
  t.regex(both.ok ? '' : both.errors.map((e) => `${e.key}: ${e.message}`).join('\n'), /^STICKY: STICKY=ip needs DISPATCH=primary/m);
});
