// @ts-check
// Many reloads in a row leak nothing the primary holds: its open file
// descriptors return to where they were, and exactly WORKERS workers remain.
// (Memory over 200 reloads is measured by `npm run bench`, not asserted here.)
import test from 'ava';
import { readdirSync } from 'node:fs';
import { pollUntil, startBaton } from './helpers/baton.js';
import { startLoad } from './helpers/http.js';

/** @param {number} pid */
const fdCount = (pid) => readdirSync(`/proc/${pid}/fd`).length;

test.serial('20 reloads under light load: no failed request, fds back to baseline, exactly WORKERS workers', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '2', METRICS_PORT: '0' } });
  // Warm up: the first reload creates lazily allocated state (timers, IPC buffers).
  await baton.reload();
  await baton.waitForLog((l) => l.msg === 'generation retired' && l.retiredGeneration === 1);
  const baseline = fdCount(baton.pid);
  const load = startLoad(baton.port, { keepAlive: 4, newConn: 1, slow: 0 });
  try {
    for (let i = 0; i < 20; i++) {
      const outcome = await baton.reload();
      t.is(outcome.msg, 'reload complete');
    }
  } finally {
    await load.stop();
  }
  t.is(load.counts.failed, 0, JSON.stringify(load.failures.slice(0, 3)));
  const last = /** @type {number} */ (baton.logs.filter((l) => l.msg === 'reload complete').at(-1)?.generation);
  await baton.waitForLog((l) => l.msg === 'generation retired' && l.retiredGeneration === last - 1);
  t.true(await pollUntil(() => fdCount(baton.pid) <= baseline, 5000), `fds: baseline ${baseline}, now ${fdCount(baton.pid)}`);
  t.is(baton.groupPids().length, 3, 'primary + 2 workers');
});
