// Logging: one line per event, each naming the process (role, pid) and the
// generation it belongs to. JSON for machines; colored one-liners for a
// person at a terminal (LOG_FORMAT=auto picks by whether stdout is a TTY).
// Lines go to a LogSink (log-sink.ts): a stalled stdout never blocks the
// process, and at most 1 MiB waits for it.
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { LogFormat, LogLevel } from './config.js';
import { LogSink } from './log-sink.js';

// pino-pretty is loaded only when used: it costs every worker tens of
// milliseconds of CPU at boot, during a reload, when the output is JSON.
const require = createRequire(import.meta.url);

export type { Logger };
export type Role = 'primary' | 'worker';

export interface LoggerOptions {
  readonly role: Role;
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** The primary's generation changes as it reloads, so it is read per line. */
  readonly generation: () => number;
  /** Colors in pretty lines (default: stdout is a terminal). Workers write into a pipe to the primary, which tells them. */
  readonly colors?: boolean;
}

/** How long an exit may wait for a stalled stdout to take the last lines. */
export const EXIT_FLUSH_MS = 1000;

let stdoutSink: LogSink | undefined;
let stderrSink: LogSink | undefined;
/** Told when stdout flows again after lines were dropped (set by createLogger). */
let reportDropped: (n: number) => void = () => {};

/** This process's stdout, as a sink (one per process: every writer shares its bound). */
export function stdout(): LogSink {
  return stdoutSink ??= new LogSink(1, { onDrained: (n) => reportDropped(n) });
}

export function stderr(): LogSink {
  return stderrSink ??= new LogSink(2);
}

process.on('exit', () => {
  stdoutSink?.flushAtExit();
  stderrSink?.flushAtExit();
});

/** After spawning a process that inherits stdout and stderr (see LogSink.reassertNonblocking). */
export function reassertNonblockingOutput(): void {
  stdoutSink?.reassertNonblocking();
  stderrSink?.reassertNonblocking();
}

/** Writes out what is queued for stdout and stderr, waiting at most `timeoutMs`. */
export function flushOutput(timeoutMs = EXIT_FLUSH_MS): Promise<void> {
  return Promise.all([stdoutSink?.flush(timeoutMs), stderrSink?.flush(timeoutMs)]).then(() => undefined);
}

// isatty(1), not process.stdout.isTTY: creating process.stdout on a pipe
// would make the pipe's shared description non-blocking for every process.
const stdoutIsTTY = isatty(1);

export function usesPrettyLogs(format: LogFormat): boolean {
  return format === 'pretty' || (format === 'auto' && stdoutIsTTY);
}

/** How this process's stdout wants its log lines (told to workers, whose stdout is a pipe to the primary). */
export function outputStyle(format: LogFormat): { readonly format: 'json' | 'pretty'; readonly colors: boolean } {
  return { format: usesPrettyLogs(format) ? 'pretty' : 'json', colors: stdoutIsTTY };
}

function destination(format: LogFormat, colors: boolean): DestinationStream {
  const sink = stdout();
  if (!usesPrettyLogs(format)) return { write: (line: string) => void sink.write(line) };
  const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty');
  const pretty = prettyFactory({
    colorize: colors,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'hostname,role,pid,generation',
    messageFormat: '{role}[{pid}] g{generation} {msg}',
    singleLine: true,
  });
  return { write: (line: string) => void sink.write(pretty(line)) };
}

/** Sets how much the sinks may hold for a stalled reader (LOG_BUFFER_BYTES). */
export function setOutputBound(maxBytes: number): void {
  stdout().maxBytes = maxBytes;
  stderr().maxBytes = maxBytes;
}

export function createLogger(options: LoggerOptions): Logger {
  const logger = pino({
    level: options.level,
    base: { role: options.role, pid: process.pid },
    mixin: () => ({ generation: options.generation() }),
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, destination(options.format, options.colors ?? stdoutIsTTY));
  reportDropped = (n) => logger.warn({ droppedLines: n }, `${n} log lines dropped: stdout was not being read`);
  return logger;
}

/** An Error as plain JSON, for logs and IPC. */
export function serializeError(err: unknown): { message: string; stack?: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return { message: err.message, ...(err.stack ? { stack: err.stack } : {}), ...(code ? { code } : {}) };
  }
  return { message: String(err) };
}
