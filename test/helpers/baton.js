// @ts-check
// Runs the real built primary (dist/primary.js) as a child process in its own
// process group, on a free port, with its own temp .env, and reads its JSON
// log lines. Every wait is an event or a poll with a deadline, never a sleep.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const PRIMARY = join(ROOT, 'dist', 'primary.js');
export const FIXTURES = join(ROOT, 'test', 'fixtures');

/** Defaults for tests: loopback, free port, two workers, short deadlines. */
const TEST_ENV = { PORT: '0', HOST: '127.0.0.1', WORKERS: '2', READY_TIMEOUT_MS: '10000', DRAIN_TIMEOUT_MS: '10000' };

/** @param {Record<string, string>} values */
export function envText(values) {
  return Object.entries(values).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n') + '\n';
}

/**
 * @typedef {{ msg?: string, [key: string]: unknown }} LogLine
 * @typedef {{ code: number | null, signal: NodeJS.Signals | null }} Exit
 */

/**
 * @param {{
 *   env?: Record<string, string>,     // written to .env (merged over TEST_ENV)
 *   rawEnvFile?: string,              // written to .env as is, instead of `env`
 *   noEnvFile?: boolean,
 *   processEnv?: Record<string, string>, // the real environment (besides PATH)
 *   args?: string[],
 *   files?: Record<string, string>,   // written into the primary's directory before it starts
 *   viaCli?: boolean,                 // `baton start ...args` instead of `node dist/primary.js ...args`
 *   wrap?: string[],                  // a command that execs the primary (systemd-socket-activate -l ADDR)
 *   waitReady?: boolean,
 *   t?: { teardown(fn: () => unknown): void },
 * }} [options]
 */
export async function startBaton(options = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'baton-test-'));
  const envPath = join(dir, '.env');
  /** @type {Record<string, string>} */
  let envValues = { ...TEST_ENV, ...options.env };
  if (options.rawEnvFile !== undefined) writeFileSync(envPath, options.rawEnvFile);
  else if (!options.noEnvFile) writeFileSync(envPath, envText(envValues));
  for (const [name, text] of Object.entries(options.files ?? {})) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }

  // A clean environment: a PORT set where the tests run must not win over the test's .env.
  const entry = options.viaCli ? [join(ROOT, 'dist', 'cli.js'), 'start'] : [PRIMARY];
  const [command, ...prefix] = options.wrap ?? [process.execPath];
  const child = spawn(/** @type {string} */ (command), [...prefix, ...(options.wrap ? [process.execPath] : []), ...entry, ...(options.args ?? [])], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...options.processEnv },
    detached: true, // its own process group: teardown kills the whole group
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = /** @type {number} */ (child.pid);

  /** @type {LogLine[]} */
  const logs = [];
  let stderr = '';
  /** @type {Set<() => void>} */
  const watchers = new Set();
  const notify = () => { for (const w of [...watchers]) w(); };

  let buffered = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() === '') continue;
      try { logs.push(JSON.parse(line)); } catch { logs.push({ raw: line }); }
    }
    notify();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr += chunk; notify(); });

  /** @type {Exit | undefined} */
  let exitInfo;
  /** @type {Exit | undefined} */
  let closeInfo;
  // 'exit' can come before the last of the primary's output has been read;
  // 'close' comes once every writer of its stdout and stderr (workers
  // included) is gone and all of it was read. Assertions on logs after an
  // exit wait for 'close'.
  /** @type {Promise<Exit>} */
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => { exitInfo = { code, signal }; notify(); resolve(exitInfo); });
  });
  /** @type {Promise<Exit>} */
  const closed = new Promise((resolve) => {
    child.on('close', (code, signal) => { closeInfo = { code, signal }; notify(); resolve(closeInfo); });
  });

  /**
   * Waits until `check()` returns a value other than undefined/false.
   * @template T
   * @param {() => T | undefined | false} check
   * @param {number} timeoutMs
   * @param {() => string} describe
   * @returns {Promise<T>}
   */
  function until(check, timeoutMs, describe) {
    return new Promise((resolve, reject) => {
      const tryIt = () => {
        const v = check();
        if (v !== undefined && v !== false) { cleanup(); resolve(v); return true; }
        return false;
      };
      const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}\n--- logs ---\n${dump()}`)); }, timeoutMs);
      const cleanup = () => { clearTimeout(timer); watchers.delete(watcher); };
      const watcher = () => { tryIt(); };
      if (!tryIt()) watchers.add(watcher);
    });
  }

  const dump = () => logs.slice(-40).map((l) => JSON.stringify(l)).join('\n') + (stderr ? `\n--- stderr ---\n${stderr}` : '');

  /**
   * @param {string | ((l: LogLine) => boolean)} match a msg, or a predicate
   * @param {{ timeoutMs?: number, since?: number }} [opts] since: index in logs to search from
   */
  function waitForLog(match, opts = {}) {
    const pred = typeof match === 'string' ? (/** @type {LogLine} */ l) => l.msg === match : match;
    const since = opts.since ?? 0;
    return until(() => logs.slice(since).find(pred), opts.timeoutMs ?? 15000, () => `log ${typeof match === 'string' ? JSON.stringify(match) : match.toString()}`);
  }

  const baton = {
    dir, envPath, pid, child, logs, exited, closed,
    /** @type {number} */ port: 0,
    get stderr() { return stderr; },
    get exitInfo() { return exitInfo; },
    waitForLog,
    until,
    dump,
    /** @param {NodeJS.Signals} sig */
    signal(sig) { process.kill(pid, sig); },
    /** @param {NodeJS.Signals} sig */
    signalGroup(sig) { process.kill(-pid, sig); },
    /** Rewrites .env with `values` merged over the current ones. @param {Record<string, string>} values */
    writeEnv(values) {
      envValues = { ...envValues, ...values };
      writeAtomic(envPath, envText(envValues));
    },
    /** @param {string} text */
    writeRawEnv(text) { writeAtomic(envPath, text); },
    /** Sends SIGHUP and waits for that reload's outcome line. */
    async reload(timeoutMs = 15000) {
      const since = logs.length;
      process.kill(pid, 'SIGHUP');
      return waitForLog((l) => l.msg === 'reload complete' || (typeof l.msg === 'string' && /^reload (failed|rejected)/.test(l.msg)), { since, timeoutMs });
    },
    /** Pids of every live process in the primary's process group. */
    groupPids() { return processGroup(pid); },
    /**
     * Waits until the primary has exited and all its output (and its
     * workers') has been read. @param {number} [timeoutMs]
     */
    waitExit(timeoutMs = 15000) { return until(() => closeInfo, timeoutMs, () => exitInfo ? 'the primary\'s output to close (a process still holds it?)' : 'the primary to exit'); },
    /** Waits for the primary's own exit only (its stdout may still be held, e.g. by a primary it started). @param {number} [timeoutMs] */
    waitProcessExit(timeoutMs = 15000) { return until(() => exitInfo, timeoutMs, () => 'the primary to exit'); },
    /** Kills the whole group and removes the temp dir. */
    cleanup() {
      try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  options.t?.teardown(() => baton.cleanup());

  if (options.waitReady !== false) {
    const ready = await Promise.race([
      waitForLog('ready'),
      exited.then((e) => { throw new Error(`primary exited before ready: ${JSON.stringify(e)}\n${dump()}`); }),
    ]);
    baton.port = /** @type {number} */ (ready.port);
  }
  return baton;
}

/** @typedef {Awaited<ReturnType<typeof startBaton>>} Baton */

/**
 * Replaces a file in one step, as editors and config tools do: a reload that
 * reads the file mid-write would see it half written.
 * @param {string} path @param {string} text
 */
export function writeAtomic(path, text) {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** Live (non-zombie) pids whose process group is `pgid`. @param {number} pgid */
export function processGroup(pgid) {
  /** @type {number[]} */
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${entry}/stat`, 'utf8'); } catch { continue; }
    // Fields after the command name (which may contain spaces): state ppid pgrp ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') pids.push(Number(entry));
  }
  return pids;
}

/**
 * Polls `check` until it is true or the deadline passes; returns the last answer.
 * @param {() => boolean | Promise<boolean>} check
 */
export async function pollUntil(check, timeoutMs = 5000, intervalMs = 20) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return check();
}
