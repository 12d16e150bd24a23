// @ts-check
// The request handler shared by every non-baton server in the bench. It mirrors
// baton's built-in demo app: GET / -> MESSAGE (text/plain, 200), GET /slow?ms=N
// -> answers after N ms, GET /healthz -> JSON {pid, generation, configVersion}.
import http from 'node:http';

/**
 * @param {{ message: string, generation: number|string, configVersion?: string|number,
 *           isDraining?: () => boolean }} opts
 * @returns {(req: http.IncomingMessage, res: http.ServerResponse) => void}
 */
export function createHandler(opts) {
  // Exactly baton's demo app's hot path (src/app/demo.ts): a string body and
  // the same headers. Node sends a string body in one chunk with the
  // headers; a Buffer body measured ~4% more CPU per request here.
  const body = `${opts.message}\n`;
  const isDraining = opts.isDraining ?? (() => false);
  return (req, res) => {
    if (isDraining()) res.setHeader('Connection', 'close');
    const url = req.url ?? '/';
    if (url === '/') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (url.startsWith('/slow')) {
      const ms = Math.min(60_000, Math.max(0, Number(new URL(url, 'http://x').searchParams.get('ms') ?? 0) || 0));
      const t = setTimeout(() => {
        if (isDraining()) res.setHeader('Connection', 'close');
        const b = Buffer.from(`slept ${ms}ms\n`);
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': b.length });
        res.end(b);
      }, ms);
      res.on('close', () => clearTimeout(t));
      return;
    }
    if (url === '/healthz') {
      const b = Buffer.from(JSON.stringify({ pid: process.pid, generation: opts.generation, configVersion: opts.configVersion ?? null }));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': b.length });
      res.end(b);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  };
}

/**
 * Start an HTTP server with the shared handler and a graceful drain():
 * stop accepting, answer in-flight requests with Connection: close, close idle
 * keep-alive sockets, resolve when the server has closed.
 * @param {{ port: number, host: string, message: string, generation?: number|string,
 *           configVersion?: string|number }} o
 */
export function startServer(o) {
  let draining = false;
  const handler = createHandler({
    message: o.message,
    generation: o.generation ?? 1,
    configVersion: o.configVersion,
    isDraining: () => draining,
  });
  const server = http.createServer({ keepAliveTimeout: 5000 }, handler);
  server.keepAliveTimeout = 5000;
  const listening = new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve(server.address()));
  });
  /** @param {number} failsafeMs */
  function drain(failsafeMs = 10_000) {
    draining = true;
    return new Promise((resolve) => {
      const t = setTimeout(() => { server.closeAllConnections(); resolve(undefined); }, failsafeMs);
      t.unref();
      server.close(() => { clearTimeout(t); resolve(undefined); });
      server.closeIdleConnections();
    });
  }
  return { server, listening, drain };
}

/** Read the common env knobs of the bench apps. */
export function envConfig(env = process.env) {
  return {
    port: Number(env.PORT ?? 0),
    host: env.HOST || '127.0.0.1',
    message: env.MESSAGE ?? 'Before hot reload',
    workers: Math.max(1, Number(env.WORKERS ?? 2) || 2),
    generation: env.BENCH_GENERATION ?? '1',
  };
}
