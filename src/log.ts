// Logging: one line per event, each naming the process (role, pid) and the
// generation it belongs to. JSON for machines; colored one-liners for a
// person at a terminal (LOG_FORMAT=auto picks by whether stdout is a TTY).
import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { LogFormat, LogLevel } from './config.js';

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
}

function destination(format: LogFormat): DestinationStream {
  const usePretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  // Synchronous writes: every process shares stdout, and a line must be out
  // before a process.exit() that follows it.
  if (!usePretty) return pino.destination({ dest: 1, sync: true });
  const pretty = require('pino-pretty') as typeof import('pino-pretty');
  return pretty({
    sync: true,
    colorize: process.stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'hostname,role,pid,generation',
    messageFormat: '{role}[{pid}] g{generation} {msg}',
    singleLine: true,
  });
}

export function createLogger(options: LoggerOptions): Logger {
  return pino({
    level: options.level,
    base: { role: options.role, pid: process.pid },
    mixin: () => ({ generation: options.generation() }),
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, destination(options.format));
}

/** An Error as plain JSON, for logs and IPC. */
export function serializeError(err: unknown): { message: string; stack?: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return { message: err.message, ...(err.stack ? { stack: err.stack } : {}), ...(code ? { code } : {}) };
  }
  return { message: String(err) };
}
