// @ts-check
// The node:cluster primary of the comparison apps (cluster.js, cluster-tls.js):
// forks the workers, prints one "ready" line once all listen, and on
// SIGTERM/SIGINT stops them and exits once they are gone (5 s at most).
import cluster from 'node:cluster';

/** @param {{ workers: number }} cfg @param {Record<string, unknown>} [extra] more fields for the ready line */
export function runClusterPrimary(cfg, extra = {}) {
  /** @type {number[]} */
  const pids = [];
  for (let i = 0; i < cfg.workers; i++) {
    const w = cluster.fork();
    w.on('listening', (addr) => {
      pids.push(/** @type {number} */ (w.process.pid));
      if (pids.length === cfg.workers) {
        process.stdout.write(JSON.stringify({ msg: 'ready', role: 'primary', pid: process.pid, port: addr.port, workers: pids, ...extra }) + '\n');
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
}
