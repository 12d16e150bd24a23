// @ts-check
// DISPATCH=shared's balance in a worker: what it keeps of what it accepts,
// and when it tells the primary its count (pure logic; the processes are
// in dispatch.test.js).
import test from 'ava';
import { AcceptBalance, LoadReporter } from '../dist/worker/accept-balance.js';
import { pollUntil } from './helpers/baton.js';

/** One worker accepts a whole burst of `n` while its peer holds `peer`: how many it keeps. */
function burst(n, peer, slack = 1) {
  const b = new AcceptBalance(slack);
  b.peers(peer);
  let open = 0;
  let forwarded = 0;
  for (let i = 0; i < n; i++) {
    if (b.forward(open)) forwarded++;
    else open++;
  }
  return { kept: open, forwarded };
}

test('a worker that accepts a whole burst keeps half of it and forwards the rest', (t) => {
  t.deepEqual(burst(32, 0), { kept: 16, forwarded: 16 });
  t.deepEqual(burst(4, 0), { kept: 2, forwarded: 2 });
  t.deepEqual(burst(1, 0), { kept: 1, forwarded: 0 });
});

test('a worker keeps what brings it level with its least-loaded peer, then shares', (t) => {
  t.deepEqual(burst(10, 20), { kept: 10, forwarded: 0 });
  t.deepEqual(burst(30, 10), { kept: 20, forwarded: 10 });
});

test('a larger slack lets a worker hold that many more than its peer', (t) => {
  t.deepEqual(burst(32, 0, 4), { kept: 18, forwarded: 14 });
});

test('alone (or not told of any peer) a worker keeps everything', (t) => {
  const b = new AcceptBalance();
  t.false(b.forward(1000));
  b.peers(0);
  t.true(b.forward(1000));
  b.peers(null);
  t.false(b.forward(1000));
});

test('a forward that could not be sent no longer counts as on its way to the peer', (t) => {
  const b = new AcceptBalance();
  b.peers(0);
  t.false(b.forward(0));
  t.true(b.forward(1));
  t.false(b.forward(1));
  t.true(b.forward(2));
  b.unforward();
  // The peer is thought to hold one (the first forward): a worker with two forwards again.
  t.true(b.forward(2));
});

test('the primary\'s new view replaces the forwards counted since the last one', (t) => {
  const b = new AcceptBalance();
  b.peers(0);
  t.false(b.forward(0));
  t.true(b.forward(1));
  b.peers(0);
  t.true(b.forward(1));
});

test('the load reporter coalesces changes, reports a step at once, and never repeats a count', async (t) => {
  let count = 0;
  let reads = 0;
  /** @type {number[]} */
  const reports = [];
  const r = new LoadReporter(() => { reads++; return count; }, (n) => reports.push(n), 20, 4);
  t.teardown(() => r.stop());
  /** Until the pending timer has fired (it reads the count once). */
  const fired = async () => {
    const before = reads;
    t.true(await pollUntil(() => reads > before, 5000), 'the report timer fired');
  };
  count = 1; r.changed();
  count = 2; r.changed();
  t.deepEqual(reports, []);
  count = 4; r.changed();
  t.deepEqual(reports, [4], 'a change of 4 from the last report goes at once');
  count = 5; r.changed();
  count = 4;
  await fired();
  t.deepEqual(reports, [4], 'back at the reported count when the timer fired: nothing to say');
  count = 6; r.changed();
  await fired();
  t.deepEqual(reports, [4, 6]);
  r.told(9);
  count = 9; r.changed();
  await fired();
  t.deepEqual(reports, [4, 6], 'a count the primary had with a forward is not reported again');
});
