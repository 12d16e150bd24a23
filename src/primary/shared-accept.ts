// DISPATCH=shared: the serving workers accept from the listening sockets
// themselves, from one kernel queue (Node 20 has no SO_REUSEPORT), as
// node:cluster's SCHED_NONE does; the primary holds the sockets for its
// whole life and never accepts. A worker gets the listening handles once it
// is part of the serving set, and stops accepting when it drains: what it
// has not accepted stays queued for the others. What this gives up against
// the primary hand-over: the kernel, not round-robin, decides which worker
// takes a connection; a connection a worker accepted dies with it; nothing
// waits in the primary (baton_connections_waiting is 0); no STICKY.
import type { Dispatch, DispatchStats, RawConnection } from './dispatcher.js';
import type { WorkerHandle } from './worker-handle.js';

export class SharedAccept implements Dispatch {
  private readonly serving = new Set<WorkerHandle>();

  /** `handles`: the listening handles, in listener order. */
  constructor(private readonly handles: () => readonly unknown[]) {}

  get stats(): DispatchStats {
    return { waiting: 0, unacked: 0, dispatched: 0 };
  }

  accept(conn: RawConnection): void {
    // The primary never accepts in this mode; should a connection come, it is not ours.
    conn.close();
  }

  setTargets(workers: readonly WorkerHandle[]): void {
    for (const w of workers) this.add(w);
  }

  add(worker: WorkerHandle): void {
    if (this.serving.has(worker)) return;
    this.serving.add(worker);
    this.handles().forEach((handle, listener) => worker.proc.send({ type: 'accept', listener }, handle as RawConnection));
  }

  /**
   * At start-up the first generation gets the sockets with its config, and
   * each worker listens just before it reports ready: the port is listening
   * when the primary logs `ready`. (The primary binds the sockets but never
   * listens on them itself, or it would accept.)
   */
  booting(worker: WorkerHandle): void {
    this.add(worker);
  }

  remove(worker: WorkerHandle): void {
    // It stops accepting itself, on its 'drain' (or by exiting).
    this.serving.delete(worker);
  }

  workerGone(worker: WorkerHandle): void {
    this.serving.delete(worker);
  }

  closeWaiting(): void { /* nothing waits in the primary */ }
}
