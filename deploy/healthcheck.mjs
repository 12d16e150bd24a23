// Container health probe: `node deploy/healthcheck.mjs` exits 0 when a worker
// answers baton's health path with 200, 1 otherwise. Used by the Dockerfile's
// HEALTHCHECK (slim and alpine Node images have no curl or wget).
//
// It reads PORT and HEALTH_PATH from the environment (defaults 8080 and
// /healthz). If you set them in baton's .env instead, set them in the
// container's environment too, or pass them: node healthcheck.mjs 9000 /health
// (node:http rather than fetch: fetch refuses some ports, e.g. 6000.)
import http from 'node:http';

const port = Number(process.argv[2] ?? process.env.PORT ?? 8080);
const path = process.argv[3] ?? process.env.HEALTH_PATH ?? '/healthz';
const where = `http://127.0.0.1:${port}${path}`;

const req = http.get({ host: '127.0.0.1', port, path, timeout: 2500, agent: false }, (res) => {
  res.resume();
  res.on('end', () => {
    if (res.statusCode === 200) process.exit(0);
    console.error(`${where}: HTTP ${res.statusCode}`);
    process.exit(1);
  });
});
req.on('timeout', () => req.destroy(new Error('timed out')));
req.on('error', (err) => {
  console.error(`${where}: ${err.code ?? err.message}`);
  process.exit(1);
});
