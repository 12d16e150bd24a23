#!/usr/bin/env node
// The `baton` command: start a primary, or talk to a running one over its
// control socket (reload and wait for the outcome, status, stop, scale), or
// check a .env file without touching anything.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import dotenv from 'dotenv';
import { DEFAULT_ENV_FILE, KEYS, loadConfig, type ConfigError } from './config.js';
import { NoPrimaryError, sendRequest, type ControlRequest, type ControlResponse, type StatusSnapshot } from './control.js';
import { runPrimary } from './primary/main.js';
import { appDirOf, runtimeBase, runtimePath } from './runtime-paths.js';
import { withTls } from './tls-material.js';
import { EXIT } from './primary/supervisor.js';

/** The CLI's own exit codes, on top of the primary's (README table). */
const CLI_EXIT = { ...EXIT, noPrimary: 69, timeout: 75 } as const;

const USAGE = `Usage: baton <command> [options]

Commands:
  start [APP] [--port N] [--host ADDR] [--workers N] [--env-file PATH] [--watch]
                         run the primary in the foreground (same as node
                         dist/primary.js); APP: the app module (APP_MODULE)
  reload [--timeout MS]  reload and wait for the outcome: exit 0 when the new
                         generation serves, 1 if it failed and was rolled back,
                         78 if the config is invalid
  status [--json]        state, generation, workers, last reload
  check [APP] [--env-file PATH]
                         validate a .env file (and the environment) like the
                         primary would, without touching a running server
  stop [--timeout MS]    ordered shutdown; waits until the primary has exited
  scale N                run N workers per generation (SIGTTIN/SIGTTOU: +1/-1)
  upgrade [--node PATH] [--timeout MS]
                         replace the primary itself by a new one, from the
                         code on disk now and with Node PATH (default: the
                         primary's own), without closing the port; exit 0
                         when the new one serves, 1 or 78 if it was rolled
                         back (SIGUSR2 to the primary does the same)
  help                   this text

Options for reload, status, stop, scale, upgrade:
  --socket PATH          the control socket (default: CONTROL_SOCKET from the
                         environment or the .env file, else ./baton.sock)
  --env-file PATH        the .env file to read CONTROL_SOCKET from

Exit codes: 0 ok; 1 failed or rolled back; 2 usage; 69 no primary running;
75 no answer in time; 78 invalid config.
`;

class UsageError extends Error {}

function fail(code: number, message: string): never {
  process.stderr.write(`baton: ${message}\n`);
  process.exit(code);
}

function ms(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new UsageError(`--timeout takes a whole number of milliseconds, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/**
 * Where the primary's control socket is: flag > environment > .env > default,
 * found as the primary finds it (runtime-paths.ts): the .env in APP_DIR, a
 * relative path taken against the directory the .env file really is in.
 */
function socketPath(flag: string | undefined, envFileFlag: string | undefined): string {
  if (flag) return flag;
  const appDir = appDirOf(process.env.APP_DIR, process.env);
  const envFile = resolve(appDir, envFileFlag ?? process.env.ENV_FILE ?? DEFAULT_ENV_FILE);
  const base = runtimeBase(envFile, appDir);
  if (process.env.CONTROL_SOCKET) return runtimePath(base, process.env.CONTROL_SOCKET);
  if (existsSync(envFile)) {
    const fromFile = dotenv.parse(readFileSync(envFile)).CONTROL_SOCKET;
    if (fromFile) return runtimePath(base, fromFile);
  }
  return runtimePath(base, KEYS.CONTROL_SOCKET.default());
}

async function ask(socket: string, req: ControlRequest, timeoutMs: number): Promise<{ response: ControlResponse; closed: Promise<void> }> {
  try {
    return await sendRequest(socket, req, timeoutMs);
  } catch (err) {
    if (err instanceof NoPrimaryError) fail(CLI_EXIT.noPrimary, err.message);
    if ((err as Error).message.startsWith('no answer')) fail(CLI_EXIT.timeout, (err as Error).message);
    fail(CLI_EXIT.failed, (err as Error).message);
  }
}

function printErrors(errors: readonly ConfigError[]): void {
  for (const e of errors) process.stderr.write(`  ${e.message}\n`);
}

function duration(msTotal: number): string {
  const s = Math.floor(msTotal / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  return h < 24 ? `${h}h ${m % 60}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

function formatStatus(st: StatusSnapshot, now = Date.now()): string {
  const lines = [
    `baton primary ${st.pid}: ${st.state}, generation ${st.generation} (config v${st.configVersion}), up ${duration(st.uptimeMs)}`,
    `listening on ${st.listeners.map((l) => l.kind === 'unix' ? `unix:${l.path}` : l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`).join(', ')}${st.metrics ? `; metrics on http://${st.metrics.host}:${st.metrics.port}/metrics` : ''}`,
    ...(st.upgradedFrom ? [`upgraded from primary ${st.upgradedFrom.pid} (Node ${st.upgradedFrom.node}); running Node ${st.node}`] : []),
  ];
  const r = st.lastReload;
  lines.push(r === null ? 'last reload: none'
    : r.ok ? `last reload: ok, generation ${r.generation} in ${r.durationMs} ms, ${duration(now - r.at)} ago`
    : `last reload: FAILED ${duration(now - r.at)} ago: ${r.reason}`);
  lines.push(`workers: ${st.workers.filter((w) => w.state === 'ready').length} ready of ${st.targetWorkers} wanted`, '');
  const rows = [['ID', 'PID', 'GEN', 'STATE', 'UPTIME', 'SERVED', 'IN FLIGHT', 'UPGRADED'],
    ...st.workers.map((w) => [w.id, w.pid, w.generation, w.state, duration(w.uptimeMs), w.served, w.inFlight, w.upgraded].map(String))];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) lines.push(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  return lines.join('\n') + '\n';
}

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'start') return runPrimary(rest);
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    process.exit(command === undefined ? CLI_EXIT.usage : CLI_EXIT.ok);
  }

  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      strict: true,
      allowPositionals: command === 'scale' || command === 'check',
      options: {
        socket: { type: 'string' },
        'env-file': { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
        node: { type: 'string' },
      },
    });
  } catch (err) {
    fail(CLI_EXIT.usage, `${(err as Error).message}\n\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  const socket = () => socketPath(values.socket, values['env-file']);

  try {
    switch (command) {
      case 'reload': {
        const { response } = await ask(socket(), { cmd: 'reload' }, ms(values.timeout, 120_000));
        if (response.ok && response.cmd === 'reload') {
          process.stdout.write(`reload complete: generation ${response.generation} serving after ${response.durationMs} ms\n`);
          process.exit(CLI_EXIT.ok);
        }
        if (!response.ok) {
          // Config errors are listed one per line; their joined form is the reason.
          if (response.errors) {
            process.stderr.write(`baton: reload ${response.kind}: invalid config:\n`);
            printErrors(response.errors);
          } else process.stderr.write(`baton: reload ${response.kind}: ${response.reason}\n`);
          process.exit(response.errors ? CLI_EXIT.config : CLI_EXIT.failed);
        }
        return fail(CLI_EXIT.failed, 'unexpected answer');
      }
      case 'status': {
        const { response } = await ask(socket(), { cmd: 'status' }, ms(values.timeout, 5_000));
        if (!response.ok || response.cmd !== 'status') return fail(CLI_EXIT.failed, response.ok ? 'unexpected answer' : response.reason);
        process.stdout.write(values.json ? `${JSON.stringify(response.status, null, 2)}\n` : formatStatus(response.status));
        process.exit(CLI_EXIT.ok);
      }
      case 'stop': {
        const timeoutMs = ms(values.timeout, 120_000);
        const { response, closed } = await ask(socket(), { cmd: 'stop' }, timeoutMs);
        if (!response.ok || response.cmd !== 'stop') return fail(CLI_EXIT.failed, response.ok ? 'unexpected answer' : response.reason);
        process.stdout.write(`stopping primary ${response.pid}…\n`);
        // The primary keeps this connection until it exits.
        const timer = setTimeout(() => fail(CLI_EXIT.timeout, `primary ${response.pid} still running after ${timeoutMs} ms`), timeoutMs);
        await closed;
        clearTimeout(timer);
        process.stdout.write(`primary ${response.pid} stopped\n`);
        process.exit(CLI_EXIT.ok);
      }
      case 'scale': {
        const [n, ...extra] = positionals;
        if (n === undefined || extra.length > 0 || !/^\d+$/.test(n) || Number(n) < 1 || Number(n) > 1024) {
          throw new UsageError('scale takes one number of workers, from 1 to 1024');
        }
        const { response } = await ask(socket(), { cmd: 'scale', workers: Number(n) }, ms(values.timeout, 10_000));
        if (!response.ok || response.cmd !== 'scale') return fail(CLI_EXIT.failed, response.ok ? 'unexpected answer' : response.reason);
        process.stdout.write(`scaling to ${response.workers} workers per generation\n`);
        process.exit(CLI_EXIT.ok);
      }
      case 'upgrade': {
        const node = values.node === undefined ? undefined : resolve(values.node);
        if (node !== undefined && !existsSync(node)) throw new UsageError(`--node ${values.node}: no such file`);
        const { response } = await ask(socket(), { cmd: 'upgrade', ...(node ? { node } : {}) }, ms(values.timeout, 120_000));
        if (response.ok && response.cmd === 'upgrade') {
          process.stdout.write(`upgrade complete: primary ${response.pid} (Node ${response.node}) serves\n`);
          process.exit(CLI_EXIT.ok);
        }
        if (!response.ok) {
          process.stderr.write(`baton: upgrade ${response.kind}: ${response.reason}\n`);
          process.exit(response.exitCode === CLI_EXIT.config ? CLI_EXIT.config : CLI_EXIT.failed);
        }
        return fail(CLI_EXIT.failed, 'unexpected answer');
      }
      case 'check': {
        if (positionals.length > 1) throw new UsageError('check takes one app module at most');
        const appDir = appDirOf(process.env.APP_DIR, process.env);
        const envFile = values['env-file'] ?? process.env.ENV_FILE ?? DEFAULT_ENV_FILE;
        const loadedConfig = loadConfig({ envFile, environment: process.env, cwd: appDir, flags: positionals[0] === undefined ? {} : { APP_MODULE: positionals[0] } });
        const dir = loadedConfig.ok ? resolve(appDir, loadedConfig.loaded.config.appDir || '.') : appDir;
        const result = withTls(loadedConfig, dir);
        if (!result.ok) {
          process.stderr.write(`baton: invalid config in ${result.envFile}:\n`);
          printErrors(result.errors);
          process.exit(CLI_EXIT.config);
        }
        const c = result.loaded.config;
        if (!existsSync(dir)) {
          process.stderr.write(`baton: invalid config in ${result.loaded.envFile}:\n  APP_DIR ${dir}: no such directory\n`);
          process.exit(CLI_EXIT.config);
        }
        if (c.appModule !== '' && !existsSync(resolve(dir, c.appModule))) {
          process.stderr.write(`baton: invalid config in ${result.loaded.envFile}:\n  APP_MODULE ${c.appModule}: no such file\n`);
          process.exit(CLI_EXIT.config);
        }
        const tls = result.loaded.tls;
        process.stdout.write(`config OK: ${result.loaded.envFile}${result.loaded.fileFound ? '' : ' (not found: defaults and environment)'}\n`
          + `  listen ${c.host}:${c.port}, ${c.workers} workers, app ${c.appModule || '(demo)'}, ${Object.keys(c.env).length} app keys\n`
          + (tls ? `  TLS: ${tls.subject}, serial ${tls.serialNumber}, valid until ${tls.validTo.toISOString()}${c.http2 ? ', HTTP/2 on' : ''}\n` : ''));
        for (const warning of result.loaded.warnings ?? []) process.stderr.write(`baton: warning: ${warning}\n`);
        process.exit(CLI_EXIT.ok);
      }
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (err) {
    if (err instanceof UsageError) fail(CLI_EXIT.usage, `${err.message}\n\n${USAGE}`);
    throw err;
  }
}

void main(process.argv.slice(2));
