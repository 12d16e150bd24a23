// TLS session-ticket keys, made by the primary and given to every worker of
// every generation (and to drop-in apps' own TLS servers), so a session
// resumes on whichever worker a client's next connection lands on, and after
// a reload. Node's default keys are per process: a client would resume only
// on the same worker, and never after a reload. They live in memory only
// (and go to a new primary over IPC on an upgrade), never on disk.
//
// Node keeps one key at a time: a rotation makes every outstanding ticket
// fall back to a full handshake at once (see README, TLS).
import { randomBytes } from 'node:crypto';

/** Node's ticketKeys: 16 bytes name, 16 HMAC, 16 AES. */
export const TICKET_KEYS_BYTES = 48;

export class TicketKeys {
  private keys: Buffer;
  private timer: NodeJS.Timeout | undefined;
  private intervalMs = 0;

  constructor(initial?: Buffer) {
    this.keys = initial && initial.length === TICKET_KEYS_BYTES ? initial : randomBytes(TICKET_KEYS_BYTES);
  }

  get base64(): string {
    return this.keys.toString('base64');
  }

  /** (Re)starts rotation every `intervalMs`; `rotated` hears the new keys. */
  schedule(intervalMs: number, rotated: (keys: string) => void): void {
    if (intervalMs === this.intervalMs && this.timer) return;
    clearInterval(this.timer);
    this.intervalMs = intervalMs;
    this.timer = setInterval(() => {
      this.keys = randomBytes(TICKET_KEYS_BYTES);
      rotated(this.base64);
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
