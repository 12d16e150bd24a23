// @ts-check
// HTTPS and HTTP/2, terminated in the workers, with certificates rotated by a
// reload and sessions that resume across workers and reloads. Certificates
// are made at test time (helpers/certs.js); clients trust the test CA.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { makeCa } from './helpers/certs.js';
import { ROOT, pollUntil, startBaton } from './helpers/baton.js';
import { startH2Load } from './helpers/h2.js';
import { get, metric, startLoad, waitInFlight } from './helpers/http.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-certs-'));
const ca = makeCa(dir);
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

/** @param {{ certFile: string, keyFile: string }} c */
const tlsEnv = (c) => ({ TLS_CERT_FILE: c.certFile, TLS_KEY_FILE: c.keyFile });

/** @param {string} cwd @param {string[]} args */
function cli(cwd, args) {
  return /** @type {Promise<{ code: number, stdout: string, stderr: string }>} */ (new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], { cwd, env: { PATH: process.env.PATH ?? '' }, timeout: 30000 },
      (err, stdout, stderr) => resolve({ code: err ? /** @type {any} */ (err).code : 0, stdout, stderr }));
  }));
}

/**
 * A TLS connection that sends HTTP/1.1 requests one at a time and reports
 * the peer certificate's serial.
 * @param {number} port @param {tls.ConnectionOptions} [extra]
 */
function tlsConnection(port, extra = {}) {
  const socket = tls.connect({ port, host: '127.0.0.1', ca: ca.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'], ...extra });
  let buf = '';
  /** @type {((text: string) => void) | undefined} */
  let waiting;
  socket.setEncoding('utf8');
  socket.on('data', (d) => {
    buf += d;
    const m = /\r\n\r\n/.exec(buf);
    if (!m) return;
    const head = buf.slice(0, m.index);
    const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
    if (buf.length < m.index + 4 + len) return;
    const res = buf.slice(0, m.index + 4 + len);
    buf = buf.slice(m.index + 4 + len);
    waiting?.(res);
  });
  /** @type {Promise<void>} */
  const ready = new Promise((resolve, reject) => { socket.once('secureConnect', () => resolve()); socket.once('error', reject); });
  return {
    socket, ready,
    serial: () => socket.getPeerCertificate().serialNumber,
    /** @param {string} path @returns {Promise<string>} */
    request(path) {
      return new Promise((resolve, reject) => {
        waiting = resolve;
        socket.once('error', reject);
        socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      });
    },
  };
}

test('HTTPS with a client that trusts the CA; /healthz over TLS; the port speaks no plain HTTP', async (t) => {
  const baton = await startBaton({ t, env: { ...tlsEnv(ca.issue()), MESSAGE: 'secure' } });
  const res = await get(baton.port, '/', { ca: ca.ca });
  t.is(res.status, 200);
  t.is(res.body, 'secure\n');
  t.like(JSON.parse((await get(baton.port, '/healthz', { ca: ca.ca })).body), { status: 'ok', generation: 1 });
  const plain = await get(baton.port, '/', { timeoutMs: 3000 }).then((r) => r.status, (e) => e.code);
  t.not(plain, 200, 'plain HTTP is not served on a TLS port');
  t.truthy(await baton.waitForLog('TLS on every TCP listener'));
});

test.serial('0 failed requests through 5 reloads under TLS keep-alive + new-TLS-connection + slow load', async (t) => {
  const baton = await startBaton({ t, env: { ...tlsEnv(ca.issue()), MESSAGE: 'gen-0' } });
  const load = startLoad(baton.port, { keepAlive: 16, newConn: 2, slow: 2, slowMs: 300, ca: ca.ca });
  try {
    await load.waitForMore(300);
    for (let i = 1; i <= 5; i++) {
      baton.writeEnv({ MESSAGE: `gen-${i}` });
      t.is((await baton.reload()).msg, 'reload complete');
      await load.waitForMore(300);
    }
  } finally {
    await load.stop();
  }
  t.deepEqual(load.failures.slice(0, 5), []);
  t.is(load.counts.failed, 0);
  t.true(load.counts.byClient.newConn > 20 && load.counts.byClient.slow > 5, JSON.stringify(load.counts.byClient));
  t.true(load.bodies.has('gen-5'));
});

test.serial('HTTP/2: 0 failed (no REFUSED_STREAM) through 5 reloads with 24 concurrent streams on one session; HTTP/1.1 still served', async (t) => {
  const baton = await startBaton({ t, env: { ...tlsEnv(ca.issue()), HTTP2: 'on', MESSAGE: 'h2-0' } });
  let n = 0;
  const load = startH2Load(baton.port, { ca: ca.ca, streams: 24, path: () => (++n % 10 === 0 ? '/slow?ms=200' : '/') });
  try {
    await load.waitFor(500);
    for (let i = 1; i <= 5; i++) {
      baton.writeEnv({ MESSAGE: `h2-${i}` });
      t.is((await baton.reload()).msg, 'reload complete');
      await load.waitFor(500);
    }
    // The session moves to the new generation after its GOAWAY (spread over
    // DRAIN_SPREAD_MS, then a PING and a grace): until the newest answer comes.
    t.true(await pollUntil(() => load.bodies.has('h2-5'), 10_000), 'the last generation serves the h2 client');
  } finally {
    await load.stop();
  }
  t.deepEqual(load.failures.slice(0, 5), []);
  t.is(load.counts.failed, 0);
  t.true(load.counts.goaways >= 5, `the client saw GOAWAY: ${JSON.stringify(load.counts)}`);
  t.log(`${load.counts.ok} streams answered; ${load.counts.unsent} requests the client queued but never sent when a GOAWAY came (retried)`);
  t.is((await get(baton.port, '/', { ca: ca.ca })).body, 'h2-5\n', 'an HTTP/1.1 client is served too (ALPN fallback)');
});

test('HTTP/2 drain: streams in flight at a reload complete; the client sees GOAWAY, not RST_STREAM, and its next session lands on the new generation', async (t) => {
  const baton = await startBaton({ t, env: { ...tlsEnv(ca.issue()), HTTP2: 'on', WORKERS: '1', DRAIN_SPREAD_MS: '0' } });
  const session = http2.connect(`https://127.0.0.1:${baton.port}`, { ca: ca.ca, servername: 'localhost' });
  t.teardown(() => session.destroy());
  let goaway = 0;
  session.on('goaway', () => { goaway++; });
  const resets = [];
  const streams = Array.from({ length: 20 }, () => new Promise((resolve, reject) => {
    // Long enough to outlast the reload's boot on a busy machine.
    const s = session.request({ ':path': '/slow?ms=5000' });
    let body = '';
    s.setEncoding('utf8');
    s.on('data', (d) => { body += d; });
    s.on('close', () => { if (s.rstCode) resets.push(s.rstCode); resolve(body); });
    s.on('error', reject);
    s.end();
  }));
  await waitInFlight(baton.port, 20, 5000, ca.ca);
  const since = baton.logs.length;
  t.is((await baton.reload()).msg, 'reload complete');
  const draining = await baton.waitForLog((l) => l.msg === 'draining' && l.generation === 1, { since });
  t.true(/** @type {number} */ (draining.inFlight) >= 20, `the streams were in flight when the drain began: ${draining.inFlight}`);
  const bodies = await Promise.all(streams);
  t.deepEqual(resets, [], 'no stream was reset');
  t.true(bodies.every((b) => b === 'slept 5000 ms in generation 1\n'), bodies[0]);
  t.true(await pollUntil(() => goaway >= 1, 3000), 'GOAWAY received');
  const next = http2.connect(`https://127.0.0.1:${baton.port}`, { ca: ca.ca, servername: 'localhost' });
  t.teardown(() => next.destroy());
  const health = await new Promise((resolve, reject) => {
    const s = next.request({ ':path': '/healthz' });
    let body = '';
    s.setEncoding('utf8');
    s.on('data', (d) => { body += d; });
    s.on('end', () => resolve(JSON.parse(body)));
    s.on('error', reject);
    s.end();
  });
  t.is(/** @type {any} */ (health).generation, 2);
});

test('rotation: a reload with a new certificate serves it to new connections; a connection opened before completes its requests with the old one', async (t) => {
  const first = ca.issue();
  const baton = await startBaton({ t, env: { ...tlsEnv(first), WORKERS: '1', DRAIN_SPREAD_MS: '0' } });
  const before = tlsConnection(baton.port);
  t.teardown(() => before.socket.destroy());
  await before.ready;
  t.is(before.serial(), first.serial);
  t.regex(await before.request('/'), /^HTTP\/1\.1 200/);
  const second = ca.issue();
  t.not(second.serial, first.serial);
  baton.writeEnv(tlsEnv(second));
  t.is((await baton.reload()).msg, 'reload complete');
  const fresh = tlsConnection(baton.port);
  t.teardown(() => fresh.socket.destroy());
  await fresh.ready;
  t.is(fresh.serial(), second.serial, 'new connections see the new certificate');
  const late = await before.request('/');
  t.regex(late, /^HTTP\/1\.1 200/, 'the old connection is still served');
  t.regex(late, /connection: close/i, 'and then asked to reconnect');
  t.is(before.serial(), first.serial);
});

test('sessions resume on the other worker and after a reload (shared ticket keys), TLS 1.3 and 1.2', async (t) => {
  const baton = await startBaton({ t, env: { ...tlsEnv(ca.issue()), WORKERS: '2' } });
  for (const version of /** @type {const} */ (['TLSv1.3', 'TLSv1.2'])) {
    /** @param {Buffer} [session] */
    const connect = async (session) => {
      const c = tlsConnection(baton.port, { minVersion: version, maxVersion: version, ...(session ? { session } : {}) });
      // TLS 1.3 sends its tickets after the handshake; a resumed 1.2 session may send none.
      /** @type {Buffer | undefined} */
      let ticket;
      c.socket.on('session', (s) => { ticket = s; });
      await c.ready;
      const res = await c.request('/healthz');
      const health = JSON.parse(res.slice(res.indexOf('\r\n\r\n') + 4));
      const out = { pid: health.pid, generation: health.generation, reused: c.socket.isSessionReused(), session: /** @type {Buffer} */ (ticket ?? c.socket.getSession() ?? session) };
      c.socket.destroy();
      return out;
    };
    const a = await connect();
    t.false(a.reused);
    // Connections go round-robin: within a few, one lands on the other worker.
    let b = await connect(a.session);
    for (let i = 0; i < 4 && b.pid === a.pid; i++) b = await connect(a.session);
    t.not(b.pid, a.pid, `${version}: landed on the other worker`);
    t.true(b.reused, `${version}: resumed on the other worker`);
    t.is((await baton.reload()).msg, 'reload complete');
    const c = await connect(b.session);
    t.true(c.generation > a.generation, 'a worker of the new generation');
    t.true(c.reused, `${version}: resumed after the reload`);
  }
});

test('a bad, mismatched, expired or missing certificate: start exits 78; a reload is rejected (baton reload 78) naming the file, the old generation serves; baton check says the same; no secret in any output', async (t) => {
  const good = ca.issue();
  const other = ca.issue();
  const expired = ca.issue({ from: new Date('2020-01-01'), to: new Date('2020-01-02') });
  const future = ca.issue({ from: new Date(Date.now() + 86400_000), to: new Date(Date.now() + 2 * 86400_000) });
  const garbage = join(dir, 'garbage.crt');
  writeFileSync(garbage, 'this is not a certificate\n');
  const cases = [
    { name: 'not a certificate', env: { TLS_CERT_FILE: garbage, TLS_KEY_FILE: good.keyFile }, re: /TLS_CERT_FILE .*garbage\.crt: no PEM certificate in it/ },
    { name: 'key of another certificate', env: { TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: other.keyFile }, re: /TLS_KEY_FILE .*\.key does not match the certificate in TLS_CERT_FILE/ },
    { name: 'expired', env: tlsEnv(expired), re: /TLS_CERT_FILE .*: the certificate expired on 2020-01-02/ },
    { name: 'not yet valid', env: tlsEnv(future), re: /TLS_CERT_FILE .*: the certificate is not valid before/ },
    { name: 'missing file', env: { TLS_CERT_FILE: join(dir, 'nope.crt'), TLS_KEY_FILE: good.keyFile }, re: /TLS_CERT_FILE .*nope\.crt: cannot read it: no such file/ },
    { name: 'only one of the two', env: { TLS_CERT_FILE: good.certFile }, re: /TLS_KEY_FILE is missing: TLS_CERT_FILE is set/ },
  ];
  const secrets = [good, other, expired, future].map((c) => readFileSync(c.keyFile, 'utf8').split('\n')[1] ?? 'none');
  const running = await startBaton({ t, env: { ...tlsEnv(good), MESSAGE: 'still the old one' } });
  for (const c of cases) {
    const start = await startBaton({ t, env: c.env, waitReady: false });
    t.is((await start.waitExit()).code, 78, `start: ${c.name}`);
    t.regex(start.stderr, c.re, `start: ${c.name}`);

    running.writeEnv({ TLS_CERT_FILE: '', TLS_KEY_FILE: '', ...c.env });
    const reload = await cli(running.dir, ['reload']);
    t.is(reload.code, 78, `reload: ${c.name}: ${reload.stderr}`);
    t.regex(reload.stderr, c.re, `reload: ${c.name}`);
    t.is((await get(running.port, '/', { ca: ca.ca })).body, 'still the old one\n');

    const check = await cli(running.dir, ['check']);
    t.is(check.code, 78, `check: ${c.name}`);
    t.regex(check.stderr, c.re, `check: ${c.name}`);
    for (const out of [start.stderr, start.dump(), reload.stderr, reload.stdout, check.stderr, check.stdout]) {
      for (const s of secrets) t.false(out.includes(s), `${c.name}: a private key leaked`);
    }
  }
  const status = await cli(running.dir, ['status', '--json']);
  const logs = running.dump() + JSON.stringify(running.logs);
  for (const s of secrets) {
    t.false(status.stdout.includes(s));
    t.false(logs.includes(s));
  }
});

test('a certificate expiring within 7 days: a warning at start and at each reload; its expiry is a metric', async (t) => {
  const soon = ca.issue({ to: new Date(Date.now() + 3 * 86400_000) });
  const baton = await startBaton({ t, env: { ...tlsEnv(soon), METRICS_PORT: '0' } });
  const warn = await baton.waitForLog((l) => l.level === 'warn' && /expires on .*, in less than 7 days: renew it and reload/.test(String(l.msg)));
  t.truthy(warn);
  const since = baton.logs.length;
  t.is((await baton.reload()).msg, 'reload complete');
  t.truthy(baton.logs.slice(since).find((l) => l.level === 'warn' && /in less than 7 days/.test(String(l.msg))));
  const st = JSON.parse((await cli(baton.dir, ['status', '--json'])).stdout);
  const expiry = Number(await metric(st.metrics.port, 'baton_tls_certificate_expiry_seconds'));
  t.true(Math.abs(expiry - (Date.now() / 1000 + 3 * 86400)) < 120, `expiry ${expiry}`);
});

test('turning TLS on or off needs a restart: such a reload is refused and the port keeps speaking what it spoke', async (t) => {
  const baton = await startBaton({ t, env: { ...tlsEnv(ca.issue()) } });
  baton.writeEnv({ TLS_CERT_FILE: '', TLS_KEY_FILE: '' });
  t.regex(String((await baton.reload()).msg), /^reload rejected: turning TLS off .* changes what the listening port speaks; restart baton/);
  t.is((await get(baton.port, '/', { ca: ca.ca })).status, 200);
});

test('failed TLS handshakes are counted', async (t) => {
  const baton = await startBaton({ t, env: { ...tlsEnv(ca.issue()), METRICS_PORT: '0', WORKERS: '1' } });
  // Plain HTTP to a TLS port, and clients that reject the certificate.
  for (let i = 0; i < 2; i++) t.truthy(await get(baton.port, '/', { timeoutMs: 3000 }).then(() => undefined, (e) => e));
  for (let i = 0; i < 2; i++) {
    t.truthy(await new Promise((resolve) => {
      const s = tls.connect({ port: baton.port, host: '127.0.0.1', servername: 'localhost' });
      s.on('error', resolve);
      s.on('secureConnect', () => { s.destroy(); resolve(undefined); });
    }), 'the client did not trust the certificate');
  }
  const st = JSON.parse((await cli(baton.dir, ['status', '--json'])).stdout);
  const failures = async () => Number(await metric(st.metrics.port, 'baton_tls_handshake_failures_total'));
  t.true(await pollUntil(async () => (await failures()) >= 2, 5000), `counted ${await failures()}`);
});

test('HTTP/2 with frameworks: drop-in Fastify, Koa, Hono and node:http apps answer over h2 and HTTP/1.1; an Express app is refused at boot with a clear reason', async (t) => {
  for (const name of ['fastify', 'koa', 'hono', 'http']) {
    const app = await startBaton({ t, env: { ...tlsEnv(ca.issue()), HTTP2: 'yes', WORKERS: '1', APP_MODULE: join(ROOT, 'test', 'fixtures', 'apps', `${name}.mjs`), GREETING: 'fast' } });
    const session = http2.connect(`https://127.0.0.1:${app.port}`, { ca: ca.ca, servername: 'localhost' });
    t.teardown(() => session.destroy());
    const body = await new Promise((resolve, reject) => {
      const s = session.request({ ':path': '/' });
      let text = '';
      s.setEncoding('utf8');
      s.on('data', (d) => { text += d; });
      s.on('end', () => resolve(text));
      s.on('error', reject);
      s.end();
    });
    t.is(body, `fast from ${name}\n`, `${name} over h2`);
    t.is((await get(app.port, '/', { ca: ca.ca })).body, `fast from ${name}\n`, `${name} over HTTP/1.1`);
  }

  const express = await startBaton({ t, env: { ...tlsEnv(ca.issue()), HTTP2: 'true', WORKERS: '1', APP_MODULE: join(ROOT, 'test', 'fixtures', 'apps', 'express.mjs') }, waitReady: false });
  t.is((await express.waitExit()).code, 3);
  t.truthy(express.logs.find((l) => /^startup failed: HTTP2 is on, but the app is an Express app/.test(String(l.msg))));
});

test('a drop-in app\'s own https server gets the shared ticket keys: its sessions resume on the other worker and after a reload', async (t) => {
  const c = ca.issue();
  const baton = await startBaton({ t, env: { WORKERS: '2', APP_MODULE: join(ROOT, 'test', 'fixtures', 'apps', 'https.mjs'), APP_CERT_FILE: c.certFile, APP_KEY_FILE: c.keyFile } });
  /** @param {Buffer} [session] */
  const connect = async (session) => {
    const conn = tlsConnection(baton.port, { ...(session ? { session } : {}) });
    /** @type {Buffer | undefined} */
    let ticket;
    conn.socket.on('session', (s) => { ticket = s; });
    await conn.ready;
    const res = await conn.request('/');
    const body = JSON.parse(res.slice(res.indexOf('\r\n\r\n') + 4));
    const out = { ...body, reused: conn.socket.isSessionReused(), session: /** @type {Buffer} */ (ticket ?? conn.socket.getSession() ?? session) };
    conn.socket.destroy();
    return out;
  };
  const a = await connect();
  let b = await connect(a.session);
  for (let i = 0; i < 4 && b.pid === a.pid; i++) b = await connect(a.session);
  t.not(b.pid, a.pid);
  t.true(b.reused, 'resumed on the other worker');
  t.is((await baton.reload()).msg, 'reload complete');
  const after = await connect(b.session);
  t.is(after.generation, 2);
  t.true(after.reused, 'resumed after the reload');
});

test('deploy/healthcheck.mjs follows the TLS setting: HTTPS when TLS_CERT_FILE is set', async (t) => {
  const c = ca.issue();
  const baton = await startBaton({ t, env: { ...tlsEnv(c), WORKERS: '1' } });
  /** @param {Record<string, string>} env */
  const probe = (env) => new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'deploy', 'healthcheck.mjs')], { env: { PATH: process.env.PATH ?? '', PORT: String(baton.port), ...env } }, (err, _out, stderr) => resolve({ code: err ? /** @type {any} */ (err).code : 0, stderr }));
  });
  t.like(await probe({ TLS_CERT_FILE: c.certFile }), { code: 0 });
  t.like(await probe({}), { code: 1 }, 'plain HTTP to a TLS port is not healthy');
  const plain = await startBaton({ t, env: { WORKERS: '1' } });
  t.like(await new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'deploy', 'healthcheck.mjs'), String(plain.port)], { env: { PATH: process.env.PATH ?? '' } }, (err) => resolve({ code: err ? /** @type {any} */ (err).code : 0 }));
  }), { code: 0 });
});
