// @ts-check
// Ceiling for the TLS scenario: node:cluster, N workers (WORKERS, default 2),
// the shared handler, no reload logic, TLS terminated in the workers as baton
// does. PROTO=https: `https.createServer` (HTTP/1.1 only, like baton with
// HTTP2 off); PROTO=h2: `http2.createSecureServer` with allowHTTP1, so ALPN
// offers h2 then http/1.1, like baton with HTTP2 on. TLS_CERT_FILE and
// TLS_KEY_FILE: the same PEM files baton gets; TLS_MIN_VERSION as baton's
// default (TLSv1.2).
import cluster from 'node:cluster';
import { runClusterPrimary } from './cluster-primary.js';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import { createHandler, envConfig } from './handler.js';

const cfg = envConfig();
const proto = process.env.PROTO === 'h2' ? 'h2' : 'https';
if (cluster.isPrimary) {
  runClusterPrimary(cfg, { proto });
} else {
  const tlsOpts = {
    cert: fs.readFileSync(/** @type {string} */ (process.env.TLS_CERT_FILE)),
    key: fs.readFileSync(/** @type {string} */ (process.env.TLS_KEY_FILE)),
    minVersion: /** @type {'TLSv1.2'|'TLSv1.3'} */ (process.env.TLS_MIN_VERSION || 'TLSv1.2'),
  };
  // No isDraining: the handler's `Connection: close` is a connection-specific
  // header that HTTP/2 forbids, and this server is only ever stopped, never
  // drained under measurement.
  const handler = /** @type {any} */ (createHandler({ message: cfg.message, generation: cfg.generation, configVersion: cfg.message }));
  const server = proto === 'h2'
    ? http2.createSecureServer({ ...tlsOpts, allowHTTP1: true }, handler)
    : https.createServer({ ...tlsOpts, keepAliveTimeout: 5000 }, handler);
  // Baton answers 5 s idle keep-alive; the same here (h1 only).
  if (server instanceof https.Server) server.keepAliveTimeout = 5000;
  server.listen(cfg.port, cfg.host);
  for (const sig of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
    process.once(sig, () => {
      server.close(() => process.exit(0));
      if (server instanceof https.Server) server.closeAllConnections();
      setTimeout(() => process.exit(0), 2000).unref();
    });
  }
}
