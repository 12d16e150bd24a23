// The data path: how an accepted connection reaches a worker. One seam, two
// ways (DISPATCH):
//
// - `primary` (HandOverDispatcher): the primary accepts every connection
//   and hands it to the next ready worker of the serving generation, as
//   node:cluster's round-robin does. A connection with no worker to take
//   it waits (the port never refuses while the primary is up). The primary
//   keeps its copy until the worker acknowledges it, so a worker that dies
//   before taking a connection does not lose it: it goes to another worker.
//   A worker is handed one connection at a time (Node's channel carries
//   one handle at a time anyway): the others wait in the primary and go to
//   whichever worker takes its last one first, so none queues behind a
//   worker busy in its event loop while another is free (node:cluster's
//   round-robin hands out connections the same way). With STICKY=ip the
//   worker is chosen by the client's address, however busy.
// - `shared` (shared-accept.ts, the default unless STICKY=ip): the serving
//   workers accept from the listening sockets themselves; the primary
//   holds them, and hands on only what a worker forwards above its share.
//
// Connections travel as raw libuv handles (what the listening handle's
// onconnection gives), never as net.Socket objects: the primary neither
// reads them nor pays for a stream per connection (measured: ~80 µs of
// primary CPU per connection with sockets, ~58 µs with raw handles, ~57 µs
// for node:cluster's round-robin).
import type { WorkerHandle } from './worker-handle.js';

/** A connection as the listener's native handle gives it (a libuv TCP or Pipe wrap). */
export interface RawConnection {
  close(cb?: () => void): void;
  getpeername?(out: { address?: string; port?: number; family?: string }): number;
}

export interface DispatchStats {
  readonly waiting: number;
  readonly unacked: number;
  /** Handed to a worker by the primary, since start (DISPATCH=shared: only what a worker forwarded). */
  readonly dispatched: number;
}

/** What the supervisor needs of a dispatcher, whichever way it dispatches. */
export interface Dispatch {
  readonly stats: DispatchStats;
  /** A connection this primary accepted on listener number `listener` (shared mode: only until a worker hands back a copy of the socket). */
  accept(conn: RawConnection, listener: number): void;
  /** Switch the whole target set at once (a generation becomes the serving one). */
  setTargets(workers: readonly WorkerHandle[]): void;
  /** A ready worker joins the serving set (a respawn). */
  add(worker: WorkerHandle): void;
  /** A worker of the first generation was told its config (nothing serves yet; shared mode asks it for a copy of the sockets the primary still polls). */
  booting?(worker: WorkerHandle): void;
  /** Stop sending connections to `worker` (it drains, or died). */
  remove(worker: WorkerHandle): void;
  /** `worker` exited: what it had not taken goes to someone else. */
  workerGone(worker: WorkerHandle): void;
  /** On shutdown: connections that no worker took are closed. */
  closeWaiting(): void;
  /** DISPATCH=shared: `worker` sent back a copy of listener `listener`'s socket, as asked. */
  listenerCopy?(worker: WorkerHandle, listener: number, handle: RawConnection): void;
  /** DISPATCH=shared, at a shutdown: ask the serving workers to stop accepting; `then` once all have (or could not say so in time). */
  stopWorkersAccepting?(then: () => void): void;
  /** DISPATCH=shared, at a reload: `then` once the old generation's `workers`, told to drain, have closed their listening sockets; after a deadline, with those that did not say so. */
  whenStoppedAccepting?(workers: readonly WorkerHandle[], then: (late: readonly WorkerHandle[]) => void): void;
  /** DISPATCH=shared: `worker` closed its listening sockets. */
  stoppedAccepting?(worker: WorkerHandle): void;
  /** DISPATCH=shared: `worker` holds `open` connections. */
  load?(worker: WorkerHandle, open: number): void;
  /** DISPATCH=shared: `from` (holding `open` others) accepted `conn` above its share: hand it to a peer. */
  forwarded?(from: WorkerHandle, conn: RawConnection, listener: number, open: number): void;
}

interface InFlight {
  readonly id: number;
  readonly conn: RawConnection;
  readonly listener: number;
}

interface Waiting {
  readonly conn: RawConnection;
  readonly listener: number;
}

/** Every ready worker is still taking the connection it was last handed. */
const BUSY = Symbol('busy');

/** FNV-1a: a cheap, stable hash of the client address, for STICKY=ip. */
function hashAddress(address: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < address.length; i++) {
    h ^= address.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class HandOverDispatcher implements Dispatch {
  private targets: WorkerHandle[] = [];
  private cursor = 0;
  private readonly waiting: Waiting[] = [];
  /** Per worker, in the order sent: an ack covers every id up to it. */
  private readonly unacked = new Map<WorkerHandle, InFlight[]>();
  private unackedCount = 0;
  private seq = 0;
  private dispatchedCount = 0;
  private readonly peer: { address?: string } = {};
  /** Workers taken out of the rotation (draining, or gone): the last resort at shutdown. */
  private readonly removed = new Set<WorkerHandle>();
  /** Shutting down: the waiting connections were closed, and no more wait. */
  private closed = false;

  /** `sticky`: route by the client's address (STICKY=ip). */
  constructor(private readonly sticky = false) {}

  get stats(): DispatchStats {
    return { waiting: this.waiting.length, unacked: this.unackedCount, dispatched: this.dispatchedCount };
  }

  accept(conn: RawConnection, listener: number): void {
    // First come, first served: behind any that wait already.
    this.waiting.push({ conn, listener });
    this.flush();
  }

  setTargets(workers: readonly WorkerHandle[]): void {
    // Sorted by id: a sticky mapping that does not depend on readiness order.
    this.targets = [...workers].sort((a, b) => a.id - b.id);
    this.flush();
  }

  add(worker: WorkerHandle): void {
    if (!this.targets.includes(worker)) {
      this.targets.push(worker);
      this.targets.sort((a, b) => a.id - b.id);
    }
    this.flush();
  }

  remove(worker: WorkerHandle): void {
    this.targets = this.targets.filter((w) => w !== worker);
    this.removed.add(worker);
  }

  /** The worker's process holds connections up to `upTo`: the primary's copies can go. */
  private received(worker: WorkerHandle, upTo: number): void {
    const list = this.unacked.get(worker);
    if (!list) return;
    while (list.length > 0 && (list[0] as InFlight).id <= upTo) {
      // Closes only this process's descriptor; the worker holds its own.
      (list.shift() as InFlight).conn.close();
      this.unackedCount--;
    }
    this.flush();
  }

  workerGone(worker: WorkerHandle): void {
    this.remove(worker);
    this.removed.delete(worker);
    const list = this.unacked.get(worker);
    this.unacked.delete(worker);
    if (!list) return;
    this.unackedCount -= list.length;
    // Accepted before any that wait: at the front.
    this.waiting.unshift(...list.map(({ conn, listener }) => ({ conn, listener })));
    this.flush();
  }

  closeWaiting(): void {
    // From now on a busy worker takes connections too (its channel queues
    // them), and only those no worker can take are closed.
    this.closed = true;
    this.flush();
  }

  /** `anyLoad`: ignore how many hand-overs a worker has not acknowledged yet. */
  private pick(conn: RawConnection, anyLoad = false): WorkerHandle | typeof BUSY | undefined {
    const n = this.targets.length;
    if (n === 0) return undefined;
    if (this.sticky) {
      this.peer.address = undefined;
      conn.getpeername?.(this.peer);
      const start = hashAddress(this.peer.address ?? '') % n;
      // The address's worker, or (while it is not ready) the next one.
      for (let k = 0; k < n; k++) {
        const worker = this.targets[(start + k) % n] as WorkerHandle;
        if (worker.state === 'ready' && worker.proc.connected()) return worker;
      }
      return undefined;
    }
    let busy = false;
    for (let tries = 0; tries < n; tries++) {
      const index = (this.cursor + 1 + tries) % n;
      const worker = this.targets[index] as WorkerHandle;
      if (worker.state !== 'ready' || !worker.proc.connected()) continue;
      if (!anyLoad && (this.unacked.get(worker)?.length ?? 0) > 0) {
        busy = true;
        continue;
      }
      this.cursor = index;
      return worker;
    }
    return busy ? BUSY : undefined;
  }

  private send(worker: WorkerHandle, conn: RawConnection, listener: number): void {
    const id = ++this.seq;
    let list = this.unacked.get(worker);
    if (!list) this.unacked.set(worker, list = []);
    list.push({ id, conn, listener });
    this.unackedCount++;
    this.dispatchedCount++;
    worker.proc.send({ type: 'conn', listener }, conn, (err) => {
      if (!err) return this.received(worker, id);
      // Not sent (the worker's channel closed): take it back, hand it on.
      const i = list.findIndex((e) => e.id === id);
      if (i < 0) return;
      list.splice(i, 1);
      this.unackedCount--;
      this.waiting.unshift({ conn, listener });
      this.flush();
    });
  }

  /**
   * At shutdown, a connection handed back from a worker that died before
   * taking it goes to a worker still draining (it answers with Connection:
   * close) rather than being closed unanswered.
   */
  private lastResort(): WorkerHandle | undefined {
    if (!this.closed) return undefined;
    for (const w of this.removed) if (w.state === 'draining' && w.proc.connected()) return w;
    return undefined;
  }

  /** Hands out waiting connections, oldest first, while a worker can take them. */
  private flush(): void {
    while (this.waiting.length > 0) {
      const next = this.waiting[0] as Waiting;
      const choice = this.pick(next.conn, this.closed);
      // Taken by the first worker to acknowledge its last (received → flush).
      if (choice === BUSY) return;
      const worker = choice ?? this.lastResort();
      // No worker ready: it waits, unless shutting down with nobody left.
      if (!worker && !this.closed) return;
      this.waiting.shift();
      if (worker) this.send(worker, next.conn, next.listener);
      else next.conn.close();
    }
  }
}
