// @ts-check
// WATCH: the .env file's changes reload, however they are made: in place,
// an editor's atomic rename, `mv new .env`, a Kubernetes ConfigMap update
// (a `..data` symlink swapped in the mounted directory). WATCH_PATHS adds
// code folders. Bursts end in one reload; an invalid file is rejected as
// with SIGHUP.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WATCH_DEBOUNCE_MS } from '../dist/primary/change-watcher.js';
import { envText, startBaton } from './helpers/baton.js';
import { get } from './helpers/http.js';

const BASE = { PORT: '0', HOST: '127.0.0.1', WORKERS: '1', WATCH: 'on' };

/**
 * Waits for the next reload's outcome line after `since` and the message to be served.
 * @param {import('./helpers/baton.js').Baton} baton @param {number} since @param {string} message
 */
async function reloadedTo(baton, since, message) {
  const outcome = await baton.waitForLog((l) => l.msg === 'reload complete' || /^reload (rejected|failed)/.test(String(l.msg)), { since });
  return { outcome, body: (await get(baton.port, '/')).body, expected: `${message}\n` };
}

test('the .env saved in place, by an editor\'s atomic rename, and by `mv new .env`: each reloads once, with the new content', async (t) => {
  const baton = await startBaton({ t, env: { ...BASE, MESSAGE: 'v0' } });
  await baton.waitForLog('watching for changes: they reload');

  let since = baton.logs.length;
  writeFileSync(baton.envPath, envText({ ...BASE, MESSAGE: 'in place' }));
  let r = await reloadedTo(baton, since, 'in place');
  t.is(r.outcome.msg, 'reload complete');
  t.is(r.body, r.expected);
  t.regex(String(baton.logs.slice(since).find((l) => l.msg === 'reload requested')?.source), /^watch: \.env/);

  since = baton.logs.length;
  writeFileSync(`${baton.envPath}.swp`, envText({ ...BASE, MESSAGE: 'renamed over' }));
  renameSync(`${baton.envPath}.swp`, baton.envPath);
  r = await reloadedTo(baton, since, 'renamed over');
  t.is(r.body, r.expected);

  since = baton.logs.length;
  writeFileSync(join(baton.dir, 'new.env'), envText({ ...BASE, MESSAGE: 'moved' }));
  execFileSync('mv', [join(baton.dir, 'new.env'), baton.envPath]);
  r = await reloadedTo(baton, since, 'moved');
  t.is(r.body, r.expected);
  t.is(baton.logs.filter((l) => l.msg === 'reload started').length, 3, 'one reload per change');
});

test('a Kubernetes ConfigMap update (the ..data symlink swapped in the mounted directory) reloads', async (t) => {
  // The kubelet's layout: .env -> ..data/.env, ..data -> ..<timestamp>/
  const cm = mkdtempSync(join(tmpdir(), 'baton-configmap-'));
  t.teardown(() => rmSync(cm, { recursive: true, force: true }));
  const version = (/** @type {string} */ name, /** @type {string} */ message) => {
    mkdirSync(join(cm, name));
    writeFileSync(join(cm, name, '.env'), envText({ MESSAGE: message }));
  };
  version('..2026_12_01_10_00_00.1', 'from the configmap');
  symlinkSync('..2026_12_01_10_00_00.1', join(cm, '..data'));
  symlinkSync(join('..data', '.env'), join(cm, '.env'));
  const baton = await startBaton({ t, noEnvFile: true, processEnv: { ...BASE, ENV_FILE: join(cm, '.env') } });
  t.is((await get(baton.port, '/')).body, 'from the configmap\n');
  const since = baton.logs.length;
  // What the kubelet does: a new timestamped folder, a new link, renamed over ..data.
  version('..2026_12_01_10_05_00.2', 'updated configmap');
  symlinkSync('..2026_12_01_10_05_00.2', join(cm, '..data_tmp'));
  renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
  rmSync(join(cm, '..2026_12_01_10_00_00.1'), { recursive: true });
  const r = await reloadedTo(baton, since, 'updated configmap');
  t.is(r.outcome.msg, 'reload complete');
  t.is(r.body, r.expected);
});

test('a burst of changes ends in one reload of the newest state; an invalid .env is rejected and the old generation serves on', async (t) => {
  const baton = await startBaton({ t, env: { ...BASE, MESSAGE: 'v0' } });
  await baton.waitForLog('watching for changes: they reload');
  let since = baton.logs.length;
  for (let i = 1; i <= 10; i++) writeFileSync(baton.envPath, envText({ ...BASE, MESSAGE: `burst ${i}` }));
  const r = await reloadedTo(baton, since, 'burst 10');
  t.is(r.body, r.expected);
  // One more change after it: had the burst made a second reload, it would
  // show between the two (the debounce keeps this one 300 ms away).
  const afterBurst = baton.logs.length;
  writeFileSync(baton.envPath, envText({ ...BASE, MESSAGE: 'after the burst' }));
  t.is((await reloadedTo(baton, afterBurst, 'after the burst')).body, 'after the burst\n');
  t.is(baton.logs.slice(since).filter((l) => l.msg === 'reload started').length, 2, 'one reload for the burst, one for the change after it');

  since = baton.logs.length;
  writeFileSync(baton.envPath, envText({ ...BASE, MESSAGE: 'broken', WORKERS: 'many' }));
  const rejected = await reloadedTo(baton, since, 'after the burst');
  t.regex(String(rejected.outcome.msg), /^reload rejected: WORKERS .*must be a whole number/);
  t.is(rejected.body, 'after the burst\n', 'the old generation serves on');

  since = baton.logs.length;
  writeFileSync(baton.envPath, envText({ ...BASE, MESSAGE: 'fixed', WATCH: 'off' }));
  const fixed = await reloadedTo(baton, since, 'fixed');
  t.is(fixed.body, fixed.expected);
  await baton.waitForLog('stopped watching for changes', { since });
  // WATCH changes on reload: turned off, a change no longer reloads. (An
  // absence has no event to wait for: three debounce periods.)
  since = baton.logs.length;
  writeFileSync(baton.envPath, envText({ ...BASE, MESSAGE: 'not watched', WATCH: 'off' }));
  await new Promise((resolve) => setTimeout(resolve, 3 * WATCH_DEBOUNCE_MS));
  t.falsy(baton.logs.slice(since).find((l) => l.msg === 'reload requested'));
});

test('WATCH_PATHS (and --watch): a change in the app\'s code reloads and the new code is served; node_modules is ignored', async (t) => {
  const app = (/** @type {string} */ text) => `import http from 'node:http';\nhttp.createServer((req, res) => res.end(${JSON.stringify(`${text}\n`)})).listen(process.env.PORT);\n`;
  const baton = await startBaton({
    t, args: ['--watch'],
    env: { PORT: '0', HOST: '127.0.0.1', WORKERS: '1', APP_MODULE: './src/server.mjs', WATCH_PATHS: 'src' },
    files: { 'src/server.mjs': app('first code'), 'src/node_modules/dep/index.js': 'module.exports = 1;\n' },
  });
  t.is((await get(baton.port, '/')).body, 'first code\n');
  await baton.waitForLog('watching for changes: they reload');
  let since = baton.logs.length;
  // Both within one debounce: the reload names what changed, and node_modules is not among it.
  writeFileSync(join(baton.dir, 'src', 'node_modules', 'dep', 'index.js'), 'module.exports = 2;\n');
  writeFileSync(join(baton.dir, 'src', 'server.mjs'), app('second code'));
  const r = await reloadedTo(baton, since, 'second code');
  t.is(r.outcome.msg, 'reload complete');
  t.is(r.body, r.expected);
  const source = String(baton.logs.slice(since).find((l) => l.msg === 'reload requested')?.source);
  t.regex(source, /server\.mjs/);
  t.notRegex(source, /node_modules/, 'node_modules is ignored');
  t.is(baton.logs.slice(since).filter((l) => l.msg === 'reload started').length, 1);
  // A new folder reloads, and is watched from then on.
  since = baton.logs.length;
  mkdirSync(join(baton.dir, 'src', 'lib'));
  await baton.waitForLog((l) => l.msg === 'reload complete', { since });
  since = baton.logs.length;
  writeFileSync(join(baton.dir, 'src', 'lib', 'helper.mjs'), 'export default 1;\n');
  await baton.waitForLog((l) => l.msg === 'reload complete', { since });
  t.regex(String(baton.logs.slice(since).find((l) => l.msg === 'reload requested')?.source), /lib\/helper\.mjs/);
});

test('a write that leaves the content as it was reloads nothing; the next real change reloads once', async (t) => {
  const baton = await startBaton({ t, env: { ...BASE, MESSAGE: 'v0' } });
  await baton.waitForLog('watching for changes: they reload');
  const since = baton.logs.length;
  // Rewritten with the same bytes (a config tool that always writes), in
  // place and by a rename, then a real change.
  writeFileSync(baton.envPath, readFileSync(baton.envPath));
  baton.writeEnv({ MESSAGE: 'v0' });
  await new Promise((r) => setTimeout(r, WATCH_DEBOUNCE_MS * 3));
  baton.writeEnv({ MESSAGE: 'v1' });
  const r = await reloadedTo(baton, since, 'v1');
  t.is(r.body, r.expected);
  t.is(baton.logs.slice(since).filter((l) => l.msg === 'reload started').length, 1, 'only the real change reloaded');
});

test('WATCH is reloadable: a change that turns it off reloads once and stops the watching', async (t) => {
  const baton = await startBaton({ t, env: { ...BASE, MESSAGE: 'v0' } });
  await baton.waitForLog('watching for changes: they reload');
  let since = baton.logs.length;
  baton.writeEnv({ WATCH: 'off', MESSAGE: 'v1' });
  const r = await reloadedTo(baton, since, 'v1');
  t.is(r.body, r.expected);
  await baton.waitForLog('stopped watching for changes', { since });
  // Changed again: nothing happens by itself (a bounded look, several debounce periods) ...
  since = baton.logs.length;
  baton.writeEnv({ MESSAGE: 'v2' });
  await new Promise((r) => setTimeout(r, WATCH_DEBOUNCE_MS * 5));
  t.false(baton.logs.slice(since).some((l) => l.msg === 'reload requested'), 'no reload without WATCH');
  t.is((await get(baton.port, '/')).body, 'v1\n');
  // ... until a SIGHUP, which reads it.
  t.is((await baton.reload()).msg, 'reload complete');
  t.is((await get(baton.port, '/')).body, 'v2\n');
});
