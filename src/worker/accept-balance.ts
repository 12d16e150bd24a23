// DISPATCH=shared, in a worker: the serving workers accept from one kernel
// queue, and the kernel does not balance them. A worker whose event loop
// runs first drains the whole queue (measured: 32 keep-alive connections
// opened at once all on one of 2 workers in 2 of 5 rounds), and a
// keep-alive connection stays where it landed. So a worker that holds
// more connections than its least-loaded peer (plus a slack) does not
// keep what it accepts: it forwards it, unread, to the primary, which
// hands it to that peer. In steady state nothing is forwarded and the
// primary is off the path; only the excess of a burst pays a hop.
//
// A worker learns its peers' load from the primary (`peers`, coalesced),
// and counts what it forwarded since, which the primary's figure may not
// include yet: a burst is split as it is accepted, not a report later.

/** Connections a worker may hold above its least-loaded peer before it forwards. */
export const ACCEPT_SLACK = 1;

/** How long a worker lets its count change before it reports it (one message, however many changes). */
export const LOAD_REPORT_MS = 10;

/** A change this large is reported at once: in a burst, peers must not go on from a stale count. */
export const LOAD_REPORT_STEP = 4;

export class AcceptBalance {
  /** The fewest connections another serving worker holds, or null: this worker serves alone (or has not been told). */
  private peerMin: number | null = null;
  /** Forwarded since the primary last told `peerMin`. */
  private forwardedSince = 0;

  constructor(private readonly slack = ACCEPT_SLACK) {}

  /** The primary's latest view of the peers (it counts what it routed to them). */
  peers(min: number | null): void {
    this.peerMin = min;
    this.forwardedSince = 0;
  }

  /** Whether a worker holding `open` connections forwards the one it just accepted (and counts it if so). */
  forward(open: number): boolean {
    if (this.peerMin === null) return false;
    if (open <= this.peerMin + this.forwardedSince + this.slack - 1) return false;
    this.forwardedSince++;
    return true;
  }

  /** A forward that could not be sent: the worker kept it. */
  unforward(): void {
    if (this.forwardedSince > 0) this.forwardedSince--;
  }
}

/**
 * Reports a changing count `delayMs` after it changed (one message however
 * many changes), at once when it moved `step` from the last report, and
 * never when it is what was reported.
 */
export class LoadReporter {
  private timer: NodeJS.Timeout | undefined;
  private last = 0;

  constructor(
    private readonly count: () => number,
    private readonly report: (open: number) => void,
    private readonly delayMs = LOAD_REPORT_MS,
    private readonly step = LOAD_REPORT_STEP,
  ) {}

  changed(): void {
    if (Math.abs(this.count() - this.last) >= this.step) return this.flush();
    if (this.timer) return;
    // unref: a pending report never keeps a drained worker alive.
    this.timer = setTimeout(() => this.flush(), this.delayMs);
    this.timer.unref();
  }

  /** The count went to the primary some other way (with a forward). */
  told(open: number): void {
    this.last = open;
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const open = this.count();
    if (open === this.last) return;
    this.last = open;
    this.report(open);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
