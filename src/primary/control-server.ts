// The primary's end of the control channel: a Unix socket (mode 0600) that
// the `baton` CLI talks to. A stale socket left by a crashed primary is
// replaced; a live one (another primary here) is never stolen.
import { unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { MAX_REQUEST_BYTES, parseRequest, type ControlRequest, type ControlResponse } from '../control.js';
import { claimSocketPath, listenUnix, SocketInUse } from './unix-socket.js';

/** A client that sends no complete request in this time is dropped. */
const REQUEST_TIMEOUT_MS = 10_000;

export { SocketInUse as ControlSocketInUse };

export type ControlHandler = (req: ControlRequest) => Promise<ControlResponse> | ControlResponse;

/** Makes `path` free to bind, or throws if another primary is listening on it. */
function claim(path: string): Promise<void> {
  return claimSocketPath(path,
    `another baton primary is running here: ${path} answers (use \`baton status\`, or set CONTROL_SOCKET)`,
    `${path} exists and is not a socket; remove it or set CONTROL_SOCKET`);
}

export interface ControlServer {
  /** Starts answering on an inherited socket (a no-op for a bound one). */
  start(): Promise<void>;
  /** The listening handle, to hand over to a new primary. */
  readonly handle: unknown;
  /** Stops answering; the socket file stays (a new primary may answer on it now). */
  close(): void;
  /** Removes the socket file (at a shutdown). */
  removeFile(): void;
}

function makeServer(handle: ControlHandler): Server {
  return createServer((socket) => {
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
        socket.end(`${JSON.stringify({ ok: false, kind: 'failed', reason: err.message } satisfies ControlResponse)}\n`);
      });
    };
    socket.on('data', onData);
  });
}

function controlServer(server: Server, path: string, start: () => Promise<void>): ControlServer {
  return {
    start,
    get handle() { return (server as unknown as { _handle: unknown })._handle; },
    close() { if (server.listening) server.close(); },
    removeFile() {
      try { unlinkSync(path); } catch { /* already gone */ }
    },
  };
}

/** Binds the control socket at `path` (mode 0600: only the owner may talk to the primary). */
export async function startControlServer(path: string, handle: ControlHandler, onError: (err: Error) => void): Promise<ControlServer> {
  await claim(path);
  const server = makeServer(handle);
  await listenUnix(server, path, 0o600, 64);
  server.on('error', onError);
  return controlServer(server, path, () => Promise.resolve());
}

/** The control socket a replaced primary handed over (`fd`): it answers once started. */
export function inheritedControlServer(fd: number, path: string, handle: ControlHandler, onError: (err: Error) => void): ControlServer {
  const server = makeServer(handle);
  server.on('error', onError);
  return controlServer(server, path, () => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => { server.off('error', reject); resolve(); });
  }));
}
