// The data path: every accepted connection goes to the next ready worker of
// the serving generation. A connection with no worker to take it waits (the
// port never refuses while the primary is up). The primary keeps its copy of
// a socket until the worker acknowledges it, so a worker that dies before
// taking a connection does not lose it: it goes to another worker.
import type { Socket } from 'node:net';
import type { WorkerHandle } from './worker-handle.js';

interface InFlight {
  readonly socket: Socket;
  readonly listener: number;
  readonly worker: WorkerHandle;
}

interface Waiting {
  readonly socket: Socket;
  readonly listener: number;
}

const ignoreError = (): void => {};

export class Dispatcher {
  private targets: WorkerHandle[] = [];
  private cursor = 0;
  private readonly waiting: Waiting[] = [];
  private readonly unacked = new Map<number, InFlight>();
  private seq = 0;
  private dispatchedCount = 0;

  get stats(): { waiting: number; unacked: number; dispatched: number } {
    return { waiting: this.waiting.length, unacked: this.unacked.size, dispatched: this.dispatchedCount };
  }

  /** A socket listener number `listener` accepted (paused: the primary never reads it). */
  accept(socket: Socket, listener: number): void {
    // A client may reset while its socket waits here; that must not crash the primary.
    socket.on('error', ignoreError);
    this.dispatch(socket, listener);
  }

  /** Switch the whole target set at once (a generation becomes the serving one). */
  setTargets(workers: readonly WorkerHandle[]): void {
    this.targets = [...workers];
    this.flush();
  }

  add(worker: WorkerHandle): void {
    if (!this.targets.includes(worker)) this.targets.push(worker);
    this.flush();
  }

  /** Stop sending new connections to `worker` (it drains or died). */
  remove(worker: WorkerHandle): void {
    this.targets = this.targets.filter((w) => w !== worker);
  }

  /** The worker received connection `id`: the primary's copy can go. */
  ack(id: number): void {
    const entry = this.unacked.get(id);
    if (!entry) return;
    this.unacked.delete(id);
    // Closes only this process's descriptor; the worker holds its own.
    entry.socket.destroy();
  }

  /** `worker` exited: hand its unacknowledged connections to someone else. */
  workerGone(worker: WorkerHandle): void {
    this.remove(worker);
    for (const [id, entry] of this.unacked) {
      if (entry.worker !== worker) continue;
      this.unacked.delete(id);
      this.dispatch(entry.socket, entry.listener);
    }
  }

  /** On shutdown: connections that no worker took are closed. */
  closeWaiting(): void {
    for (const { socket } of this.waiting.splice(0)) socket.destroy();
  }

  private pick(): WorkerHandle | undefined {
    for (let tries = 0; tries < this.targets.length; tries++) {
      this.cursor = (this.cursor + 1) % this.targets.length;
      const worker = this.targets[this.cursor];
      if (worker && worker.state === 'ready' && worker.proc.connected()) return worker;
    }
    return undefined;
  }

  private dispatch(socket: Socket, listener: number, worker = this.pick()): void {
    if (socket.destroyed) return;
    if (!worker) {
      this.waiting.push({ socket, listener });
      return;
    }
    const id = ++this.seq;
    this.unacked.set(id, { socket, listener, worker });
    this.dispatchedCount++;
    worker.proc.send({ type: 'conn', id, listener }, socket, (err) => {
      if (!err || !this.unacked.has(id)) return;
      this.unacked.delete(id);
      this.dispatch(socket, listener);
    });
  }

  /** Hands waiting connections out, as long as some worker can take them. */
  private flush(): void {
    for (let worker = this.pick(); worker && this.waiting.length > 0; worker = this.pick()) {
      const next = this.waiting.shift() as Waiting;
      this.dispatch(next.socket, next.listener, worker);
    }
  }
}
