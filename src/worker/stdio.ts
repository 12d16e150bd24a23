// The app's own console.log and process.stdout/stderr writes, in a worker,
// go through the same bounded, non-blocking sinks as baton's log lines
// (log-sink.ts). Node's process.stdout on a pipe either blocks the worker
// when the reader stalls or buffers without limit; here a stalled reader
// costs at most 1 MiB per stream, past which whole lines are dropped, and
// a request never waits on a log line.
import type { LogSink } from '../log-sink.js';
import { stderr, stdout } from '../log.js';

/** A partial line (no newline yet) is held this long before it goes out as is. */
const PARTIAL_LINE_MS = 50;

type WriteCallback = (err?: Error | null) => void;

function route(stream: NodeJS.WriteStream, sink: () => LogSink): void {
  let partial = '';
  let timer: NodeJS.Timeout | undefined;
  const flushPartial = (): void => {
    timer = undefined;
    if (partial === '') return;
    const text = partial;
    partial = '';
    sink().write(text);
  };
  const write = (chunk: unknown, encoding?: BufferEncoding | WriteCallback, cb?: WriteCallback): boolean => {
    const done = typeof encoding === 'function' ? encoding : cb;
    // (An encoding given with a string is almost always utf8; others are rare enough to pass as text.)
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8');
    const nl = text.lastIndexOf('\n');
    if (nl < 0) {
      partial += text;
      timer ??= setTimeout(flushPartial, PARTIAL_LINE_MS).unref();
    } else {
      const whole = partial + text.slice(0, nl + 1);
      partial = text.slice(nl + 1);
      if (partial === '' && timer) { clearTimeout(timer); timer = undefined; }
      sink().write(whole);
    }
    if (done) process.nextTick(done, null);
    return true;
  };
  stream.write = write as typeof stream.write;
}

/** Call once, first thing in a worker. */
export function routeStdio(): void {
  route(process.stdout, stdout);
  route(process.stderr, stderr);
}
