// @ts-check
// Ceiling: node:cluster, N workers (WORKERS, default 2), the shared handler, no reload logic.
import cluster from 'node:cluster';
import { runClusterPrimary } from './cluster-primary.js';
import { startServer, envConfig } from './handler.js';

const cfg = envConfig();
if (cluster.isPrimary) {
  runClusterPrimary(cfg);
} else {
  const { listening, drain } = startServer({ ...cfg, configVersion: cfg.message });
  await listening;
  for (const sig of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
    process.once(sig, async () => { await drain(5000); process.exit(0); });
  }
}
