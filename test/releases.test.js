// @ts-check
// Capistrano-style deploys: each release in its own folder with baton
// installed in it, a `current` symlink switched with `mv -T`, a reload, and
// the old release deleted. The new release is served each time, `baton
// reload` works from `current`, and reloads go on after the deletion.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendRequest } from '../dist/control.js';
import { ROOT, envText, pollUntil, processGroup } from './helpers/baton.js';
import { get } from './helpers/http.js';

/** A release folder with baton installed in it (its package and dist, its dependencies linked) and a drop-in app. */
function release(root, n) {
  const dir = join(root, 'releases', String(n));
  const pkg = join(dir, 'node_modules', 'baton');
  mkdirSync(pkg, { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
  writeFileSync(join(dir, 'server.mjs'), `import http from 'node:http';\nhttp.createServer((req, res) => res.end('release ${n} ' + process.cwd() + '\\n')).listen(process.env.PORT);\n`);
  // Capistrano's linked_files: the shared .env.
  symlinkSync(join('..', '..', 'shared', '.env'), join(dir, '.env'));
  return dir;
}

/** `ln -sfn` done as deploy tools do it: a new link renamed over the old (mv -T). @param {string} root @param {string} target */
function switchCurrent(root, target) {
  symlinkSync(target, join(root, 'current.new'));
  renameSync(join(root, 'current.new'), join(root, 'current'));
}

/** `baton reload` run from `current`, as a deploy script does (a shell sets $PWD). @param {string} root */
function reloadFromCurrent(root) {
  const current = join(root, 'current');
  return /** @type {Promise<{ code: number, stdout: string, stderr: string }>} */ (new Promise((resolve) => {
    execFile(process.execPath, [join(current, 'node_modules', 'baton', 'dist', 'cli.js'), 'reload'], { cwd: current, env: { PATH: process.env.PATH ?? '', PWD: current } },
      (err, stdout, stderr) => resolve({ code: err ? /** @type {any} */ (err).code : 0, stdout, stderr }));
  }));
}

test('release folders behind a symlink: switch, reload, delete the old release, reload twice more: the new release is served each time, baton reload works from current', async (t) => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'baton-deploy-')));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'shared'));
  writeFileSync(join(root, 'shared', '.env'), envText({ PORT: '0', HOST: '127.0.0.1', WORKERS: '2', APP_MODULE: './server.mjs' }));
  const r1 = release(root, 1);
  const r2 = release(root, 2);
  switchCurrent(root, join('releases', '1'));
  const current = join(root, 'current');
  // Started from `current` by a shell: cwd is resolved by the kernel, $PWD is not.
  const primary = spawn(process.execPath, [join(current, 'node_modules', 'baton', 'dist', 'primary.js')], {
    cwd: current, env: { PATH: process.env.PATH ?? '', PWD: current }, detached: true, stdio: ['ignore', 'ignore', 'inherit'],
  });
  const pgid = /** @type {number} */ (primary.pid);
  t.teardown(() => { try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ } });
  // Runtime files live beside the shared .env, outside every release.
  const sock = join(root, 'shared', 'baton.sock');
  const status = async () => /** @type {any} */ ((await sendRequest(sock, { cmd: 'status' }, 3000)).response).status;
  t.true(await pollUntil(async () => (await status().catch(() => undefined))?.state === 'running', 15000), 'the primary is ready, its control socket in shared/');
  const port = (await status()).listeners[0].port;
  t.is((await get(port, '/')).body, `release 1 ${r1}\n`);

  switchCurrent(root, join('releases', '2'));
  const first = await reloadFromCurrent(root);
  t.is(first.code, 0, first.stderr);
  t.is((await get(port, '/')).body, `release 2 ${r2}\n`, 'the new release, run from its own folder');
  const st = await status();
  t.is(st.appDir, r2);
  t.true(st.workers.filter((/** @type {any} */ w) => w.generation === st.generation).every((/** @type {any} */ w) => w.dir === r2));

  rmSync(r1, { recursive: true, force: true });
  for (let i = 0; i < 2; i++) {
    const res = await reloadFromCurrent(root);
    t.is(res.code, 0, `reload ${i + 1} after the old release was deleted: ${res.stderr}`);
    t.is((await get(port, '/')).body, `release 2 ${r2}\n`);
  }
  const last = await status();
  t.is(last.generation, 4);
  t.is(last.pid, pgid);
  process.kill(pgid, 'SIGTERM');
  t.true(await pollUntil(() => processGroup(pgid).length === 0, 10000));
});
