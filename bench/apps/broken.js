// @ts-check
// Deliberately broken server for validating the bench's failure accounting.
// Every request (except GET /__stats) gets a sequence number n (1-based):
//   n % RESET_EVERY === 0 -> the socket is destroyed mid-request, no response
//   else n % HANG_EVERY === 0 -> never answered (the client must time out)
//   else n % ERROR_EVERY === 0 -> 503
//   else 200 with the shared handler.
// GET /__stats returns the server's own tally, which the client's count must match.
import http from 'node:http';
import { createHandler, envConfig } from './handler.js';

const cfg = envConfig();
const RESET_EVERY = Number(process.env.RESET_EVERY || 0);
const HANG_EVERY = Number(process.env.HANG_EVERY || 0);
const ERROR_EVERY = Number(process.env.ERROR_EVERY || 0);
const handler = createHandler({ message: cfg.message, generation: 1 });
const stats = { requests: 0, reset: 0, hang: 0, non2xx: 0, ok: 0 };
/** @type {Set<http.ServerResponse>} */
const hanging = new Set();
const server = http.createServer((req, res) => {
  if (req.url === '/__stats') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  const n = ++stats.requests;
  if (RESET_EVERY && n % RESET_EVERY === 0) {
    stats.reset++;
    req.socket.destroy();
    return;
  }
  if (HANG_EVERY && n % HANG_EVERY === 0) {
    stats.hang++;
    hanging.add(res);
    res.on('close', () => hanging.delete(res));
    return;
  }
  if (ERROR_EVERY && n % ERROR_EVERY === 0) {
    stats.non2xx++;
    res.writeHead(503, { 'Content-Type': 'text/plain' });
    res.end('sabotaged\n');
    return;
  }
  stats.ok++;
  handler(req, res);
});
server.keepAliveTimeout = 5000;
server.listen(cfg.port, cfg.host, () => {
  const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
  process.stdout.write(JSON.stringify({ msg: 'ready', role: 'broken', pid: process.pid, port: addr.port }) + '\n');
});
process.once('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)); });
