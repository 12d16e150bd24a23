// @ts-check
// A stalled stdout (a log shipper that stopped reading, `npm start | less`
// paused) must never stall the server: the primary and the workers hold at
// most LOG_BUFFER_BYTES each, drop whole lines past it, say how many once
// output flows again, and still exit in their usual time.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { sendRequest } from '../dist/control.js';
import { FIXTURES, PRIMARY, envText, pollUntil, processGroup } from './helpers/baton.js';
import { get } from './helpers/http.js';

const BOUND = 64 * 1024;

/** @param {string} dir */
async function status(dir) {
  const { response } = await sendRequest(join(dir, 'baton.sock'), { cmd: 'status' }, 3000);
  if (!response.ok || response.cmd !== 'status') throw new Error(JSON.stringify(response));
  return response.status;
}

/** @param {string} dir */
async function reload(dir) {
  const { response } = await sendRequest(join(dir, 'baton.sock'), { cmd: 'reload' }, 15000);
  if (!response.ok) throw new Error(JSON.stringify(response));
}

/** @param {number} pid */
function rssKb(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

/**
 * Starts the primary with its stdout on `stdoutFd`, which nobody reads.
 * @param {any} t @param {number | 'pipe'} stdoutFd @param {Record<string, string>} env
 */
async function startStalled(t, stdoutFd, env) {
  const dir = mkdtempSync(join(tmpdir(), 'baton-stall-'));
  writeFileSync(join(dir, '.env'), envText({ PORT: '0', HOST: '127.0.0.1', WORKERS: '2', LOG_LEVEL: 'debug', LOG_BUFFER_BYTES: String(BOUND), ...env }));
  const child = spawn(process.execPath, [PRIMARY], { cwd: dir, env: { PATH: process.env.PATH ?? '' }, detached: true, stdio: ['ignore', stdoutFd, 'pipe'] });
  const pid = /** @type {number} */ (child.pid);
  /** @type {Promise<number | null>} */
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  });
  // The log cannot be read, so readiness comes from the control socket.
  t.true(await pollUntil(async () => (await status(dir).catch(() => undefined))?.state === 'running', 15000), 'the primary became ready');
  const st = await status(dir);
  return { dir, pid, child, exited, port: st.listeners[0].port };
}

test.serial('stdout into a FIFO nobody reads: 100 reloads and 2000 logged requests later the server answers, holds at most LOG_BUFFER_BYTES, and reports the dropped lines once read again', async (t) => {
  const fifoDir = mkdtempSync(join(tmpdir(), 'baton-fifo-'));
  t.teardown(() => rmSync(fifoDir, { recursive: true, force: true }));
  const fifo = join(fifoDir, 'out');
  execFileSync('mkfifo', [fifo]);
  // A reader that exists but never reads: writers fill the pipe and stall.
  const readerFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const writerFd = openSync(fifo, constants.O_WRONLY);
  const b = await startStalled(t, writerFd, { APP_MODULE: join(FIXTURES, 'logs-every-request.mjs') });
  closeSync(writerFd);
  const rssBefore = rssKb(b.pid);

  for (let i = 0; i < 100; i++) await reload(b.dir);
  for (let i = 0; i < 2000; i += 20) {
    const answers = await Promise.all(Array.from({ length: 20 }, () => get(b.port, '/', { timeoutMs: 3000 })));
    t.true(answers.every((a) => a.status === 200 && a.body === 'logged\n'));
  }
  const st = await status(b.dir);
  t.is(st.generation, 101);
  t.true(st.logOutput.bufferedBytes <= BOUND, `buffered ${st.logOutput.bufferedBytes}`);
  t.true(st.logOutput.droppedLines > 0, 'lines were dropped, not buffered without limit');
  const grownKb = rssKb(b.pid) - rssBefore;
  t.true(grownKb < 16 * 1024, `primary RSS grew ${grownKb} kB`);

  // Reading again: everything that comes out is whole lines, and the
  // primary says how many it dropped.
  const stream = new Socket({ fd: readerFd, readable: true, writable: false });
  stream.setEncoding('utf8');
  let text = '';
  /** @type {any[]} */
  const lines = [];
  stream.on('data', (chunk) => {
    text += chunk;
    let nl;
    while ((nl = text.indexOf('\n')) >= 0) {
      lines.push(text.slice(0, nl));
      text = text.slice(nl + 1);
    }
  });
  t.true(await pollUntil(() => lines.some((l) => /"role":"primary".*log lines dropped: stdout was not being read/.test(l)), 10000), 'the dropped lines are reported');
  const dropped = JSON.parse(lines.find((l) => /"role":"primary".*log lines dropped/.test(l)));
  t.true(dropped.droppedLines > 0);
  t.is(dropped.msg, `${dropped.droppedLines} log lines dropped: stdout was not being read`);
  const broken = lines.filter((l) => !/^request GET/.test(l)).filter((l) => { try { JSON.parse(l); return false; } catch { return true; } });
  t.deepEqual(broken.slice(0, 3), [], 'no half line, no interleaving');

  process.kill(b.pid, 'SIGTERM');
  t.is(await b.exited, 0);
  stream.destroy();
});

test.serial('stdout on a socket nobody reads (how Node and systemd connect it): requests are answered, SIGTERM exits 0 in its usual time', async (t) => {
  const b = await startStalled(t, 'pipe', {});
  // Never read: the socket's buffers fill and every writer would block.
  b.child.stdout?.pause();
  for (let i = 0; i < 40; i++) await reload(b.dir);
  t.is((await get(b.port, '/', { timeoutMs: 3000 })).status, 200);
  t.true((await status(b.dir)).logOutput.bufferedBytes <= BOUND);
  const stopAt = Date.now();
  process.kill(b.pid, 'SIGTERM');
  t.is(await b.exited, 0);
  // Usual shutdown (~20 ms here) plus at most a second of flushing a stalled stdout.
  t.true(Date.now() - stopAt < 3000, `exit took ${Date.now() - stopAt} ms`);
  t.true(await pollUntil(() => processGroup(b.pid).length === 0, 3000), 'no worker left');
});
