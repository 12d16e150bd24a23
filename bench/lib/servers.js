// @ts-check
// Starting, watching and stopping the servers under test. Every server runs in
// its own process group (detached) so it and its workers can be stopped by
// group id; nothing is ever killed by name. Traffic is 127.0.0.1 only.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { newConnRequest } from './clients.js';
import { round } from './summary.js';

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(BENCH_DIR, '..');
export const APPS_DIR = path.join(BENCH_DIR, 'apps');
export const PEERS_DIR = path.join(BENCH_DIR, 'peers');
export const HOST = '127.0.0.1';

/** Process groups we started and have not yet seen gone. */
const liveGroups = new Set();
/** Temp dirs to remove at exit. */
const tempDirs = new Set();

/** Kill every process group this process started (SIGKILL) — the emergency brake. */
export function killAllStarted() {
  for (const pgid of liveGroups) {
    try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
  }
  liveGroups.clear();
}
export function removeTempDirs() {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}
/** @param {string} prefix */
export function makeTempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `baton-bench-${prefix}-`));
  tempDirs.add(d);
  return d;
}

/** @returns {Promise<number>} */
export function getFreePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, HOST, () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** @param {number} pgid */
function groupAlive(pgid) {
  try { process.kill(-pgid, 0); return true; } catch { return false; }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A started server: a process group whose leader prints JSON log lines on stdout. */
export class ServerProc {
  /**
   * @param {string} name
   * @param {string} cmd
   * @param {string[]} args
   * @param {{ cwd?: string, env: Record<string,string> }} o
   */
  constructor(name, cmd, args, o) {
    this.name = name;
    this.child = spawn(cmd, args, { cwd: o.cwd ?? REPO_DIR, env: o.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = /** @type {number} */ (this.child.pid);
    liveGroups.add(this.pid);
    /** @type {Array<{ at: number, obj: any }>} parsed JSON log lines with arrival time (performance.now()) */
    this.logs = [];
    /** @type {string[]} */
    this.raw = [];
    /** @type {Set<(e: {at:number, obj:any}) => void>} */
    this.listeners = new Set();
    /** @type {{code: number|null, signal: string|null, at: number} | null} */
    this.exitInfo = null;
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal, at: performance.now() };
        resolve(this.exitInfo);
      });
    });
    const onLine = (/** @type {string} */ line) => {
      const at = performance.now();
      this.raw.push(line);
      if (this.raw.length > 400) this.raw.splice(0, 200);
      let obj;
      try { obj = JSON.parse(line); } catch { return; }
      if (!obj || typeof obj !== 'object') return;
      const e = { at, obj };
      this.logs.push(e);
      if (this.logs.length > 5000) this.logs.splice(0, 2500);
      for (const l of this.listeners) l(e);
    };
    readline.createInterface({ input: /** @type {any} */ (this.child.stdout) }).on('line', onLine);
    readline.createInterface({ input: /** @type {any} */ (this.child.stderr) }).on('line', (l) => onLine(l));
  }

  /**
   * Wait for the next log line matching `pred` (arriving after this call), the
   * process exiting, or the timeout.
   * @param {(o: any) => boolean} pred
   * @param {number} timeoutMs
   * @returns {Promise<{ at: number, obj: any }>}
   */
  waitFor(pred, timeoutMs) {
    return new Promise((resolve, reject) => {
      const done = (/** @type {() => void} */ f) => { clearTimeout(timer); this.listeners.delete(l); f(); };
      const l = (/** @type {{at:number,obj:any}} */ e) => { if (pred(e.obj)) done(() => resolve(e)); };
      const timer = setTimeout(() => done(() => reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for a log line\n${this.tail()}`))), timeoutMs);
      this.listeners.add(l);
      this.exited.then((x) => done(() => reject(new Error(`${this.name}: exited (code ${x.code}, signal ${x.signal}) while waiting for a log line\n${this.tail()}`))));
    });
  }

  tail(n = 15) { return this.raw.slice(-n).map((l) => `    | ${l}`).join('\n'); }

  /** @param {NodeJS.Signals} sig */
  signal(sig) { process.kill(this.pid, sig); }

  /** Stop the whole group: SIGTERM to the group, SIGKILL after graceMs. */
  async stop(graceMs = 6000) {
    if (!this.exitInfo) {
      try { process.kill(-this.pid, 'SIGTERM'); } catch { /* gone */ }
      await Promise.race([this.exited, sleep(graceMs)]);
    }
    const deadline = performance.now() + 2000;
    while (groupAlive(this.pid) && performance.now() < deadline) await sleep(50);
    if (groupAlive(this.pid)) { try { process.kill(-this.pid, 'SIGKILL'); } catch { /* gone */ } }
    await Promise.race([this.exited, sleep(2000)]);
    liveGroups.delete(this.pid);
  }
}

/** Minimal env for a server: no stray PORT etc. from the caller's environment. @param {Record<string,string>} extra */
function cleanEnv(extra) {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? os.tmpdir(), ...extra };
}

/**
 * @param {'bare'|'cluster'|'cluster-tls'|'broken'} kind
 * @param {Record<string,string>} [env]
 */
export async function startApp(kind, env = {}) {
  const port = await getFreePort();
  const file = { bare: 'bare.js', cluster: 'cluster.js', 'cluster-tls': 'cluster-tls.js', broken: 'broken.js' }[kind];
  const s = new ServerProc(kind, process.execPath, [path.join(APPS_DIR, file)],
    { env: cleanEnv({ PORT: String(port), HOST, WORKERS: '2', MESSAGE: 'Before hot reload', ...env }) });
  const ready = await s.waitFor((o) => o.msg === 'ready', 15_000);
  return Object.assign(s, { port: Number(ready.obj.port), workers: ready.obj.workers ?? [] });
}

/** @param {Record<string,string|number>} vars */
export function envFileText(vars) {
  return Object.entries(vars).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
}

/**
 * Start baton (dist/primary.js, or BATON_ENTRY) in a temp dir with a .env.
 * @param {{ entry: string, vars?: Record<string,string|number> }} o
 */
export async function startBaton(o) {
  const dir = makeTempDir('baton');
  const port = await getFreePort();
  const envPath = path.join(dir, '.env');
  const vars = { PORT: port, HOST, WORKERS: 2, MESSAGE: 'Before hot reload', APP_MODULE: '', LOG_LEVEL: 'info', ...o.vars };
  fs.writeFileSync(envPath, envFileText(vars));
  const s = new ServerProc('baton', process.execPath, [o.entry], { cwd: dir, env: cleanEnv({ ENV_FILE: envPath }) });
  const ready = await s.waitFor((x) => x.msg === 'ready' && x.role !== 'worker', 20_000);
  return Object.assign(s, {
    dir, envPath, vars, port: Number(ready.obj.port), workers: ready.obj.workers ?? [], generation: Number(ready.obj.generation ?? 1),
    /**
     * Async: the load clients share this event loop, and a synchronous
     * write (its open with O_TRUNC waits on the disk's journal) froze them
     * for up to 400 ms right before each SIGHUP (withClientLag).
     * @param {Record<string,string|number>} changes
     */
    async writeEnv(changes) {
      Object.assign(this.vars, changes);
      await fs.promises.writeFile(this.envPath, envFileText(this.vars));
    },
  });
}

export const PM2_APP = 'baton-bench';

/** Install PM2 into bench/peers on first use. */
export async function ensurePm2() {
  const bin = path.join(PEERS_DIR, 'node_modules', 'pm2', 'bin', 'pm2');
  if (fs.existsSync(bin)) return;
  process.stderr.write('bench: installing PM2 into bench/peers (first use)...\n');
  await new Promise((resolve, reject) => {
    const c = spawn('npm', ['install', '--prefix', PEERS_DIR, '--no-audit', '--no-fund', '--loglevel=error'], { stdio: ['ignore', 'inherit', 'inherit'] });
    c.on('exit', (code) => (code === 0 ? resolve(undefined) : reject(new Error(`npm install --prefix bench/peers failed (${code})`))));
    c.on('error', reject);
  });
}

/**
 * PM2 in the foreground (pm2-runtime, cluster mode, N instances, wait_ready) with
 * its own PM2_HOME (and HOME) in a fresh temp dir.
 * @param {{ message?: string, instances?: number }} [o]
 */
export async function startPm2(o = {}) {
  await ensurePm2();
  const dir = makeTempDir('pm2');
  const port = await getFreePort();
  const home = path.join(dir, 'pm2home');
  const eco = path.join(dir, 'ecosystem.config.cjs');
  const appEnv = { PORT: String(port), HOST, MESSAGE: o.message ?? 'Before hot reload', BENCH_GENERATION: '1' };
  fs.writeFileSync(eco, `module.exports = ${JSON.stringify({
    apps: [{
      name: PM2_APP, script: path.join(APPS_DIR, 'pm2-app.cjs'), exec_mode: 'cluster', instances: o.instances ?? 2,
      wait_ready: true, listen_timeout: 10000, kill_timeout: 6000, autorestart: true, merge_logs: true, env: appEnv,
    }],
  }, null, 2)};\n`);
  const env = cleanEnv({ HOME: dir, PM2_HOME: home });
  const runtime = path.join(PEERS_DIR, 'node_modules', 'pm2', 'bin', 'pm2-runtime');
  const s = new ServerProc('pm2', process.execPath, [runtime, 'start', eco], { cwd: dir, env });
  // pm2-runtime prints text; wait until both instances answer /healthz.
  const deadline = performance.now() + 20_000;
  const pids = new Set();
  while (pids.size < (o.instances ?? 2)) {
    if (s.exitInfo) throw new Error(`pm2-runtime exited early\n${s.tail()}`);
    if (performance.now() > deadline) throw new Error(`pm2: instances not ready in 20 s\n${s.tail()}`);
    try {
      const r = await newConnRequest({ host: HOST, port, path: '/healthz', timeoutMs: 1000 });
      if (r.status === 200) pids.add(JSON.parse(r.body).pid);
    } catch { await sleep(100); }
  }
  const cli = path.join(PEERS_DIR, 'node_modules', 'pm2', 'bin', 'pm2');
  return Object.assign(s, {
    dir, home, port, workers: [...pids], generation: 1, appEnv,
    /**
     * `pm2 reload <app> --update-env` against this runtime's PM2_HOME.
     * @param {Record<string,string>} envChanges
     * @returns {Promise<{ startAt: number, endAt: number, code: number|null, out: string }>}
     */
    reload(envChanges) {
      if (s.exitInfo) return Promise.reject(new Error('pm2-runtime is not running (refusing to let the CLI spawn a daemon)'));
      Object.assign(appEnv, envChanges);
      return runPm2Cli(cli, ['reload', PM2_APP, '--update-env'], { ...env, ...appEnv }, dir);
    },
    /** time a no-op CLI call (ping) to estimate the CLI's own start-up cost */
    async cliOverhead() {
      const r = await runPm2Cli(cli, ['ping'], env, dir);
      return r.endAt - r.startAt;
    },
    /** after stop(): make sure no daemon was left behind in our PM2_HOME */
    reap() {
      for (const f of ['pm2.pid']) {
        try {
          const pid = Number(fs.readFileSync(path.join(home, f), 'utf8').trim());
          if (pid > 1 && pid !== process.pid) {
            const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
            if (cmdline.includes(home) || cmdline.includes('pm2')) {
              const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
              if (environ.includes(`PM2_HOME=${home}`)) process.kill(pid, 'SIGKILL');
            }
          }
        } catch { /* no file / gone */ }
      }
    },
  });
}

/**
 * @param {string} cli @param {string[]} args @param {Record<string,string>} env @param {string} cwd
 * @returns {Promise<{ startAt: number, endAt: number, code: number|null, out: string }>}
 */
function runPm2Cli(cli, args, env, cwd) {
  return new Promise((resolve) => {
    const startAt = performance.now();
    const c = spawn(process.execPath, [cli, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.on('exit', (code) => { clearTimeout(t); resolve({ startAt, endAt: performance.now(), code, out }); });
  });
}

// ---- /proc helpers -------------------------------------------------------

/** @param {number} pid @returns {number|null} VmRSS in kB */
export function rssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}
/** @param {number} pid */
export function fdCount(pid) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return null; }
}
/** Process groups started by this bench that are still live. */
export function startedGroups() { return [...liveGroups]; }

/**
 * CPU time (clock ticks, utime+stime) of every live process in the given
 * process groups. Exited processes are not counted, so measure over an
 * interval in which the group's processes persist.
 * @param {number[]} pgids
 */
export function groupCpuTicks(pgids) {
  const want = new Set(pgids);
  let ticks = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (want.has(Number(f[2]))) ticks += Number(f[11]) + Number(f[12]);
    } catch { /* raced */ }
  }
  return ticks;
}

/** Busy clock ticks of the whole machine (all CPUs) from /proc/stat. */
export function machineBusyTicks() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0);
  } catch { return 0; }
}

/** Direct children of pid (scan of /proc/<n>/stat). @param {number} pid */
export function childPids(pid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch { /* raced */ }
  }
  return out;
}

/**
 * Ask /healthz and / over fresh connections until `want` distinct worker pids
 * answered (or `maxTries`), collecting what each said.
 * @param {number} port @param {{ want?: number, maxTries?: number }} [o]
 */
export async function probeWorkers(port, o = {}) {
  const want = o.want ?? 2;
  /** @type {Map<number, any>} */
  const byPid = new Map();
  const bodies = new Set();
  let errors = 0;
  // Pattern healthz, /, / (period 3) so that a strict round-robin over 2 workers
  // still lets both kinds of request reach both workers.
  const maxTries = o.maxTries ?? 36;
  for (let i = 0; i < maxTries && (byPid.size < want || i < 12); i++) {
    try {
      if (i % 3 === 0) {
        const h = await newConnRequest({ host: HOST, port, path: '/healthz', timeoutMs: 2000 });
        const j = JSON.parse(h.body);
        byPid.set(j.pid, j);
      } else {
        const r = await newConnRequest({ host: HOST, port, path: '/', timeoutMs: 2000 });
        bodies.add(r.body);
      }
    } catch { errors++; }
  }
  return { pids: [...byPid.keys()], health: [...byPid.values()], bodies: [...bodies], errors };
}

/**
 * Write `message` into baton's .env, SIGHUP it, and time the reload from its
 * log: signal -> "reload complete" (or failed/rejected) -> "generation
 * retired". Times relative to `t0` (performance.now() time). `onReady` runs
 * the moment the outcome line arrives (a reading that must be taken then).
 * @param {any} s a baton ServerProc @param {string} message @param {number} t0
 * @param {{ readyTimeoutMs?: number, goneTimeoutMs?: number, onReady?: (line: any) => void }} [o]
 */
export async function reloadBatonTimed(s, message, t0, o = {}) {
  await s.writeEnv({ MESSAGE: message });
  const readyP = s.waitFor((/** @type {any} */ x) => ['reload complete', 'reload failed', 'reload rejected'].includes(x.msg), o.readyTimeoutMs ?? 30_000);
  const goneP = s.waitFor((/** @type {any} */ x) => x.msg === 'generation retired', o.goneTimeoutMs ?? 30_000);
  readyP.catch(() => {}); goneP.catch(() => {});
  const signalAbs = performance.now();
  s.signal('SIGHUP');
  /** @type {any} */
  const r = { signalAt: signalAbs - t0 };
  try {
    const ready = await readyP;
    o.onReady?.(ready.obj);
    r.outcome = ready.obj.msg === 'reload complete' ? 'complete' : ready.obj.msg.replace('reload ', '');
    r.reason = ready.obj.reason ?? ready.obj.err?.message;
    r.generation = ready.obj.generation;
    // The new generation's pids, as its 'reload complete' line names them.
    if (Array.isArray(ready.obj.workers)) r.workers = ready.obj.workers;
    r.readyAt = ready.at - t0;
    // Observed: our SIGHUP -> the "reload complete" line arriving. baton's own durationMs is kept too.
    r.readyMs = round(ready.at - signalAbs);
    r.readyLogMs = ready.obj.durationMs ?? null;
  } catch (err) { r.outcome = 'timeout'; r.readyAt = null; r.error = String(err).split('\n')[0]; }
  if (r.outcome !== 'complete') {
    r.goneAt = r.readyAt;
    return r;
  }
  try {
    const gone = await goneP;
    r.goneAt = gone.at - t0;
    r.goneMs = round(gone.at - signalAbs);
    r.goneLogMs = gone.obj.durationMs ?? null;
    r.retiredGeneration = gone.obj.retiredGeneration ?? gone.obj.generation;
  } catch (err) { r.goneAt = null; r.error = String(err).split('\n')[0]; }
  return r;
}
