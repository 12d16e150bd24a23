// The control channel between the `baton` CLI and a running primary: one
// JSON object per line over a Unix socket, one request and one response per
// connection. Both sides validate what they read.
import { connect } from 'node:net';
import type { ConfigError } from './config.js';
import type { ListenerInfo } from './protocol.js';

/** Requests larger than this are refused (and the connection closed). */
export const MAX_REQUEST_BYTES = 64 * 1024;

export type ControlRequest =
  | { readonly cmd: 'reload' }
  | { readonly cmd: 'status' }
  | { readonly cmd: 'stop' }
  | { readonly cmd: 'scale'; readonly workers: number }
  /** Replace the primary by a new one from the code on disk, with `node` (default: the primary's own Node). */
  | { readonly cmd: 'upgrade'; readonly node?: string };

export type WorkerStatus = {
  readonly id: number;
  readonly pid: number;
  readonly generation: number;
  readonly state: 'starting' | 'ready' | 'draining';
  readonly uptimeMs: number;
  readonly served: number;
  readonly inFlight: number;
  /** Upgraded (WebSocket) connections it holds. */
  readonly upgraded: number;
  /** The directory it runs from (APP_DIR's real path when its generation started). */
  readonly dir: string;
};

export type ReloadRecord = {
  readonly ok: boolean;
  readonly generation?: number;
  readonly durationMs?: number;
  readonly reason?: string;
  /** ms since the epoch */
  readonly at: number;
};

export type StatusSnapshot = {
  readonly pid: number;
  readonly state: string;
  readonly generation: number;
  readonly configVersion: number;
  readonly targetWorkers: number;
  readonly workers: readonly WorkerStatus[];
  readonly lastReload: ReloadRecord | null;
  readonly uptimeMs: number;
  /** The primary's own memory, bytes. */
  readonly memory: { readonly rss: number; readonly heapUsed: number; readonly heapTotal: number };
  /** The primary's stdout: what waits for a slow reader, and what was dropped. */
  readonly logOutput: { readonly mode: string; readonly bufferedBytes: number; readonly droppedLines: number };
  /** Every address the primary listens on. */
  readonly listeners: readonly ListenerInfo[];
  /** The directory the serving generation runs from. */
  readonly appDir: string;
  readonly metrics: { readonly host: string; readonly port: number } | null;
  /** The primary this one replaced (`baton upgrade`), if any. */
  readonly upgradedFrom: { readonly pid: number; readonly node: string } | null;
  readonly node: string;
};

export type ControlResponse =
  | { readonly ok: true; readonly cmd: 'reload'; readonly generation: number; readonly durationMs: number }
  | { readonly ok: true; readonly cmd: 'status'; readonly status: StatusSnapshot }
  | { readonly ok: true; readonly cmd: 'stop'; readonly pid: number }
  | { readonly ok: true; readonly cmd: 'scale'; readonly workers: number }
  | { readonly ok: true; readonly cmd: 'upgrade'; readonly pid: number; readonly node: string }
  /** `exitCode`: for an upgrade, what `baton upgrade` exits with. */
  | { readonly ok: false; readonly kind: 'rejected' | 'failed' | 'abandoned' | 'bad-request'; readonly reason: string; readonly errors?: readonly ConfigError[]; readonly exitCode?: number };

/** Validates a request line; a string says what is wrong with it. */
export function parseRequest(line: string): ControlRequest | string {
  let x: unknown;
  try {
    x = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (typeof x !== 'object' || x === null) return 'not a JSON object';
  const r = x as Record<string, unknown>;
  switch (r.cmd) {
    case 'reload':
    case 'status':
    case 'stop':
      return { cmd: r.cmd };
    case 'upgrade':
      if (r.node !== undefined && (typeof r.node !== 'string' || r.node === '')) return 'upgrade: "node" must be a path';
      return r.node === undefined ? { cmd: 'upgrade' } : { cmd: 'upgrade', node: r.node as string };
    case 'scale':
      return Number.isInteger(r.workers) && (r.workers as number) >= 1 && (r.workers as number) <= 1024
        ? { cmd: 'scale', workers: r.workers as number }
        : 'scale needs "workers": a whole number from 1 to 1024';
    default:
      return `unknown cmd ${JSON.stringify(r.cmd)}`;
  }
}

export class NoPrimaryError extends Error {}

/**
 * Sends one request and resolves with the response, and with `closed`, which
 * resolves when the primary closes the connection (after `stop`, that is
 * when it exits).
 */
export function sendRequest(socketPath: string, req: ControlRequest, timeoutMs: number): Promise<{ response: ControlResponse; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buffer = '';
    let answered = false;
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => { closedResolve = r; });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from the primary within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (chunk: string) => {
      if (answered) return;
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      answered = true;
      clearTimeout(timer);
      try {
        resolve({ response: JSON.parse(buffer.slice(0, nl)) as ControlResponse, closed });
      } catch (err) {
        reject(new Error(`malformed answer from the primary: ${(err as Error).message}`));
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (answered) return;
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new NoPrimaryError(`no baton primary is running (nothing answers on ${socketPath})`));
      else reject(err);
    });
    socket.on('close', () => {
      closedResolve();
      clearTimeout(timer);
      if (!answered) reject(new Error('the primary closed the connection without answering'));
    });
  });
}
