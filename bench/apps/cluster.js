// @ts-check
// Ceiling: node:cluster, N workers (WORKERS, default 2), the shared handler, no reload logic.
import cluster from 'node:cluster';
import { startServer, envConfig } from './handler.js';

const cfg = envConfig();
if (cluster.isPrimary) {
  const pids = [];
  let port = 0;
  for (let i = 0; i < cfg.workers; i++) {
    const w = cluster.fork();
    w.on('listening', (addr) => {
      port = addr.port;
      pids.push(w.process.pid);
      if (pids.length === cfg.workers) {
        process.stdout.write(JSON.stringify({ msg: 'ready', role: 'primary', pid: process.pid, port, workers: pids }) + '\n');
      }
    });
  }
  let stopping = false;
  for (const sig of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
    process.once(sig, () => {
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      setTimeout(() => process.exit(0), 5000).unref();
    });
  }
  cluster.on('exit', () => {
    if (stopping && Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
} else {
  const { listening, drain } = startServer({ ...cfg, configVersion: cfg.message });
  await listening;
  for (const sig of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
    process.once(sig, async () => { await drain(5000); process.exit(0); });
  }
}
