// @ts-check
// systemd readiness (Type=notify / Type=notify-reload): a small Python
// datagram listener stands in for systemd's NOTIFY_SOCKET and records what
// the primary sends through the systemd-notify binary.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, pollUntil, startBaton } from './helpers/baton.js';

const haveTools = (() => {
  try {
    execFileSync('systemd-notify', ['--version'], { stdio: 'ignore' });
    execFileSync('python3', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** @param {import('ava').ExecutionContext} t */
async function listener(t) {
  const path = join(mkdtempSync(join(tmpdir(), 'baton-notify-')), 'notify.sock');
  const child = spawn('python3', [join(FIXTURES, 'notify-listener.py'), path], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  /** @type {string[]} */
  const messages = [];
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (c) => {
    buf += c;
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    messages.push(...lines.filter((l) => l !== 'listening' && l !== 'BARRIER=1'));
  });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  return { path, messages };
}

(haveTools ? test : test.skip)('READY=1 once serving, RELOADING=1 with MONOTONIC_USEC then READY=1 on reloads (failed ones too), STOPPING=1 on stop', async (t) => {
  const notify = await listener(t);
  const baton = await startBaton({ t, processEnv: { NOTIFY_SOCKET: notify.path } });
  t.true(await pollUntil(() => notify.messages.length >= 1, 5000));
  t.is(notify.messages[0], `MAINPID=${baton.pid} | READY=1 | STATUS=serving, generation 1`);

  baton.writeEnv({ MESSAGE: 'two' });
  await baton.reload();
  t.true(await pollUntil(() => notify.messages.length >= 3, 5000));
  t.regex(notify.messages[1] ?? '', new RegExp(`^MAINPID=${baton.pid} \\| RELOADING=1 \\| MONOTONIC_USEC=\\d+ \\| STATUS=reloading$`));
  t.is(notify.messages[2], `MAINPID=${baton.pid} | READY=1 | STATUS=serving, generation 2`);

  baton.writeEnv({ APP_MODULE: join(FIXTURES, 'crashes-on-boot.mjs') });
  await baton.reload();
  t.true(await pollUntil(() => notify.messages.length >= 5, 5000));
  t.regex(notify.messages[3] ?? '', /RELOADING=1/);
  t.regex(notify.messages[4] ?? '', /READY=1 \| STATUS=reload failed: database unreachable/);

  baton.signal('SIGTERM');
  t.is((await baton.waitExit()).code, 0);
  t.true(await pollUntil(() => notify.messages.length >= 6, 5000));
  t.is(notify.messages[5], `MAINPID=${baton.pid} | STOPPING=1 | STATUS=shutting down`);
});

(haveTools ? test : test.skip)('an upgrade under systemd: the new primary becomes the main process (MAINPID= with READY=1) once it takes over; the old one sends no STOPPING=1', async (t) => {
  const notify = await listener(t);
  const baton = await startBaton({ t, processEnv: { NOTIFY_SOCKET: notify.path } });
  t.true(await pollUntil(() => notify.messages.length >= 1, 5000));
  const { execFile } = await import('node:child_process');
  const out = await new Promise((resolve) => execFile(process.execPath, [join(FIXTURES, '..', '..', 'dist', 'cli.js'), 'upgrade'], { cwd: baton.dir, env: { PATH: process.env.PATH } }, (err, stdout) => resolve(err ? String(err) : stdout)));
  const pid = Number(/primary (\d+)/.exec(String(out))?.[1]);
  t.true(pid > 0, String(out));
  t.true(await pollUntil(() => notify.messages.some((m) => m.startsWith(`MAINPID=${pid} | READY=1`)), 5000), JSON.stringify(notify.messages));
  await baton.waitProcessExit();
  t.false(notify.messages.some((m) => m === `MAINPID=${baton.pid} | STOPPING=1 | STATUS=shutting down`), 'the old primary did not say it stops');
  process.kill(pid, 'SIGTERM');
  t.true(await pollUntil(() => notify.messages.some((m) => m.startsWith(`MAINPID=${pid} | STOPPING=1`)), 5000));
});
