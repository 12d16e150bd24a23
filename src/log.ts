// Logging: pino JSON lines on stdout, one per event, each naming the process
// (role, pid) and the generation it belongs to.
import pino, { type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };
export type Role = 'primary' | 'worker';

export interface LoggerOptions {
  readonly role: Role;
  readonly level: LogLevel;
  /** The primary's generation changes as it reloads, so it is read per line. */
  readonly generation: () => number;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino({
    level: options.level,
    base: { role: options.role, pid: process.pid },
    mixin: () => ({ generation: options.generation() }),
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Synchronous writes: every process shares stdout, and a line must be out
    // before a process.exit() that follows it.
  }, pino.destination({ dest: 1, sync: true }));
}

/** An Error as plain JSON, for logs and IPC. */
export function serializeError(err: unknown): { message: string; stack?: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return { message: err.message, ...(err.stack ? { stack: err.stack } : {}), ...(code ? { code } : {}) };
  }
  return { message: String(err) };
}
