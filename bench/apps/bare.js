// @ts-check
// Floor: one process, plain node:http, the shared handler.
import { startServer, envConfig } from './handler.js';

const cfg = envConfig();
const { listening, drain } = startServer({ ...cfg, configVersion: cfg.message });
const addr = /** @type {import('node:net').AddressInfo} */ (await listening);
process.stdout.write(JSON.stringify({ msg: 'ready', role: 'bare', pid: process.pid, port: addr.port, workers: [process.pid] }) + '\n');
for (const sig of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
  process.once(sig, async () => { await drain(5000); process.exit(0); });
}
