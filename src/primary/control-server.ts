// The primary's end of the control channel: a Unix socket (mode 0600) that
// the `baton` CLI talks to. A stale socket left by a crashed primary is
// replaced; a live one (another primary here) is never stolen.
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { MAX_REQUEST_BYTES, parseRequest, type ControlRequest, type ControlResponse } from '../control.js';

/** A client that sends no complete request in this time is dropped. */
const REQUEST_TIMEOUT_MS = 10_000;

export class ControlSocketInUse extends Error {}

export type ControlHandler = (req: ControlRequest) => Promise<ControlResponse> | ControlResponse;

function answersOn(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
}

/** Makes `path` free to bind, or throws if another primary is listening on it. */
async function claim(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new ControlSocketInUse(`${path} exists and is not a socket; remove it or set CONTROL_SOCKET`);
  if (await answersOn(path)) throw new ControlSocketInUse(`another baton primary is running here: ${path} answers (use \`baton status\`, or set CONTROL_SOCKET)`);
  unlinkSync(path); // stale: left by a primary that was killed
}

export interface ControlServer {
  close(): void;
}

export async function startControlServer(path: string, handle: ControlHandler, onError: (err: Error) => void): Promise<ControlServer> {
  await claim(path);
  const server: Server = createServer((socket) => {
    socket.setEncoding('utf8');
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => {});
    let buffer = '';
    const reply = (res: ControlResponse): void => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(res)}\n`);
    };
    const onData = (chunk: string): void => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) {
        if (Buffer.byteLength(buffer) > MAX_REQUEST_BYTES) {
          socket.off('data', onData);
          socket.end(`${JSON.stringify({ ok: false, kind: 'bad-request', reason: `request larger than ${MAX_REQUEST_BYTES} bytes` } satisfies ControlResponse)}\n`);
        }
        return;
      }
      socket.off('data', onData);
      socket.setTimeout(0);
      const req = parseRequest(buffer.slice(0, nl));
      if (typeof req === 'string') {
        socket.end(`${JSON.stringify({ ok: false, kind: 'bad-request', reason: req } satisfies ControlResponse)}\n`);
        return;
      }
      Promise.resolve(handle(req)).then((res) => {
        reply(res);
        // `stop` keeps the connection: it closes when the primary exits,
        // which is how `baton stop` knows the shutdown is over.
        if (req.cmd !== 'stop') socket.end();
      }, (err: Error) => {
        onError(err);
        socket.end(`${JSON.stringify({ ok: false, kind: 'failed', reason: err.message } satisfies ControlResponse)}\n`);
      });
    };
    socket.on('data', onData);
  });
  // Only the owner may talk to the primary: the socket is created 0600.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => { server.off('error', reject); resolve(); });
    });
  } finally {
    process.umask(umask);
  }
  server.on('error', onError);
  return {
    close() {
      server.close();
      try { unlinkSync(path); } catch { /* already gone */ }
    },
  };
}
