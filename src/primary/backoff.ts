/** Exponential backoff for respawning crashed workers: base, 2×base, … up to max. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly baseMs: number, private readonly maxMs: number) {}

  next(): number {
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    if (delay < this.maxMs) this.attempt++;
    return delay;
  }

  reset(): void {
    this.attempt = 0;
  }
}
