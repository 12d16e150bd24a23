// Container health probe: `node deploy/healthcheck.mjs` exits 0 when a worker
// answers baton's health path with 200, 1 otherwise. Used by the Dockerfile's
// HEALTHCHECK (slim and alpine Node images have no curl or wget).
//
// It reads PORT, HEALTH_PATH and TLS_CERT_FILE from the environment (defaults
// 8080, /healthz, no TLS): with TLS_CERT_FILE set it speaks HTTPS to
// 127.0.0.1, without checking the certificate (it asks whether a worker
// answers, not whether the certificate fits the host name). If you set them
// in baton's .env instead, set them in the container's environment too, or
// pass them: node healthcheck.mjs 9000 /health [https]
// (node:http rather than fetch: fetch refuses some ports, e.g. 6000.)
import http from 'node:http';
import https from 'node:https';

const port = Number(process.argv[2] ?? process.env.PORT ?? 8080);
const path = process.argv[3] ?? process.env.HEALTH_PATH ?? '/healthz';
const secure = (process.argv[4] ?? (process.env.TLS_CERT_FILE ? 'https' : 'http')) === 'https';
const where = `${secure ? 'https' : 'http'}://127.0.0.1:${port}${path}`;

const client = secure ? https : http;
const req = client.get({ host: '127.0.0.1', port, path, timeout: 2500, agent: false, ...(secure ? { rejectUnauthorized: false } : {}) }, (res) => {
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
