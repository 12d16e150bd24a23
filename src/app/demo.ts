// The built-in demo app: GET / answers MESSAGE, GET /slow?ms=N answers after
// N ms so a drain can be watched, anything else is 404.
import type { AppContext, RequestListener } from '../worker/app-host.js';

/** Upper bound for /slow, so a typo cannot hold a worker for hours. */
export const MAX_SLOW_MS = 60_000;

function send(res: Parameters<RequestListener>[1], status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function createApp(ctx: AppContext): RequestListener {
  const message = ctx.config.message;
  const body = `${message}\n`;
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    if (req.url === '/') return send(res, 200, body); // the hot path: no URL parsing
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/') return send(res, 200, body);
    if (url.pathname === '/slow') {
      const raw = url.searchParams.get('ms') ?? '1000';
      const ms = Number(raw);
      if (!Number.isInteger(ms) || ms < 0 || ms > MAX_SLOW_MS) return send(res, 400, `ms must be a whole number from 0 to ${MAX_SLOW_MS}\n`);
      const timer = setTimeout(() => send(res, 200, `slept ${ms} ms in generation ${ctx.generation}\n`), ms);
      res.once('close', () => clearTimeout(timer));
      return;
    }
    send(res, 404, 'not found\n');
  };
}
