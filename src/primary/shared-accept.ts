// DISPATCH=shared: the serving workers accept from the listening sockets
// themselves, from one kernel queue (Node 20 has no SO_REUSEPORT), as
// node:cluster's SCHED_NONE does; the primary holds the sockets for its
// whole life. A worker gets the listening handles once it is part of the
// serving set, and stops accepting when it drains: what it has not
// accepted stays queued for the others. At a cold start the primary
// listens and accepts itself until the first worker hands back a copy of
// each socket that it can hold without polling it (Node cannot listen
// without accepting): the port never refuses, and what it accepted waits
// here for the first ready worker. At a shutdown the workers stop
// accepting first (stop-accepting) and the primary sweeps the queue and
// closes the port last, as in primary mode (listeners.ts); at a reload the
// old workers stop on their drain, and say so (whenStoppedAccepting). What
// this mode gives up against the primary hand-over: a connection a worker
// accepted dies with it; what waits for a worker waits in the kernel's
// backlog, uncounted; no STICKY.
//
// The kernel does not balance (one worker's accept loop may drain a whole
// burst), so each worker keeps only its share (worker/accept-balance.ts)
// and forwards the rest here, unread; the primary hands each to the
// serving worker holding fewest connections. For that the workers report
// their counts (coalesced), and the primary tells each the least-loaded
// peer's count, with what it routed there since.
import type { Dispatch, DispatchStats, RawConnection } from './dispatcher.js';
import type { WorkerHandle } from './worker-handle.js';

interface Waiting {
  readonly conn: RawConnection;
  readonly listener: number;
  /** performance.now() when it began to wait. */
  readonly since: number;
}

/**
 * How long a forwarded connection waits for a busy worker that holds fewer
 * connections before it goes to a free one that holds more: a free event
 * loop takes a handle in well under a millisecond, a stuck one never.
 */
const WAIT_MS = 5;

export interface SharedAcceptTiming {
  /** How long a shutdown waits for the workers to say they stopped accepting before it sweeps anyway. */
  readonly stopAcceptingMs: number;
  /**
   * How long a reload waits for the old workers to say so before it
   * completes anyway: a worker that has not read a message for a second
   * is stuck in a request, and a reload must not hang on it.
   */
  readonly switchMs: number;
}

const TIMING: SharedAcceptTiming = { stopAcceptingMs: 250, switchMs: 1000 };

/** Every ready worker is still taking the connection it was last sent. */
const BUSY = Symbol('busy');

interface Routed {
  readonly conn: RawConnection;
  readonly listener: number;
  /** Received, or handed on elsewhere: a late callback must not act on it. */
  settled: boolean;
}



export class SharedAccept implements Dispatch {
  private readonly serving = new Set<WorkerHandle>();
  /** Per worker: connections it reported, and those routed to it that its report does not count. */
  private readonly loads = new Map<WorkerHandle, { reported: number; routed: number }>();
  /** Per worker: forwarded connections sent to it and not yet received. */
  private readonly inFlight = new Map<WorkerHandle, Set<Routed>>();
  /** Per worker: the peer count it was last told (undefined: never). */
  private readonly told = new Map<WorkerHandle, number | null>();
  /** Forwarded, waiting for a worker that has taken its last. */
  private readonly waiting: Waiting[] = [];
  /** Shutting down: any worker takes what waits, and none waits for a respawn. */
  private closed = false;
  private recheck: NodeJS.Timeout | undefined;
  /** Taken out of the serving set and still alive (draining): the last resort for a forwarded connection. */
  private readonly removed = new Set<WorkerHandle>();
  /** Shutting down: the workers were asked to stop accepting (and none is given the sockets again). */
  private stopping = false;
  /** Waiting for workers to say they stopped accepting. */
  private readonly stopWaiters = new Set<(gone?: WorkerHandle) => void>();
  private broadcastPending = false;
  private handedCount = 0;
  private inFlightCount = 0;

  /**
   * `handles`: the listening handles, in listener order. `sockets`: whether
   * the primary still accepts on a listener itself (a cold start), and
   * where a worker's copy of it goes.
   */
  constructor(
    private readonly handles: () => readonly unknown[],
    private readonly sockets: { polling(listener: number): boolean; adopt(listener: number, copy: unknown): boolean } = { polling: () => false, adopt: () => false },
    private readonly timing: SharedAcceptTiming = TIMING,
  ) {}

  get stats(): DispatchStats {
    return { waiting: this.waiting.length, unacked: this.inFlightCount, dispatched: this.handedCount };
  }

  /** Accepted by the primary while it still polls a socket (a cold start): for the first ready worker. */
  accept(conn: RawConnection, listener: number): void {
    this.route(conn, listener);
  }

  listenerCopy(_worker: WorkerHandle, listener: number, handle: RawConnection): void {
    // One copy is enough: the others (every booting worker was asked) close.
    if (!this.sockets.adopt(listener, handle)) handle.close();
  }

  setTargets(workers: readonly WorkerHandle[]): void {
    for (const w of workers) this.add(w);
  }

  /**
   * A worker gets the listening sockets only once the supervisor counts it
   * as serving (a generation's switch, a respawn that is ready), never
   * while booting: a worker the primary may still kill as booting (a stop
   * during the start) must not hold connections it accepted.
   */
  add(worker: WorkerHandle): void {
    if (!this.serving.has(worker) && !this.stopping) {
      this.serving.add(worker);
      if (!this.loads.has(worker)) this.loads.set(worker, { reported: 0, routed: 0 });
      this.handles().forEach((handle, listener) => worker.proc.send({ type: 'accept', listener }, handle as RawConnection));
    }
    this.scheduleBroadcast();
    this.flush();
  }

  /**
   * At a cold start, every first-generation worker is asked at its init for
   * a copy of each socket the primary still accepts on: the first copy back
   * lets the primary stop polling (listeners.ts, adopt) long before a worker
   * is ready; what it accepted until then waits here for the first serving one.
   */
  booting(worker: WorkerHandle): void {
    this.handles().forEach((handle, listener) => {
      if (this.sockets.polling(listener)) worker.proc.send({ type: 'copy-listener', listener }, handle as RawConnection);
    });
  }

  remove(worker: WorkerHandle): void {
    // It stops accepting itself, on its 'drain' (or by exiting).
    if (this.serving.delete(worker)) this.removed.add(worker);
    this.told.delete(worker);
    this.scheduleBroadcast();
  }

  workerGone(worker: WorkerHandle): void {
    this.remove(worker);
    this.removed.delete(worker);
    for (const check of [...this.stopWaiters]) check(worker);
    this.loads.delete(worker);
    const lost = this.inFlight.get(worker);
    this.inFlight.delete(worker);
    // Sent to it, never received: they go to another worker.
    for (const r of [...(lost ?? [])].reverse()) {
      r.settled = true;
      this.inFlightCount--;
      this.route(r.conn, r.listener, true);
    }
    this.flush();
  }

  /**
   * At a shutdown the primary must close the port last, after a sweep of
   * what is queued (the last process to close a listening socket resets
   * the connections queued on it, requests sent): the workers stop
   * accepting first, and say so.
   */
  stopWorkersAccepting(then: () => void): void {
    this.stopping = true;
    const asked: WorkerHandle[] = [];
    for (const w of this.serving) {
      if (w.state !== 'ready' || !w.proc.connected()) continue;
      asked.push(w);
      w.proc.send({ type: 'stop-accepting' });
    }
    this.whenStoppedAccepting(asked, then, this.timing.stopAcceptingMs);
  }

  /**
   * `then` once each of `workers` (told to drain or to stop accepting) has
   * said it closed its listening sockets, or exited. A reload completes
   * only then, so that from `reload complete` on no old worker takes a
   * new connection. A worker stuck in its event loop cannot say so: after
   * `ms` the primary goes on without it, and `then` gets those it did not
   * hear from.
   */
  whenStoppedAccepting(workers: readonly WorkerHandle[], then: (late: readonly WorkerHandle[]) => void, ms = this.timing.switchMs): void {
    const asked = new Set(workers.filter((w) => w.proc.connected()));
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.stopWaiters.delete(check);
      then([...asked]);
    };
    const check = (gone?: WorkerHandle): void => {
      if (gone) asked.delete(gone);
      if (asked.size === 0) finish();
    };
    const timer = setTimeout(finish, ms);
    timer.unref();
    this.stopWaiters.add(check);
    check();
  }

  stoppedAccepting(worker: WorkerHandle): void {
    for (const check of [...this.stopWaiters]) check(worker);
  }

  closeWaiting(): void {
    // From now on a busy worker takes them too, and only those no worker can take are closed.
    this.closed = true;
    this.flush();
  }

  load(worker: WorkerHandle, open: number): void {
    const l = this.loads.get(worker);
    if (!l) return;
    l.reported = open;
    // What is on its way to it now is not in its count yet (the channel keeps
    // order: its report came before its receipt of those).
    l.routed = this.inFlight.get(worker)?.size ?? 0;
    this.scheduleBroadcast();
  }

  forwarded(from: WorkerHandle, conn: RawConnection, listener: number, open: number): void {
    this.load(from, open);
    this.route(conn, listener);
  }

  /** Hands them on, oldest first. */
  private route(conn: RawConnection, listener: number, front = false): void {
    const w = { conn, listener, since: performance.now() };
    if (front) this.waiting.unshift(w);
    else this.waiting.push(w);
    this.flush();
  }

  private flush(): void {
    while (this.waiting.length > 0) {
      const target = this.pick();
      // Taken by the first worker to receive its last (send → flush).
      if (target === BUSY) return;
      // No serving worker: it waits for one (a respawn), unless shutting down.
      if (!target && !this.closed) return;
      const next = this.waiting.shift() as Waiting;
      if (target) this.send(target, next.conn, next.listener);
      else next.conn.close();
    }
  }

  /**
   * The serving worker with fewest connections. That may be the one that
   * forwarded it: its view of its peers was older than this one. As with
   * DISPATCH=primary, a worker that has not taken the last connection sent
   * to it (its event loop may be busy) gets no other while it has not: a
   * count that is low because a worker is stuck must not draw connections
   * to it. A connection waits for it (a burst: it takes the next in well
   * under a millisecond) rather than go to a free worker holding more, but
   * no longer than WAIT_MS. At a shutdown, any worker will do.
   */
  private pick(): WorkerHandle | typeof BUSY | undefined {
    let free: WorkerHandle | undefined;
    let freeLoad = Infinity;
    let anyLoad = Infinity;
    let busy = false;
    for (const w of this.serving) {
      if (w.state !== 'ready' || !w.proc.connected()) continue;
      const l = this.loads.get(w);
      const n = l ? l.reported + l.routed : 0;
      anyLoad = Math.min(anyLoad, n);
      if (!this.closed && (this.inFlight.get(w)?.size ?? 0) > 0) {
        busy = true;
        continue;
      }
      if (n < freeLoad) {
        free = w;
        freeLoad = n;
      }
    }
    if (free && (freeLoad <= anyLoad + 1 || this.waitedEnough())) return free;
    if (!busy) return free ?? this.lastResort();
    if (free) this.recheckLater();
    return BUSY;
  }

  /**
   * No serving worker (the old primary of an upgrade, whose generation
   * drains; or every serving one died): one still draining answers it,
   * with Connection: close, rather than leave it to wait or be closed.
   */
  private lastResort(): WorkerHandle | undefined {
    for (const w of this.removed) if (w.state === 'draining' && w.proc.connected()) return w;
    return undefined;
  }

  /** The oldest waiting connection has waited WAIT_MS for a busy worker with fewer. */
  private waitedEnough(): boolean {
    const head = this.waiting[0];
    return head !== undefined && performance.now() - head.since >= WAIT_MS;
  }

  private recheckLater(): void {
    if (this.recheck) return;
    this.recheck = setTimeout(() => {
      this.recheck = undefined;
      this.flush();
    }, WAIT_MS);
    this.recheck.unref();
  }

  private send(target: WorkerHandle, conn: RawConnection, listener: number): void {
    this.handedCount++;
    const l = this.loads.get(target);
    if (l) l.routed++;
    const r: Routed = { conn, listener, settled: false };
    let set = this.inFlight.get(target);
    if (!set) this.inFlight.set(target, set = new Set());
    set.add(r);
    this.inFlightCount++;
    target.proc.send({ type: 'conn', listener }, conn, (err) => {
      if (r.settled) return;
      r.settled = true;
      set.delete(r);
      this.inFlightCount--;
      if (err) {
        // Not sent (its channel closed): first in line for another.
        if (l) l.routed--;
        return this.route(conn, listener, true);
      }
      // Closes only this process's descriptor; the worker holds its own.
      conn.close();
      this.flush();
    });
    this.scheduleBroadcast();
  }

  private scheduleBroadcast(): void {
    if (this.broadcastPending) return;
    this.broadcastPending = true;
    // Once per turn of the loop, however many counts changed in it.
    setImmediate(() => {
      this.broadcastPending = false;
      this.broadcast();
    }).unref();
  }

  /** Tells each serving worker the fewest connections a peer holds, where that changed. */
  private broadcast(): void {
    for (const w of this.serving) {
      let min: number | null = null;
      for (const peer of this.serving) {
        if (peer === w || peer.state !== 'ready') continue;
        const l = this.loads.get(peer);
        const n = l ? l.reported + l.routed : 0;
        if (min === null || n < min) min = n;
      }
      // A booting worker is told once ready (add): it would not hear it before.
      if (w.state !== 'ready' || this.told.get(w) === min || !w.proc.connected()) continue;
      this.told.set(w, min);
      w.proc.send({ type: 'peers', min });
    }
  }
}
