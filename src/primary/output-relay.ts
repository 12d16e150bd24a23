// Workers write their output (baton's log lines and the app's own
// console.log) into a pipe of their own that the primary reads at once and
// passes, whole lines at a time, to its stdout sink. So the primary is the
// only process that writes to the real stdout:
// - a stalled reader stalls no worker: the primary holds at most
//   LOG_BUFFER_BYTES and drops whole lines past it (log-sink.ts);
// - every fork resets O_NONBLOCK on a child's stdio, which on an inherited
//   stdout would flip the description every writer shares back to
//   blocking; workers inherit no stdout, so that cannot happen.
import type { Readable } from 'node:stream';
import type { LogSink } from '../log-sink.js';

/** Reads `from` to its end, handing `sink` whole lines (a partial last line waits for its newline). */
export function relayLines(from: Readable, sink: () => LogSink): void {
  let partial: Buffer | undefined;
  from.on('data', (chunk: Buffer) => {
    const nl = chunk.lastIndexOf(10);
    if (nl < 0) {
      partial = partial ? Buffer.concat([partial, chunk]) : chunk;
      return;
    }
    const whole = nl === chunk.length - 1 ? chunk : chunk.subarray(0, nl + 1);
    sink().write(partial ? Buffer.concat([partial, whole]) : whole);
    partial = nl === chunk.length - 1 ? undefined : chunk.subarray(nl + 1);
  });
  from.on('end', () => {
    if (partial) sink().write(Buffer.concat([partial, Buffer.from('\n')]));
    partial = undefined;
  });
  from.on('error', () => { /* the worker is gone; its exit is handled elsewhere */ });
}
