// @ts-check
// Readiness for load balancers: /readyz is 200 while the server serves, 503
// once it is shutting down, never 503 merely because a reload drains a worker.
import test from 'ava';
import { Client } from 'undici';
import { startBaton } from './helpers/baton.js';
import { get, waitInFlight } from './helpers/http.js';

test('readiness stays 200 on a keep-alive probe connection held to a worker that drains for a reload', async (t) => {
  // DRAIN_SPREAD_MS=0: every response of the draining worker carries Connection: close.
  const baton = await startBaton({ t, env: { WORKERS: '1', DRAIN_SPREAD_MS: '0' } });
  // A load balancer's health checker keeps its connection open between probes.
  const probe = new Client(`http://127.0.0.1:${baton.port}`);
  t.teardown(() => probe.destroy());
  const first = await probe.request({ path: '/readyz', method: 'GET' });
  t.is(first.statusCode, 200);
  t.like(await first.body.json(), { ready: true, generation: 1 });
  const since = baton.logs.length;
  await baton.reload();
  await baton.waitForLog((l) => l.msg === 'draining' && l.generation === 1, { since });
  // The same connection still reaches the draining generation-1 worker.
  const during = await probe.request({ path: '/readyz', method: 'GET' });
  t.is(during.statusCode, 200);
  t.like(await during.body.json(), { ready: true, generation: 1 });
  t.is(during.headers.connection, 'close');
});

test('SHUTDOWN_DELAY_MS: on SIGTERM it keeps serving but answers readiness 503, then drains and exits 0', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1', SHUTDOWN_DELAY_MS: '1500' } });
  t.is((await get(baton.port, '/readyz')).status, 200);
  const slow = get(baton.port, '/slow?ms=500');
  await waitInFlight(baton.port, 1);
  const since = baton.logs.length;
  baton.signal('SIGTERM');
  await baton.waitForLog('shutdown delay: still serving, readiness answers 503', { since });
  const ready = await get(baton.port, '/readyz');
  t.is(ready.status, 503);
  t.like(JSON.parse(ready.body), { ready: false });
  t.is((await get(baton.port, '/')).status, 200, 'still serving during the delay');
  t.is((await slow).status, 200);
  t.is((await baton.waitExit()).code, 0);
  const started = baton.logs.find((l) => l.msg === 'shutdown started');
  const done = baton.logs.find((l) => l.msg === 'shutdown complete');
  t.true(Date.parse(String(done?.time)) - Date.parse(String(started?.time)) >= 1500, 'the delay was kept');
});

test('SHUTDOWN_DELAY_MS is not applied on SIGHUP, and a second SIGTERM during the delay forces', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1', SHUTDOWN_DELAY_MS: '30000' } });
  const outcome = await baton.reload();
  t.is(outcome.msg, 'reload complete');
  t.is((await get(baton.port, '/readyz')).status, 200);
  const since = baton.logs.length;
  baton.signal('SIGTERM');
  await baton.waitForLog('shutdown delay: still serving, readiness answers 503', { since });
  baton.signal('SIGTERM');
  t.is((await baton.waitExit(5000)).code, 1);
});
