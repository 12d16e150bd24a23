// @ts-check
// Runs a real nginx (Debian's nginx-light, /usr/sbin/nginx) in front of baton
// instances: its own prefix, config, pid file and temp paths in a temp dir,
// in the foreground (daemon off) in its own process group, errors to stderr,
// listening on a free 127.0.0.1 port. Readiness is a request through it,
// polled with a deadline. The upstream settings are the ones
// docs/deployment.md#behind-nginx recommends.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get } from './http.js';

export const NGINX = '/usr/sbin/nginx';
/** Tests that need nginx use `hasNginx ? test.serial : test.serial.skip`. */
export const hasNginx = existsSync(NGINX);

/** A port that was free a moment ago on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The nginx configuration that works with baton (docs/deployment.md#behind-nginx).
 * @param {{ dir: string, port: number, upstreams: number[], keepalive?: number, keepaliveTimeout?: string, failTimeout?: string }} o
 */
export function nginxConf(o) {
  const servers = o.upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=${o.failTimeout ?? '1s'};`).join('\n');
  return `worker_processes 1;
pid ${join(o.dir, 'nginx.pid')};
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(o.dir, 'client_body')};
  proxy_temp_path ${join(o.dir, 'proxy')};
  fastcgi_temp_path ${join(o.dir, 'fastcgi')};
  uwsgi_temp_path ${join(o.dir, 'uwsgi')};
  scgi_temp_path ${join(o.dir, 'scgi')};

  upstream baton {
${servers}
${o.keepalive === 0 ? '    # keepalive 0: a new upstream connection for every request' : `    # Idle connections to the upstreams kept open per nginx worker.
    keepalive ${o.keepalive ?? 64};
    # Below baton's KEEP_ALIVE_TIMEOUT_MS (5 s): nginx drops an idle upstream
    # connection before baton would, so it never sends on one baton is closing.
    keepalive_timeout ${o.keepaliveTimeout ?? '4s'};`}
  }

  server {
    listen 127.0.0.1:${o.port};
    location / {
      proxy_pass http://baton;
      # Keep-alive to the upstream: HTTP/1.1 without the client's Connection header.
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      # Retry another instance when one cannot be reached. A POST already sent
      # is never retried (non_idempotent is not set): it gets the error.
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      proxy_read_timeout 30s;
    }
  }
}
`;
}

/**
 * Starts nginx in front of `upstreams` (ports on 127.0.0.1) and waits until a
 * GET / through it answers 200.
 * @param {{
 *   upstreams: number[],
 *   t?: { teardown(fn: () => unknown): void },
 *   keepalive?: number, keepaliveTimeout?: string, failTimeout?: string,
 *   readyTimeoutMs?: number,
 * }} options
 */
export async function startNginx(options) {
  const dir = mkdtempSync(join(tmpdir(), 'baton-nginx-'));
  // Run as root, nginx's workers switch to nobody: they must reach the temp paths.
  chmodSync(dir, 0o755);
  const confPath = join(dir, 'nginx.conf');

  /** @type {ReturnType<typeof launch> | undefined} */
  let running;
  let lastError = '';
  // A port picked as free may be taken before nginx binds it: try another.
  for (let attempt = 0; attempt < 5 && !running; attempt++) {
    const port = await freePort();
    writeFileSync(confPath, nginxConf({ dir, port, upstreams: options.upstreams, keepalive: options.keepalive, keepaliveTimeout: options.keepaliveTimeout, failTimeout: options.failTimeout }));
    const candidate = launch(dir, confPath, port);
    const outcome = await waitUp(candidate, options.readyTimeoutMs ?? 10000);
    if (outcome === 'up') running = candidate;
    else {
      lastError = candidate.stderr;
      await candidate.stop();
      if (!/Address already in use/.test(candidate.stderr)) break;
    }
  }
  if (!running) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`nginx did not start:\n${lastError}`);
  }
  const nginx = running;
  const stop = async () => {
    await nginx.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  options.t?.teardown(stop);
  return {
    port: nginx.port,
    pid: nginx.pid,
    dir,
    confPath,
    /** Everything nginx wrote to stderr (its error log) so far. */
    get stderr() { return nginx.stderr; },
    stop,
  };
}

/** @param {string} dir @param {string} confPath @param {number} port */
function launch(dir, confPath, port) {
  const child = spawn(NGINX, ['-p', dir, '-c', confPath, '-e', 'stderr', '-g', 'daemon off;'], {
    cwd: dir,
    detached: true, // its own process group: the master and its worker
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = /** @type {number} */ (child.pid);
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (c) => { stderr += c; });
  child.stderr.on('data', (c) => { stderr += c; });
  /** @type {{ code: number | null, signal: string | null } | undefined} */
  let exitInfo;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => { exitInfo = { code, signal }; resolve(exitInfo); });
  });
  const stop = async () => {
    if (!exitInfo) {
      // SIGTERM to the master: a fast shutdown of it and its worker.
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      const timer = new Promise((r) => setTimeout(r, 3000));
      await Promise.race([exited, timer]);
    }
    // Whatever of the group is left (a worker whose master was killed).
    try { process.kill(-pid, 'SIGKILL'); } catch { /* none left */ }
  };
  return { pid, port, get stderr() { return stderr; }, get exitInfo() { return exitInfo; }, stop };
}

/** @param {ReturnType<typeof launch>} nginx @param {number} timeoutMs @returns {Promise<'up' | 'exited' | 'timeout'>} */
async function waitUp(nginx, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (nginx.exitInfo) return 'exited';
    try {
      const res = await get(nginx.port, '/', { timeoutMs: 2000 });
      if (res.status === 200) return 'up';
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  return nginx.exitInfo ? 'exited' : 'timeout';
}
