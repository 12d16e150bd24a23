// @ts-check
// BOOT_NICE: a reload's workers boot at a lower CPU priority, every thread
// of them, and are raised back before they serve; without the privilege to
// raise them back they boot at normal priority, with one warning.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { canRestore } from '../dist/primary/boot-priority.js';
import { FIXTURES, pollUntil, startBaton } from './helpers/baton.js';
import { get } from './helpers/http.js';

const APP = `${FIXTURES}/apps/listens-late.mjs`;

/** The nice value of every thread of `pid` (field 19 of /proc/<pid>/task/<tid>/stat). @param {number} pid */
function threadNices(pid) {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

/** Can this test process raise a thread's priority back (root with CAP_SYS_NICE)? */
const capSysNice = (() => {
  const cap = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return cap !== undefined && ((BigInt(`0x${cap}`) >> 23n) & 1n) === 1n;
})();
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;

/**
 * Starts a reload of a slow-booting app (it listens 1.5 s after import) and
 * returns the new worker's pid, read from the "worker forked" debug line.
 * @param {import('./helpers/baton.js').Baton} b
 */
async function reloadAndFindNewWorker(b) {
  const since = b.logs.length;
  b.signal('SIGHUP');
  const started = await b.waitForLog('reload started', { since });
  const forked = await b.waitForLog((l) => l.msg === 'worker forked' && l.workerGeneration === started.newGeneration, { since });
  return { pid: /** @type {number} */ (forked.workerPid), since };
}

test('canRestore: CAP_SYS_NICE, or an RLIMIT_NICE that reaches back to the primary\'s own nice value', (t) => {
  t.true(canRestore({ base: 0, capSysNice: true, rlimitNice: 0 }));
  t.false(canRestore({ base: 0, capSysNice: false, rlimitNice: 0 }));
  t.true(canRestore({ base: 0, capSysNice: false, rlimitNice: 20 })); // LimitNICE=+0
  t.false(canRestore({ base: 0, capSysNice: false, rlimitNice: 19 }));
  t.true(canRestore({ base: 5, capSysNice: false, rlimitNice: 15 }));
});

test('a reload\'s worker boots with every thread at BOOT_NICE and serves at the primary\'s priority', async (t) => {
  if (!capSysNice) return t.pass('not root with CAP_SYS_NICE here: the fallback test covers this machine');
  const b = await startBaton({ t, args: [APP], env: { WORKERS: '1', LISTEN_AFTER_MS: '1500', LOG_LEVEL: 'debug', BOOT_NICE: '7' } });
  // The primary's "worker ready" (the worker logs its own, without a pid).
  const ready = await b.waitForLog((l) => l.msg === 'worker ready' && typeof l.workerPid === 'number');
  const first = threadNices(ready.workerPid);
  t.true(first.every((n) => n === 0), `first generation: ${first}`);
  const { pid, since } = await reloadAndFindNewWorker(b);
  // Booting: every thread (V8's and libuv's included) at +7, within the boot.
  /** @type {number[]} */
  let booting = [];
  const allLowered = await pollUntil(() => { booting = threadNices(pid); return booting.length > 1 && booting.every((x) => x === 7); }, 1400);
  t.true(allLowered, `threads while booting: ${booting}`);
  await b.waitForLog('reload complete', { since });
  const serving = threadNices(pid);
  t.true(serving.every((n) => n === 0), `after ready: ${serving}`);
  t.is((await get(b.port, '/')).status, 200);
  t.false(b.logs.some((l) => /BOOT_NICE/.test(String(l.msg))), 'no warning when it can restore');
});

test('BOOT_NICE=0: a reload\'s workers boot at normal priority', async (t) => {
  const b = await startBaton({ t, args: [APP], env: { WORKERS: '1', LISTEN_AFTER_MS: '1500', LOG_LEVEL: 'debug', BOOT_NICE: '0' } });
  const { pid, since } = await reloadAndFindNewWorker(b);
  // Sampled while it boots (it listens 1.5 s after its import).
  await b.waitForLog((l) => l.msg === 'worker forked', { since });
  const nices = [];
  const end = Date.now() + 800;
  while (Date.now() < end) { nices.push(...threadNices(pid)); await new Promise((r) => setImmediate(r)); }
  t.true(nices.length > 0 && nices.every((n) => n === 0), `${[...new Set(nices)]}`);
  await b.waitForLog('reload complete', { since });
});

test('without CAP_SYS_NICE (setpriv drops it): workers boot at normal priority and one warning says why, however many reloads', async (t) => {
  if (!hasSetpriv || !capSysNice) return t.pass('needs root and setpriv to drop the capability');
  const b = await startBaton({ t, wrap: ['setpriv', '--bounding-set=-sys_nice'], args: [APP], env: { WORKERS: '1', LISTEN_AFTER_MS: '1000', LOG_LEVEL: 'debug' } });
  for (let i = 0; i < 2; i++) {
    const { pid, since } = await reloadAndFindNewWorker(b);
    await b.waitForLog((l) => /^BOOT_NICE: reload workers boot at normal priority/.test(String(l.msg)), { since: 0 });
    t.true(threadNices(pid).every((n) => n === 0));
    await b.waitForLog('reload complete', { since });
  }
  const warnings = b.logs.filter((l) => /^BOOT_NICE/.test(String(l.msg)));
  t.is(warnings.length, 1);
  t.is(warnings[0].level, 'warn');
  t.regex(String(warnings[0].msg), /CAP_SYS_NICE.*LimitNICE=\+0/);
});
