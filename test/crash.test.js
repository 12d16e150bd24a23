// @ts-check
// Crashes: workers that die are replaced, the port never refuses meanwhile
// (whichever way connections are dispatched: the listening socket is the
// primary's), and a primary killed with SIGKILL leaves no orphan.
import test from 'ava';
import http from 'node:http';
import { pollUntil, startBaton } from './helpers/baton.js';
import { get, metric, waitInFlight } from './helpers/http.js';

for (const dispatch of ['primary', 'shared']) {
  test(`DISPATCH=${dispatch}: every worker SIGKILLed at once: a request sent right then is answered after the respawn, not refused`, async (t) => {
  const baton = await startBaton({ t, env: { DISPATCH: dispatch } });
  const ready = await baton.waitForLog('ready');
  const pids = /** @type {number[]} */ (ready.workers);
  const since = baton.logs.length;
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  const res = await get(baton.port, '/');
  t.is(res.status, 200);
  t.is(res.body, 'Before hot reload\n');
  await baton.waitForLog((l) => l.msg === 'respawning worker', { since });
  const health = JSON.parse((await get(baton.port, '/healthz')).body);
  t.false(pids.includes(health.pid), 'answered by a new worker');
  t.is(health.generation, 1, 'same generation and config');
  t.true(await pollUntil(() => baton.groupPids().length === 3, 5000), 'back to 2 workers');
  });
}

// The primary keeps its copy of each connection it hands over until the
// worker's process acknowledges holding it; a SIGSTOPped worker never does,
// and gets no other meanwhile. Once the frozen worker is killed its
// connection goes to the other: none is lost.
//
// DISPATCH=primary: the frozen worker is handed one, the other five go to
// the running worker.
test('DISPATCH=primary: connections handed to a frozen worker that is then killed are answered by another, none lost', async (t) => {
  const baton = await startBaton({ t, env: { DISPATCH: 'primary' } });
  const ready = await baton.waitForLog('ready');
  const [frozen, other] = /** @type {number[]} */ (ready.workers);
  process.kill(frozen, 'SIGSTOP');
  t.teardown(() => { try { process.kill(frozen, 'SIGCONT'); } catch { /* gone */ } });
  /** @type {{ status: number, pid?: number }[]} */
  const answers = [];
  const requests = Array.from({ length: 6 }, () => get(baton.port, '/healthz').then((res) => {
    const answer = { status: res.status, pid: JSON.parse(res.body).pid };
    answers.push(answer);
    return answer;
  }));
  // Five answered by the running worker; the sixth waits at the frozen one.
  t.true(await pollUntil(() => answers.length === 5, 5000), `answered before the kill: ${answers.length}`);
  t.true(answers.every((a) => a.pid === other));
  process.kill(frozen, 'SIGKILL');
  const all = await Promise.all(requests);
  t.deepEqual(all.map((a) => a.status), [200, 200, 200, 200, 200, 200]);
  t.false(all.some((a) => a.pid === frozen), 'none answered by the killed worker');
  t.is(answers.length, 6);
});

// DISPATCH=shared: only the running worker accepts, and it forwards a
// connection only while it holds more than its peer. A burst cannot make
// it do so: on a loaded machine it may serve and close each connection
// before it accepts the next (seen in CI: all six kept). So it is made to
// hold one, an idle keep-alive connection: the next connection goes to the
// frozen peer (the primary counts the forward), and the five after it,
// sent one at a time, are kept (the peer counts one now, as this worker).
test('DISPATCH=shared: a connection forwarded to a frozen worker that is then killed is answered by another, none lost', async (t) => {
  const baton = await startBaton({ t, env: { DISPATCH: 'shared', METRICS_PORT: '0' } });
  const ready = await baton.waitForLog('ready');
  const metricsPort = /** @type {{ port: number }} */ (await baton.waitForLog('metrics at /metrics')).port;
  const [frozen, other] = /** @type {number[]} */ (ready.workers);
  process.kill(frozen, 'SIGSTOP');
  t.teardown(() => { try { process.kill(frozen, 'SIGCONT'); } catch { /* gone */ } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const held = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: baton.port, path: '/healthz', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve(JSON.parse(body).pid));
    }).on('error', reject);
  });
  t.is(held, other, 'the held connection is the running worker\'s');
  const dispatched = async () => Number(await metric(metricsPort, 'baton_connections_dispatched_total'));
  const before = await dispatched();
  let answered = false;
  const forwarded = get(baton.port, '/healthz').then((res) => {
    answered = true;
    return { status: res.status, pid: JSON.parse(res.body).pid };
  });
  t.true(await pollUntil(async () => (await dispatched()) === before + 1, 5000), 'forwarded through the primary');
  for (let i = 0; i < 5; i++) {
    const res = await get(baton.port, '/healthz');
    t.is(res.status, 200);
    t.is(JSON.parse(res.body).pid, other, `request ${i + 1} after the forward is kept by the running worker`);
  }
  t.false(answered, 'the forwarded connection waits at the frozen worker');
  process.kill(frozen, 'SIGKILL');
  const late = await forwarded;
  t.is(late.status, 200);
  t.is(late.pid, other, 'answered by the running worker once the frozen one is gone');
});

test('primary killed with SIGKILL: no worker is left after 2 s, draining ones included', async (t) => {
  const baton = await startBaton({ t, env: { WORKERS: '1' } });
  const ready = await baton.waitForLog('ready');
  void get(baton.port, '/slow?ms=10000').catch(() => {});
  await waitInFlight(baton.port, 1);
  baton.writeEnv({ MESSAGE: 'next' });
  await baton.reload();
  const draining = await baton.waitForLog((l) => l.msg === 'draining' && l.generation === 1);
  t.is(draining.pid, /** @type {number[]} */ (ready.workers)[0]);
  const pids = baton.groupPids().filter((p) => p !== baton.pid);
  t.is(pids.length, 2, 'one draining worker and one new one');
  process.kill(baton.pid, 'SIGKILL');
  await baton.waitExit();
  t.true(await pollUntil(() => pids.every((p) => !baton.groupPids().includes(p)), 2000), `left: ${baton.groupPids()}`);
});
