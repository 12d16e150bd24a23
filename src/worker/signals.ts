// Imported first by the worker entry. Ctrl+C, Ctrl+\ and a closed terminal
// signal the whole process group; a worker keeping Node's default handlers
// would die mid-request. The primary alone decides when a worker stops (by an
// IPC message, then SIGKILL past the deadline), so these are ignored here.
// A listener (not SIG_IGN) is the only way in Node: it resets inherited ignores.
//
// Unchanged apps often install their own handlers (`process.on('SIGTERM',
// () => server.close(() => process.exit(0)))`). Those must not run on a
// terminal signal either: they are held here instead, and run once, as the
// app's close hook, after the worker has drained (see runtime.ts).
export const TERMINAL_SIGNALS = ['SIGINT', 'SIGHUP', 'SIGTERM', 'SIGQUIT'] as const;
type TerminalSignal = (typeof TERMINAL_SIGNALS)[number];

const ignore = (): void => {};
for (const signal of TERMINAL_SIGNALS) process.on(signal, ignore);

const held = new Map<TerminalSignal, { fn: (...args: unknown[]) => unknown; once: boolean }[]>(TERMINAL_SIGNALS.map((s) => [s, []]));

function isTerminal(event: unknown): event is TerminalSignal {
  return typeof event === 'string' && held.has(event as TerminalSignal);
}

// Listeners for the terminal signals are kept aside; everything else goes
// through as usual.
type Adder = (event: string | symbol, fn: (...args: unknown[]) => void) => NodeJS.Process;
const wrapAdd = (original: Adder, once: boolean, prepend: boolean): Adder => function (this: NodeJS.Process, event, fn) {
  if (!isTerminal(event)) return original.call(this, event, fn);
  const list = held.get(event)!;
  if (prepend) list.unshift({ fn, once });
  else list.push({ fn, once });
  return this;
};
const wrapRemove = (original: Adder): Adder => function (this: NodeJS.Process, event, fn) {
  if (!isTerminal(event)) return original.call(this, event, fn);
  const list = held.get(event)!;
  const i = list.findIndex((l) => l.fn === fn);
  if (i >= 0) list.splice(i, 1);
  return this;
};
const p = process as unknown as Record<string, Adder>;
p.on = p.addListener = wrapAdd(process.on as unknown as Adder, false, false);
p.once = wrapAdd(process.once as unknown as Adder, true, false);
p.prependListener = wrapAdd(process.prependListener as unknown as Adder, false, true);
p.prependOnceListener = wrapAdd(process.prependOnceListener as unknown as Adder, true, true);
p.off = p.removeListener = wrapRemove(process.removeListener as unknown as Adder);

/** How many handlers the app installed for terminal signals (held, never run by a signal). */
export function heldSignalHandlers(): number {
  let n = 0;
  for (const list of held.values()) n += list.length;
  return n;
}

/**
 * Runs the app's own SIGTERM handlers (or SIGINT's, or SIGQUIT's, if it has
 * none for SIGTERM) as a signal would have, once. They usually close their
 * server (already drained: its close() calls back at once) and call
 * process.exit(). Resolves after they ran (an async handler is not awaited:
 * the caller bounds the wait).
 */
export function runHeldSignalHandlers(): number {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) {
    const list = held.get(signal)!;
    if (list.length === 0) continue;
    const run = list.slice();
    held.set(signal, list.filter((l) => !l.once));
    for (const { fn } of run) fn.call(process, signal);
    return run.length;
  }
  return 0;
}
