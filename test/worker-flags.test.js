// @ts-check
// WORKER_NODE_FLAGS: the Node/V8 flags a generation's workers start with
// (after the primary's own), --no-memory-reducer by default; a reload
// starts its workers with the new ones; a flag Node rejects rolls the
// reload back; a value that is not flags is a config error.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { startBaton } from './helpers/baton.js';
import { get } from './helpers/http.js';

/** The command line of a process, as arguments. @param {number} pid */
const argsOf = (pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');

/** Pids of the workers the last "ready"/"reload complete" line names. @param {import('./helpers/baton.js').Baton} b */
function workersOf(b) {
  const line = [...b.logs].reverse().find((l) => l.msg === 'ready' || l.msg === 'reload complete');
  return /** @type {number[]} */ (line?.workers ?? []);
}

test('workers start with --no-memory-reducer by default; a reload starts them with the new flags; the primary keeps its own', async (t) => {
  const b = await startBaton({ t, env: { WORKERS: '2' } });
  const first = workersOf(b);
  t.is(first.length, 2);
  for (const pid of first) t.true(argsOf(pid).includes('--no-memory-reducer'), argsOf(pid).join(' '));
  t.false(argsOf(b.pid).includes('--no-memory-reducer'), 'the primary is not given the workers\' flags');

  b.writeEnv({ WORKER_NODE_FLAGS: '--max-semi-space-size=32 --stack-size=2000' });
  t.is((await b.reload()).msg, 'reload complete');
  const second = workersOf(b);
  t.is(second.length, 2);
  for (const pid of second) {
    const args = argsOf(pid);
    t.true(args.includes('--max-semi-space-size=32') && args.includes('--stack-size=2000'), args.join(' '));
    t.false(args.includes('--no-memory-reducer'));
  }
  t.is((await get(b.port, '/')).status, 200);

  // Empty: none.
  b.writeEnv({ WORKER_NODE_FLAGS: '' });
  t.is((await b.reload()).msg, 'reload complete');
  for (const pid of workersOf(b)) t.false(argsOf(pid).some((a) => a.startsWith('--max-semi') || a === '--no-memory-reducer'));
});

test('a flag Node rejects fails the reload (old generation serves on); a value that is not flags is rejected naming the key', async (t) => {
  const b = await startBaton({ t, env: { WORKERS: '1', MESSAGE: 'old' } });
  b.writeEnv({ WORKER_NODE_FLAGS: '--no-such-node-flag', MESSAGE: 'new' });
  const failed = await b.reload();
  t.regex(String(failed.msg), /^reload failed/);
  t.regex(JSON.stringify(failed), /exit|code 9|bad option/);
  // Node's own message, relayed from the worker's stderr (it may arrive after the outcome line).
  await b.until(() => b.logs.some((l) => /bad option: --no-such-node-flag/.test(JSON.stringify(l))) || /bad option: --no-such-node-flag/.test(b.stderr), 5000, () => 'Node\'s "bad option" message in the output');
  t.is((await get(b.port, '/')).body, 'old\n');

  b.writeEnv({ WORKER_NODE_FLAGS: 'max-old-space-size=100', MESSAGE: 'new' });
  const rejected = await b.reload();
  t.regex(String(rejected.msg), /^reload rejected/);
  t.regex(JSON.stringify(rejected), /WORKER_NODE_FLAGS.*each starting with/);
  t.is((await get(b.port, '/')).body, 'old\n');
});
