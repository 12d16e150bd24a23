// Where log lines go: stdout (or stderr), without ever blocking the process
// that writes them. A stalled reader (journald, a log shipper, Docker's
// blocking log driver, `npm start | less` paused) fills the pipe; a plain
// synchronous write then blocks until someone reads, and a Node stream
// buffers without limit. A sink instead:
//
// - never blocks: on a pipe or terminal it writes through its own
//   non-blocking file description (Linux: reopening /proc/self/fd/N gives
//   one, whatever the flags of the description other processes share); on a
//   socket (how systemd and Node's child_process connect stdout), which
//   cannot be reopened, through Node's non-blocking stdio stream, one chunk
//   at a time. Not blocking writes on libuv's thread pool: Node joins those
//   threads at exit, so a thread stuck on a stalled pipe hangs process.exit().
// - buffers at most `maxBytes`; past that, whole lines are dropped and
//   counted, and `onDrained(n)` is told once output flows again;
// - writes whole lines, at most PIPE_BUF bytes per write(2), which a pipe
//   never interleaves with another writer's;
// - flushes what it can at exit, within a bounded time.
//
// The primary is the only process writing to the real stdout: workers'
// output comes through it (primary/output-relay.ts).
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';

/** Writes to a pipe of at most this size are atomic (POSIX PIPE_BUF on Linux). */
export const PIPE_BUF = 4096;
/** What a sink may hold while its reader is stalled. */
export const DEFAULT_MAX_BYTES = 1024 * 1024;

type Mode = 'nonblocking' | 'stream' | 'sync';

export interface SinkStats {
  readonly mode: Mode;
  readonly bufferedBytes: number;
  /** Lines dropped since the start. */
  readonly droppedLines: number;
}

export interface SinkOptions {
  readonly maxBytes?: number;
  /** Output flows again after `dropped` lines were dropped: say so, once. */
  readonly onDrained?: (dropped: number) => void;
}

const MAX_RETRY_MS = 200;

export class LogSink {
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private droppedTotal = 0;
  private droppedUnreported = 0;
  private readonly fd: number;
  private readonly mode: Mode;
  private readonly ownsFd: boolean;
  /** What may wait for the reader; past it, lines are dropped. */
  maxBytes: number;
  private inFlight = false;
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = 5;
  private broken = false;
  private waiters: (() => void)[] = [];

  constructor(targetFd: number, private readonly options: SinkOptions = {}) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
    const opened = openOwnDescription(targetFd);
    this.fd = opened.fd;
    this.mode = opened.mode;
    this.ownsFd = opened.fd !== targetFd;
  }

  get stats(): SinkStats {
    return { mode: this.mode, bufferedBytes: this.queuedBytes, droppedLines: this.droppedTotal };
  }

  /** Queues `text` (one or more whole lines) and writes what it can now. False: dropped. */
  write(text: string | Buffer): boolean {
    if (this.broken) return false;
    const buf = typeof text === 'string' ? Buffer.from(text) : text;
    if (this.mode === 'sync') {
      try { writeAll(this.fd, buf); } catch { this.broken = true; }
      return true;
    }
    if (this.queuedBytes + buf.length > this.maxBytes) {
      const lines = countLines(buf);
      this.droppedTotal += lines;
      this.droppedUnreported += lines;
      return false;
    }
    this.queue.push(buf);
    this.queuedBytes += buf.length;
    // Written at the end of this turn of the event loop: a worker logging a
    // line per request, or the primary relaying them, then makes one
    // write(2) of many lines, not one per line.
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.pumpSoon);
    }
    return true;
  }

  private readonly pumpSoon = (): void => {
    this.scheduled = false;
    this.pump();
  };

  /**
   * Resolves once everything queued is written, or after `timeoutMs`
   * (a stalled reader must not hold an exit forever).
   */
  flush(timeoutMs: number): Promise<void> {
    if (this.queuedBytes === 0 && !this.inFlight) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      const waiters = this.waiters;
      function done(): void {
        clearTimeout(timer);
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        resolve();
      }
      waiters.push(done);
      this.pump();
    });
  }

  /**
   * At process exit (no event loop left): writes what the reader takes now,
   * synchronously. An app that calls process.exit() right after a log line
   * keeps that line.
   */
  flushAtExit(): void {
    if (this.broken || this.queue.length === 0) return;
    if (this.mode === 'nonblocking') {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      return this.pump();
    }
    if (this.inFlight) return; // the stream already holds a chunk; it may still get out
    const rest = Buffer.concat(this.queue, this.queuedBytes);
    this.queue.length = 0;
    this.queuedBytes = 0;
    // libuv tries the write at once; what does not fit is lost with the process.
    (Writable.prototype.write as (chunk: Buffer) => boolean).call(stdioStream(this.fd), rest);
  }

  /**
   * A child that inherits this stdout (a new primary, on an upgrade) resets
   * O_NONBLOCK on it as it starts (libuv does, for a child's stdio): on a
   * socket, whose description is shared, that would make this process's
   * next write block. Call after spawning one.
   */
  reassertNonblocking(): void {
    if (this.mode !== 'stream') return;
    (stdioStream(this.fd) as unknown as { _handle?: { setBlocking?: (b: boolean) => void } })._handle?.setBlocking?.(false);
  }

  close(): void {
    clearTimeout(this.retryTimer);
    if (this.ownsFd) {
      try { closeSync(this.fd); } catch { /* already closed */ }
    }
  }

  /**
   * The next chunk: whole lines, up to PIPE_BUF bytes. A block of many lines
   * is cut at its last newline within PIPE_BUF; only a single longer line
   * goes out longer.
   */
  private nextChunk(): Buffer {
    const first = this.queue[0] as Buffer;
    if (first.length > PIPE_BUF) {
      const cut = first.lastIndexOf(10, PIPE_BUF - 1);
      return cut >= 0 ? first.subarray(0, cut + 1) : first;
    }
    let n = 1;
    let bytes = first.length;
    while (n < this.queue.length && bytes + (this.queue[n] as Buffer).length <= PIPE_BUF) bytes += (this.queue[n++] as Buffer).length;
    return n === 1 ? first : Buffer.concat(this.queue.slice(0, n), bytes);
  }

  /** `written` bytes of the queue's head went out. */
  private consume(written: number): void {
    this.queuedBytes -= written;
    while (written > 0) {
      const head = this.queue[0] as Buffer;
      if (head.length <= written) {
        this.queue.shift();
        written -= head.length;
      } else {
        // Part of a block (cut at a newline), or of a line longer than PIPE_BUF.
        this.queue[0] = head.subarray(written);
        written = 0;
      }
    }
  }

  private pump(): void {
    if (this.inFlight || this.retryTimer !== undefined || this.broken) return;
    if (this.mode === 'nonblocking') {
      while (this.queue.length > 0) {
        const chunk = this.nextChunk();
        let n: number;
        try {
          n = writeSync(this.fd, chunk);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return this.retryLater();
          return this.fail();
        }
        this.consume(n);
      }
      return this.drained();
    }
    if (this.queue.length === 0) return this.drained();
    const chunk = this.nextChunk();
    this.inFlight = true;
    // The stream's own write, not an instance's replacement (stdio.ts routes
    // the app's process.stdout.write here). One chunk at a time: what waits
    // is counted here, against the bound, not in the stream.
    (Writable.prototype.write as (chunk: Buffer, cb: (err?: Error | null) => void) => boolean).call(stdioStream(this.fd), chunk, (err) => {
      this.inFlight = false;
      if (err) return this.fail();
      this.consume(chunk.length);
      this.pump();
    });
  }

  /** The reader is full: try again soon, backing off (nothing tells a raw fd became writable). */
  private retryLater(): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
  }

  /** The reader is gone (EPIPE) or the fd is unusable: nothing more can be written. */
  private fail(): void {
    this.broken = true;
    this.droppedTotal += this.queue.length;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.drained();
  }

  private drained(): void {
    this.retryMs = 5;
    if (this.droppedUnreported > 0 && !this.broken) {
      const n = this.droppedUnreported;
      this.droppedUnreported = 0;
      this.options.onDrained?.(n);
    }
    if (this.queuedBytes === 0) for (const done of this.waiters.slice()) done();
  }
}

function countLines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) n++;
  return Math.max(1, n);
}

/** Writes all of `buf` to a blocking fd (a regular file). */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off);
}

/** Node's stdio stream for fd 1 or 2: one libuv handle per fd and process, shared with the app. */
function stdioStream(fd: number): NodeJS.WriteStream {
  const stream = fd === 2 ? process.stderr : process.stdout;
  if (!stream.listenerCount('error')) stream.on('error', () => { /* the sink counts what it could not write */ });
  return stream;
}

function openOwnDescription(fd: number): { fd: number; mode: Mode } {
  let stat;
  try {
    stat = fstatSync(fd);
  } catch {
    return { fd, mode: 'sync' };
  }
  if (stat.isFile()) return { fd, mode: 'sync' };
  if (stat.isFIFO() || stat.isCharacterDevice()) {
    try {
      // A new open file description of the same pipe or terminal: its
      // O_NONBLOCK is ours alone (the workers keep blocking writes).
      return { fd: openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY), mode: 'nonblocking' };
    } catch {
      // No /proc (macOS): Node's stream.
    }
  }
  return { fd, mode: fd === 1 || fd === 2 ? 'stream' : 'sync' };
}
