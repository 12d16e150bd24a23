// @ts-check
// DEV ONLY: a minimal stand-in implementing baton's documented contract (JSON log
// lines "ready", "reload complete", "generation retired", "shutdown complete";
// SIGHUP rolling reload re-reading .env; SIGTERM ordered shutdown) so the bench
// harness can be exercised before/without the real core. Run the bench against
// it with BATON_ENTRY=bench/dev/mock-baton.js. Not used in normal bench runs.
import cluster from 'node:cluster';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from '../apps/handler.js';

const envFile = process.env.ENV_FILE || path.resolve('.env');
function readEnv() {
  /** @type {Record<string,string>} */
  const o = {};
  for (const line of fs.readFileSync(envFile, 'utf8').split('\n')) {
    const m = /^\s*([A-Z_]+)\s*=\s*(.*)\s*$/.exec(line);
    if (m) o[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return o;
}
/** @param {Record<string, unknown>} o */
const log = (o) => process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), role: cluster.isPrimary ? 'primary' : 'worker', pid: process.pid, ...o }) + '\n');

if (cluster.isPrimary) {
  let generation = 0;
  /** @type {import('node:cluster').Worker[]} */
  let current = [];
  let busy = false;
  let port = 0;
  /** @param {Record<string,string>} env */
  const spawnGen = (env) => new Promise((resolve) => {
    generation++;
    const n = Number(env.WORKERS || 2);
    const ws = [];
    let ready = 0;
    for (let i = 0; i < n; i++) {
      const w = cluster.fork({ ...env, PORT: String(port || env.PORT || 0), GEN: String(generation) });
      w.on('listening', (a) => { port = a.port; if (++ready === n) resolve(ws); });
      ws.push(w);
    }
  });
  const first = readEnv();
  current = /** @type {any} */ (await spawnGen(first));
  log({ msg: 'ready', port, generation, workers: current.map((w) => w.process.pid) });
  process.on('SIGHUP', async () => {
    if (busy) { log({ msg: 'reload rejected', reason: 'busy', generation }); return; }
    busy = true;
    const t0 = performance.now();
    const old = current;
    current = /** @type {any} */ (await spawnGen(readEnv()));
    log({ msg: 'reload complete', generation, durationMs: Math.round(performance.now() - t0) });
    await Promise.all(old.map((w) => new Promise((r) => { w.once('exit', r); w.send('drain'); w.disconnect(); })));
    log({ msg: 'generation retired', generation: generation - 1, durationMs: Math.round(performance.now() - t0) });
    busy = false;
  });
  process.on('SIGTERM', async () => {
    await Promise.all(current.map((w) => new Promise((r) => { w.once('exit', r); w.send('drain'); w.disconnect(); })));
    log({ msg: 'shutdown complete', generation });
    process.exit(0);
  });
} else {
  const env = process.env;
  const { listening, drain } = startServer({ port: Number(env.PORT), host: env.HOST || '127.0.0.1', message: env.MESSAGE ?? 'Before hot reload', generation: Number(env.GEN), configVersion: env.MESSAGE });
  await listening;
  process.on('message', async (m) => { if (m === 'drain') { await drain(10_000); process.exit(0); } });
  process.on('SIGTERM', () => {});
}
