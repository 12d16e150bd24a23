// @ts-check
// The promise: reloads under load lose no request. Keep-alive clients,
// new-connection-per-request clients and slow requests run at once while
// baton reloads five times; every request must get a 2xx answer.
import test from 'ava';
import { startBaton } from './helpers/baton.js';
import { startLoad } from './helpers/http.js';

for (const dispatch of ['primary', 'shared']) {
test.serial(`DISPATCH=${dispatch}: zero failed requests across 5 SIGHUP reloads under mixed load`, async (t) => {
  const baton = await startBaton({ t, env: { MESSAGE: 'gen-0', DISPATCH: dispatch } });
  const load = startLoad(baton.port, { keepAlive: 16, newConn: 2, slow: 2, slowMs: 300 });
  try {
    await load.waitForMore(500);
    for (let i = 1; i <= 5; i++) {
      baton.writeEnv({ MESSAGE: `gen-${i}` });
      const outcome = await baton.reload();
      t.is(outcome.msg, 'reload complete', `reload ${i}`);
      // Let traffic run on the new generation while the old one drains.
      await load.waitForMore(500);
    }
  } finally {
    await load.stop();
  }
  t.deepEqual(load.failures.slice(0, 10), [], `failures: ${load.counts.failed}`);
  t.is(load.counts.failed, 0);
  t.true(load.counts.ok > 3000, `answered ${load.counts.ok}`);
  t.true(load.counts.byClient.newConn > 50 && load.counts.byClient.slow > 10, JSON.stringify(load.counts.byClient));
  t.true(load.bodies.has('gen-5'), 'the last config reached the clients');
  t.log(`answered ${load.counts.ok} requests, failed ${load.counts.failed}`, load.counts.byClient);
});
}
