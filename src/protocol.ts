// The IPC protocol between the primary and its workers: one discriminated
// union each way. A reload runs the worker code now on disk under a primary
// that keeps the code it started with, so both sides check the version.
import type { Config } from './config.js';

/** Bump on any incompatible change to the messages below. */
export const PROTOCOL_VERSION = 7;

export type DrainReason = 'reload' | 'shutdown' | 'scale-down';

/** An address the primary listens on; connections say which one they came through. */
export type ListenerInfo =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** Primary → worker. */
export type PrimaryMessage =
  /** Answer to `hello`: everything the worker needs to build its app. */
  | {
    readonly type: 'init'; readonly protocol: number; readonly generation: number; readonly workerId: number; readonly configVersion: number; readonly config: Config;
    readonly output: { readonly format: 'json' | 'pretty'; readonly colors: boolean };
    /** Every address the primary listens on, in LISTEN order; `conn` messages index into it. */
    readonly listeners: readonly ListenerInfo[];
    /** With TLS: the certificate chain and key the primary validated (PEM). Never logged. */
    readonly tls?: { readonly cert: string; readonly key: string };
    /** TLS session-ticket keys (48 bytes, base64), the same in every worker of every generation. */
    readonly ticketKeys: string;
  }
  /**
   * DISPATCH=shared: comes with a listening handle: accept from
   * `listeners[listener]` until drained. Sent once the primary counts this
   * worker as serving (never to a worker it may still kill as booting).
   */
  | { readonly type: 'accept'; readonly listener: number }
  /**
   * DISPATCH=shared, to a first-generation worker at its init: comes with a
   * listening handle the primary still accepts on; send it straight back
   * (`listener`) and keep none: the primary then holds a copy it need not poll.
   */
  | { readonly type: 'copy-listener'; readonly listener: number }
  /** DISPATCH=shared: the fewest connections another serving worker holds (with those routed to it), or null when this worker serves alone. */
  | { readonly type: 'peers'; readonly min: number | null }
  /** DISPATCH=shared, at a shutdown: close the listening sockets now (the primary sweeps what is queued, and closes the port last), and say so. */
  | { readonly type: 'stop-accepting' }
  /** New session-ticket keys (base64): the primary rotated them. */
  | { readonly type: 'ticket-keys'; readonly keys: string }
  /** Comes with a socket handle: a client connection to serve, accepted on `listeners[listener]`. */
  | { readonly type: 'conn'; readonly listener: number }
  /** Stop taking connections, finish in-flight requests, exit. */
  | { readonly type: 'drain'; readonly reason: DrainReason }
  /** The server is shutting down: answer the readiness path 503 (keep serving). */
  | { readonly type: 'unready' };

/** Worker → primary. */
export type WorkerMessage =
  | { readonly type: 'hello'; readonly protocol: number }
  | { readonly type: 'ready'; readonly protocol: number }
  /** Booting, and waiting for the app to call listen() (a drop-in app): said once, for the reason a timeout gives. */
  | { readonly type: 'waiting-for-listen' }
  /** The app closed its server itself: this worker drains and exits, and wants a replacement. */
  | { readonly type: 'closing' }
  /** Near the drain deadline the worker closed `closed` connections that were still open. */
  | { readonly type: 'forced-close'; readonly closed: number }
  /** DISPATCH=shared: this worker closed its listening sockets, as `stop-accepting` or `drain` asked. */
  | { readonly type: 'stopped-accepting' }
  /** DISPATCH=shared: comes with the listening handle of `listeners[listener]`, as `copy-listener` asked. */
  | { readonly type: 'listener'; readonly listener: number }
  /** DISPATCH=shared: the connections this worker holds, when it changed (coalesced). */
  | { readonly type: 'load'; readonly open: number }
  /** DISPATCH=shared: comes with a connection this worker accepted, unread, for a less-loaded peer; `open`: what it holds without it. */
  | { readonly type: 'forward'; readonly listener: number; readonly open: number }
  /** Counters pushed every second and just before a drained exit; `metrics` is prom-client JSON. */
  | { readonly type: 'stats'; readonly served: number; readonly inFlight: number; readonly connections: number; readonly upgraded: number; readonly metrics: readonly unknown[] }
  /** The worker cannot boot (or crashed); sent just before it exits. */
  | { readonly type: 'fatal'; readonly error: { readonly message: string; readonly stack?: string } };

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

/** Validates what a worker sent; anything else is ignored by the primary. */
export function parseWorkerMessage(x: unknown): WorkerMessage | undefined {
  if (!isObject(x)) return undefined;
  switch (x.type) {
    case 'hello':
    case 'ready':
      return typeof x.protocol === 'number' ? { type: x.type, protocol: x.protocol } : undefined;
    case 'waiting-for-listen':
    case 'closing':
    case 'stopped-accepting':
      return { type: x.type };
    case 'load':
      return typeof x.open === 'number' ? { type: 'load', open: x.open } : undefined;
    case 'listener':
      return typeof x.listener === 'number' ? { type: 'listener', listener: x.listener } : undefined;
    case 'forward':
      return typeof x.listener === 'number' && typeof x.open === 'number' ? { type: 'forward', listener: x.listener, open: x.open } : undefined;
    case 'forced-close':
      return typeof x.closed === 'number' ? { type: 'forced-close', closed: x.closed } : undefined;
    case 'stats':
      return typeof x.served === 'number' && typeof x.inFlight === 'number' && typeof x.connections === 'number' && typeof x.upgraded === 'number' && Array.isArray(x.metrics)
        ? { type: 'stats', served: x.served, inFlight: x.inFlight, connections: x.connections, upgraded: x.upgraded, metrics: x.metrics } : undefined;
    case 'fatal': {
      const e = x.error;
      if (!isObject(e) || typeof e.message !== 'string') return undefined;
      return { type: 'fatal', error: { message: e.message, ...(typeof e.stack === 'string' ? { stack: e.stack } : {}) } };
    }
    default:
      return undefined;
  }
}

/** Validates what the primary sent. */
export function parsePrimaryMessage(x: unknown): PrimaryMessage | undefined {
  if (!isObject(x)) return undefined;
  switch (x.type) {
    case 'init':
      return typeof x.protocol === 'number' && typeof x.generation === 'number' && typeof x.workerId === 'number'
        && typeof x.configVersion === 'number' && isObject(x.config) && isObject(x.output) && Array.isArray(x.listeners) && typeof x.ticketKeys === 'string'
        ? (x as unknown as PrimaryMessage) : undefined;
    case 'conn':
      return typeof x.listener === 'number' ? { type: 'conn', listener: x.listener } : undefined;
    case 'drain':
      return x.reason === 'reload' || x.reason === 'shutdown' || x.reason === 'scale-down' ? { type: 'drain', reason: x.reason } : undefined;
    case 'unready':
      return { type: 'unready' };
    case 'stop-accepting':
      return { type: 'stop-accepting' };
    case 'accept':
      return typeof x.listener === 'number' ? { type: 'accept', listener: x.listener } : undefined;
    case 'copy-listener':
      return typeof x.listener === 'number' ? { type: 'copy-listener', listener: x.listener } : undefined;
    case 'peers':
      return typeof x.min === 'number' || x.min === null ? { type: 'peers', min: x.min } : undefined;
    case 'ticket-keys':
      return typeof x.keys === 'string' ? { type: 'ticket-keys', keys: x.keys } : undefined;
    default:
      return undefined;
  }
}
