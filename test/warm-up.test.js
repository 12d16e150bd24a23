// @ts-check
// A new worker warms its HTTP path up with requests to its own health endpoint
// before it reports ready; the app never sees them and they are not counted.
import test from 'ava';
import { join } from 'node:path';
import { FIXTURES, startBaton } from './helpers/baton.js';
import { get } from './helpers/http.js';

test('warm-up before ready: logged, never reaches the app, not counted as served; again after a reload', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1', LOG_LEVEL: 'debug', APP_MODULE: join(FIXTURES, 'counts-requests.mjs') } });
  // Worker lines come through the primary's relay, so they may follow its own
  // 'ready' line in the log; the worker logs this one before it reports ready.
  await baton.waitForLog((l) => l.msg === 'warmed up' && l.generation === 1);
  t.is(baton.logs.filter((l) => l.msg === 'warmed up' && l.generation === 1).length, 1);
  t.like(JSON.parse((await get(baton.port, '/healthz')).body), { generation: 1, served: 0 });
  t.is((await get(baton.port, '/')).body, 'seen 1 /\n');

  const since = baton.logs.length;
  const done = await baton.reload();
  t.is(done.msg, 'reload complete');
  await baton.waitForLog((l) => l.msg === 'warmed up' && l.generation === 2, { since });
  t.is(baton.logs.slice(since).filter((l) => l.msg === 'warmed up' && l.generation === 2).length, 1);
  t.like(JSON.parse((await get(baton.port, '/healthz')).body), { generation: 2, served: 0 });
  t.is((await get(baton.port, '/x')).body, 'seen 1 /x\n');
});
