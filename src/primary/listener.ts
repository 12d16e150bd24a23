// The primary owns the listening socket for its whole life (Node's cluster
// closes it when the last worker leaves, refusing connections). Sockets are
// accepted paused, so the primary never reads a byte: it only passes them on.
import { createServer, type Server, type Socket } from 'node:net';

export interface Listener {
  readonly address: { host: string; port: number };
  close(): void;
}

export function listen(host: string, port: number, onConnection: (socket: Socket) => void, onError: (err: Error) => void): Promise<Listener> {
  const server: Server = createServer({ pauseOnConnect: true, noDelay: true }, onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 2048 }, () => {
      server.off('error', reject);
      // After binding, an error (e.g. EMFILE on accept) is logged, not fatal.
      server.on('error', onError);
      const addr = server.address();
      const bound = typeof addr === 'object' && addr ? { host: addr.address, port: addr.port } : { host, port };
      resolve({
        address: bound,
        close: () => { if (server.listening) server.close(); },
      });
    });
  });
}
