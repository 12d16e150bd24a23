// Unix socket paths the primary binds (the control socket, LISTEN's unix:
// addresses). A stale socket file left by a killed primary is replaced; one
// that a live process answers on is never stolen.
import { chmodSync, existsSync, lstatSync, renameSync, unlinkSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { MAX_SOCKET_PATH } from '../config.js';

export class SocketInUse extends Error {}

function answersOn(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
}

/** Makes `path` free to bind, or throws SocketInUse naming `what` answers there. */
export async function claimSocketPath(path: string, inUse: string, notSocket: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new SocketInUse(notSocket);
  if (await answersOn(path)) throw new SocketInUse(inUse);
  unlinkSync(path); // stale: left by a process that was killed
}

/**
 * Binds `server` to the Unix socket `path` with file mode `mode`, through a
 * temporary name renamed into place: the path never shows a half-made
 * socket, and (the reason) the server does not know the path. libuv removes
 * the path of a socket it bound when the server closes, and a primary that
 * hands its sockets to a new one (`baton upgrade`) closes its servers while
 * the new primary still listens on the same sockets: their names must stay.
 * So this primary removes the path itself at exit (see Listeners.cleanup).
 */
export async function listenUnix(server: Server, path: string, mode: number, backlog: number): Promise<void> {
  const tmp = join(dirname(path), `.baton-${process.pid}-${Date.now() % 1e6}.sock`);
  if (Buffer.byteLength(tmp) > MAX_SOCKET_PATH) throw new Error(`the directory of ${path} is too long a path for a Unix socket (${MAX_SOCKET_PATH} bytes with a temporary name): use a shorter one`);
  const umask = process.umask(~mode & 0o777);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: tmp, backlog }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(umask);
  }
  try {
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (err) {
    server.close();
    throw err;
  }
}
