// The app's side of a drain, importable from 'baton' by any app (drop-in
// apps have no ctx): `drainSignal(req)` is an AbortSignal that aborts at the
// moment baton tells this request's connection to go (a WebSocket should
// then send a close frame, 1001 or 1012; an event stream should end), and
// `drainSignal()` aborts when this worker starts to drain. Outside a baton
// worker both never abort, so an app runs unchanged without baton.
//
// The worker registers itself on a global symbol: the copy of 'baton' the
// app imports may not be the one that runs the worker (a global install, or
// an app folder beside baton's).
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';

export interface DrainRegistry {
  signalFor(req?: IncomingMessage | Http2ServerRequest): AbortSignal;
}

const KEY = Symbol.for('baton.worker.drain');
const never = new AbortController().signal;

/** Called by the worker runtime. */
export function registerDrain(registry: DrainRegistry): void {
  (globalThis as Record<symbol, unknown>)[KEY] = registry;
}

/**
 * An AbortSignal that aborts when baton asks the connection `req` came on to
 * close (or, without `req`, when this worker starts to drain). Its `reason`
 * says why: `reason.reason` is 'reload', 'scale-down' or 'shutdown'.
 */
export function drainSignal(req?: IncomingMessage | Http2ServerRequest): AbortSignal {
  const registry = (globalThis as Record<symbol, unknown>)[KEY] as DrainRegistry | undefined;
  return registry ? registry.signalFor(req) : never;
}
