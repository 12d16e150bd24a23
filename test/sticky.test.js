// @ts-check
// STICKY=ip: the primary routes each connection by the client's address, so
// socket.io's default transports (HTTP long-polling first) work with
// several workers. On loopback every client is 127.0.0.1, so clients bind
// distinct loopback addresses (127.0.0.2, 127.0.0.3, ...).
import test from 'ava';
import http from 'node:http';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { FIXTURES, startBaton } from './helpers/baton.js';

/** GET /healthz on a new connection from `localAddress`: the answering worker's pid. */
function pidFrom(port, localAddress) {
  return /** @type {Promise<number>} */ (new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/healthz', localAddress, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(JSON.parse(body).pid));
    }).on('error', reject);
  }));
}

test('each client address lands on one worker, every connection; the clients are spread over both workers', async (t) => {
  const baton = await startBaton({ t, env: { STICKY: 'ip', WORKERS: '2' } });
  /** @type {Map<string, Set<number>>} */
  const seen = new Map();
  for (let n = 2; n <= 13; n++) {
    const address = `127.0.0.${n}`;
    const pids = new Set();
    for (let i = 0; i < 6; i++) pids.add(await pidFrom(baton.port, address));
    seen.set(address, pids);
  }
  for (const [address, pids] of seen) t.is(pids.size, 1, `${address} went to ${[...pids]}`);
  const workers = new Set([...seen.values()].flatMap((p) => [...p]));
  t.is(workers.size, 2, 'both workers hold clients');
  // Without STICKY the primary hands the same client's connections out in
  // turn. (DISPATCH=shared, the default, promises no order: the least-loaded
  // worker, or whichever accepts first.)
  const plain = await startBaton({ t, env: { WORKERS: '2', DISPATCH: 'primary' } });
  const pids = new Set();
  for (let i = 0; i < 6; i++) pids.add(await pidFrom(plain.port, '127.0.0.2'));
  t.is(pids.size, 2);
});

/**
 * A socket.io client (default transports: long-polling, then an upgrade to
 * WebSocket) from `localAddress`; resolves with its echoes.
 * @param {number} port @param {string} localAddress @param {string[]} [transports]
 */
async function socketIoEcho(port, localAddress, transports = ['polling', 'websocket']) {
  // No keep-alive: every poll on a new connection, as a browser's several connections would be.
  const agent = new http.Agent({ localAddress, keepAlive: false });
  const socket = io(`http://127.0.0.1:${port}`, { agent: /** @type {any} */ (agent), transports, reconnection: false, timeout: 4000 });
  try {
    await new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(undefined));
      socket.once('connect_error', reject);
    });
    const first = await socket.timeout(3000).emitWithAck('echo', 'a');
    const second = await socket.timeout(3000).emitWithAck('echo', 'b');
    return { first, second, transport: socket.io.engine.transport.name };
  } finally {
    socket.close();
    agent.destroy();
  }
}

test('socket.io with its default transports (polling first) completes its handshake and exchanges messages with 2 workers', async (t) => {
  const baton = await startBaton({ t, env: { STICKY: 'ip', WORKERS: '2', APP_MODULE: join(FIXTURES, 'apps', 'socketio.mjs'), GREETING: 'sticky' } });
  const pids = new Set();
  for (let n = 2; n <= 7; n++) {
    for (const transports of [['polling', 'websocket'], ['polling']]) {
      const r = await socketIoEcho(baton.port, `127.0.0.${n}`, transports);
      t.regex(/** @type {string} */ (r.first), /^sticky a \d+$/, transports.join());
      t.regex(/** @type {string} */ (r.second), /^sticky b \d+$/, transports.join());
      pids.add(String(r.first).split(' ').pop());
    }
  }
  t.is(pids.size, 2, 'sessions on both workers');
  // Round-robin breaks long-polling: its requests reach a worker that never heard of the session.
  const plain = await startBaton({ t, env: { WORKERS: '2', APP_MODULE: join(FIXTURES, 'apps', 'socketio.mjs') } });
  const results = await Promise.allSettled([2, 3, 4, 5].map((n) => socketIoEcho(plain.port, `127.0.0.${n}`, ['polling'])));
  t.true(results.some((r) => r.status === 'rejected'), 'without STICKY, polling sessions fail');
});

test('STICKY=ip with a shared accept queue or a Unix socket listener is a config error (exit 78)', async (t) => {
  const shared = await startBaton({ t, env: { STICKY: 'ip', DISPATCH: 'shared' }, waitReady: false });
  t.is((await shared.waitExit()).code, 78);
  t.regex(shared.stderr, /STICKY=ip needs DISPATCH=primary/);
  const unix = await startBaton({ t, env: { STICKY: 'ip', LISTEN: '127.0.0.1:0,unix:/tmp/baton-sticky-test.sock' }, waitReady: false });
  t.is((await unix.waitExit()).code, 78);
  t.regex(unix.stderr, /STICKY=ip cannot route connections of unix:/);
});
