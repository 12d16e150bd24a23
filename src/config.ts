// One source of truth for configuration: every key, its default, its parser
// and its documentation live in KEYS below. The README's table and
// .env.example are checked against this table by a test.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import dotenv from 'dotenv';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;

/** One address of LISTEN. */
export type ListenAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };
export type TlsVersion = (typeof TLS_VERSIONS)[number];
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The validated, frozen settings every worker of one generation shares. */
export interface Config {
  readonly port: number;
  readonly host: string;
  /** LISTEN: the addresses to listen on, replacing PORT/HOST; undefined: PORT/HOST. */
  readonly listen: readonly ListenAddress[] | undefined;
  readonly unixSocketMode: number;
  readonly dispatch: 'primary' | 'shared';
  readonly sticky: 'off' | 'ip';
  readonly workers: number;
  readonly message: string;
  readonly appModule: string;
  /** APP_DIR as set (empty: the default, see runtime-paths.ts). */
  readonly appDir: string;
  readonly readyTimeoutMs: number;
  readonly drainTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly drainSpreadMs: number;
  readonly drainSpreadUpgradedMs: number;
  readonly bootNice: number;
  /** Node and V8 flags for the workers, after the primary's own. */
  readonly workerNodeFlags: readonly string[];
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly logBufferBytes: number;
  readonly healthPath: string;
  readonly readyPath: string;
  readonly shutdownDelayMs: number;
  readonly shutdownIdleCloseMs: number;
  readonly controlSocket: string;
  readonly pidFile: string;
  /** undefined: no metrics endpoint. */
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
  /** Both set: every TCP listener speaks TLS (the PEM files; their contents are read by the primary). */
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  readonly tlsMinVersion: TlsVersion;
  readonly http2: boolean;
  readonly tlsTicketRotateMs: number;
  readonly watch: boolean;
  readonly watchPaths: readonly string[];
  /** Keys baton does not know: the app's own settings (e.g. DATABASE_URL). */
  readonly env: Readonly<Record<string, string>>;
}

type Field = Exclude<keyof Config, 'env'>;

interface KeySpec {
  readonly field: Field;
  readonly default: () => string;
  readonly doc: string;
  /** Parses a raw string or throws an Error whose message says what is wrong. */
  readonly parse: (raw: string) => Config[Field];
  /** false: changing it needs a restart, and a reload that changes it is refused. */
  readonly reloadable: boolean;
}

function integer(min: number, max: number): (raw: string) => number {
  return (raw) => {
    const trimmed = raw.trim();
    if (!/^\d+$/.test(trimmed)) throw new Error(`must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    const n = Number(trimmed);
    if (n < min || n > max) throw new Error(`must be from ${min} to ${max}, got ${n}`);
    return n;
  };
}

/** Space-separated flags, each starting with "-" (Node itself judges them, when a worker starts). */
function nodeFlags(raw: string): string[] {
  const flags = raw.split(/\s+/).filter((f) => f !== '');
  const bad = flags.find((f) => !/^--?[A-Za-z0-9]/.test(f));
  if (bad !== undefined) throw new Error(`must be Node flags separated by spaces, each starting with "-", got ${JSON.stringify(bad)}`);
  return flags;
}

function oneOf<T extends string>(values: readonly T[]): (raw: string) => T {
  return (raw) => {
    const v = raw.trim().toLowerCase();
    if (!(values as readonly string[]).includes(v)) throw new Error(`must be one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
    return v as T;
  };
}

function urlPath(raw: string): string {
  const v = raw.trim();
  if (!v.startsWith('/') || /[\s?#]/.test(v)) throw new Error(`must be a path starting with / (no spaces, ? or #), got ${JSON.stringify(raw)}`);
  return v;
}

/** Unix socket paths are limited to 107 bytes (sun_path) as given to bind(). */
export const MAX_SOCKET_PATH = 107;

function socketPath(raw: string): string {
  const v = nonEmpty(raw);
  if (Buffer.byteLength(v) > MAX_SOCKET_PATH) throw new Error(`must be at most ${MAX_SOCKET_PATH} bytes (a Unix socket path limit), got ${Buffer.byteLength(v)}; use a shorter or relative path`);
  return v;
}

/** The one boolean parser, for every boolean key. */
export function boolean(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'on', 'yes'].includes(v)) return true;
  if (['0', 'false', 'off', 'no', ''].includes(v)) return false;
  throw new Error(`must be a boolean (1/0, true/false, on/off, yes/no), got ${JSON.stringify(raw)}`);
}

function optionalPath(raw: string): string | undefined {
  return raw.trim() === '' ? undefined : raw.trim();
}

function tlsVersion(raw: string): TlsVersion {
  const v = TLS_VERSIONS.find((t) => t.toLowerCase() === raw.trim().toLowerCase());
  if (!v) throw new Error(`must be one of ${TLS_VERSIONS.join(', ')}, got ${JSON.stringify(raw)}`);
  return v;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `unix:/path`, comma-separated; empty: PORT/HOST. */
export function listenList(raw: string): ListenAddress[] | undefined {
  if (raw.trim() === '') return undefined;
  const out: ListenAddress[] = [];
  for (const part of raw.split(',').map((p) => p.trim())) {
    if (part === '') throw new Error(`has an empty entry in ${JSON.stringify(raw)}`);
    if (part.startsWith('unix:')) {
      const path = part.slice(5);
      if (path === '') throw new Error(`${JSON.stringify(part)}: unix: needs a path`);
      if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw new Error(`${JSON.stringify(part)}: a Unix socket path is at most ${MAX_SOCKET_PATH} bytes`);
      out.push({ kind: 'unix', path });
      continue;
    }
    const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(part) ?? /^([^:[\]]+):(\d+)$/.exec(part);
    if (!m) throw new Error(`${JSON.stringify(part)} is not HOST:PORT, [IPv6]:PORT or unix:/path`);
    const port = Number(m[2]);
    if (port > 65535) throw new Error(`${JSON.stringify(part)}: port must be from 0 to 65535`);
    out.push({ kind: 'tcp', host: m[1] as string, port });
  }
  const seen = new Set<string>();
  for (const a of out) {
    const key = a.kind === 'unix' ? `unix:${a.path}` : `${a.host}:${a.port}`;
    if (seen.has(key) && !(a.kind === 'tcp' && a.port === 0)) throw new Error(`lists ${key} twice`);
    seen.add(key);
  }
  return out;
}

function fileMode(raw: string): number {
  const v = raw.trim();
  if (!/^0?[0-7]{3}$/.test(v)) throw new Error(`must be an octal file mode such as 0660, got ${JSON.stringify(raw)}`);
  return parseInt(v, 8);
}

function optionalPort(raw: string): number | undefined {
  return raw.trim() === '' ? undefined : integer(0, 65535)(raw);
}

function nonEmpty(raw: string): string {
  if (raw.trim() === '') throw new Error('must not be empty');
  return raw.trim();
}

export const KEYS = {
  PORT: {
    field: 'port', default: () => '8080', reloadable: false, parse: integer(0, 65535),
    doc: 'TCP port the primary listens on; 0 picks a free port (shown in the ready line).',
  },
  HOST: {
    field: 'host', default: () => '0.0.0.0', reloadable: false, parse: nonEmpty,
    doc: 'Address the primary listens on.',
  },
  LISTEN: {
    field: 'listen', default: () => '', reloadable: false, parse: listenList,
    doc: 'Addresses to listen on, comma-separated: HOST:PORT, [IPv6]:PORT or unix:/path; replaces PORT and HOST. All of them feed the same workers; with TLS, every TCP address speaks TLS and Unix sockets stay plain.',
  },
  UNIX_SOCKET_MODE: {
    field: 'unixSocketMode', default: () => '0660', reloadable: false, parse: fileMode,
    doc: 'File mode of the Unix sockets in LISTEN (the control socket is always 0600).',
  },
  DISPATCH: {
    field: 'dispatch', default: () => 'shared', reloadable: false, parse: oneOf(['primary', 'shared'] as const),
    doc: 'How connections reach workers: shared (the default: the serving workers accept from the listening sockets themselves; one holding more connections than its least-loaded peer forwards what it accepts to the one with fewest, through the primary) or primary (the primary accepts each one and hands it to the next ready worker, round-robin; it waits in the primary when no worker is ready; the default with STICKY=ip). Needs a restart to change.',
  },
  STICKY: {
    field: 'sticky', default: () => 'off', reloadable: false, parse: oneOf(['off', 'ip'] as const),
    doc: 'ip: each client address always goes to the same worker of the serving generation (socket.io long-polling needs it); needs DISPATCH=primary (its default then) and TCP listeners only. Needs a restart to change.',
  },
  WORKERS: {
    field: 'workers', default: () => String(availableParallelism()), reloadable: true, parse: integer(1, 1024),
    doc: 'Worker processes per generation (default: the number of CPUs).',
  },
  MESSAGE: {
    field: 'message', default: () => 'Before hot reload', reloadable: true, parse: (raw) => raw,
    doc: 'What the demo app answers on GET /.',
  },
  APP_MODULE: {
    field: 'appModule', default: () => '', reloadable: true, parse: (raw) => raw.trim(),
    doc: 'Path (relative to APP_DIR) of the app module workers serve; empty means the built-in demo.',
  },
  APP_DIR: {
    field: 'appDir', default: () => '', reloadable: true, parse: (raw) => raw.trim(),
    doc: 'The directory the app runs from, re-resolved at every reload (a release symlink such as current/ is followed anew): APP_MODULE is taken against it, and it is the workers\' working directory. Empty: $PWD when it leads to the working directory, else the working directory. The .env file is found in it when APP_DIR is set in the environment.',
  },
  READY_TIMEOUT_MS: {
    field: 'readyTimeoutMs', default: () => '30000', reloadable: true, parse: integer(100, 3_600_000),
    doc: 'How long a new worker may take to become ready before it is killed (and a reload rolled back).',
  },
  DRAIN_TIMEOUT_MS: {
    field: 'drainTimeoutMs', default: () => '30000', reloadable: true, parse: integer(100, 3_600_000),
    doc: 'How long a draining worker may take to finish its requests before it is killed.',
  },
  KEEP_ALIVE_TIMEOUT_MS: {
    field: 'keepAliveTimeoutMs', default: () => '5000', reloadable: true, parse: integer(100, 600_000),
    doc: 'Idle keep-alive timeout, advertised as Keep-Alive: timeout=N; a draining worker closes idle sockets after it.',
  },
  DRAIN_SPREAD_MS: {
    field: 'drainSpreadMs', default: () => '500', reloadable: true, parse: integer(0, 60_000),
    doc: 'On a reload, a draining worker asks its keep-alive clients to reconnect (Connection: close) at random moments over this long instead of all at once; 0: all at once.',
  },
  DRAIN_SPREAD_UPGRADED_MS: {
    field: 'drainSpreadUpgradedMs', default: () => '5000', reloadable: true, parse: integer(0, 600_000),
    doc: 'On a reload, a draining worker tells each long-lived connection (WebSocket, streaming response) to go at a random moment within this long, so that its clients do not all reconnect at once; 0: all at once. Keep it well below DRAIN_TIMEOUT_MS.',
  },
  BOOT_NICE: {
    field: 'bootNice', default: () => '10', reloadable: true, parse: integer(0, 19),
    doc: 'How much lower the CPU priority (nice value) of a reload\'s workers is while they boot beside a serving generation; raised back once each is ready, before it serves. Needs CAP_SYS_NICE or LimitNICE=+0 to raise it back; without, workers boot at normal priority (one warning). 0: off.',
  },
  WORKER_NODE_FLAGS: {
    field: 'workerNodeFlags', default: () => '--no-memory-reducer', reloadable: true, parse: nodeFlags,
    doc: 'Node and V8 flags for the workers (space-separated), added after the ones `node` runs the primary with; a reload\'s workers start with the new ones, and a flag Node rejects fails their boot (rolled back, with Node\'s message). The default keeps V8\'s idle-time memory reducer from throwing away a quiet worker\'s optimized code: measured, an Express app served 1.19x the requests after idle gaps, and kept ~50 MB more heap per worker while idle. Empty: none.',
  },
  LOG_LEVEL: {
    field: 'logLevel', default: () => 'info', reloadable: true, parse: oneOf(LOG_LEVELS),
    doc: `Log level: ${LOG_LEVELS.join(', ')}.`,
  },
  LOG_FORMAT: {
    field: 'logFormat', default: () => 'auto', reloadable: true, parse: oneOf(LOG_FORMATS),
    doc: 'json: one JSON object per line; pretty: colored one-line logs; auto: pretty when stdout is a terminal, else json. The primary keeps the format it started with.',
  },
  LOG_BUFFER_BYTES: {
    field: 'logBufferBytes', default: () => '1048576', reloadable: true, parse: integer(4096, 64 * 1024 * 1024),
    doc: 'How much log output each process holds while stdout is not being read (a stalled journald or pipe); past it whole lines are dropped and counted, never blocking the server.',
  },
  HEALTH_PATH: {
    field: 'healthPath', default: () => '/healthz', reloadable: true, parse: urlPath,
    doc: 'Liveness path every worker answers itself, whatever the app: 200 with JSON {pid, generation, configVersion, inFlight}.',
  },
  READY_PATH: {
    field: 'readyPath', default: () => '/readyz', reloadable: true, parse: urlPath,
    doc: 'Readiness path every worker answers itself: 200 while the server serves, 503 once it is shutting down (not during a reload).',
  },
  SHUTDOWN_DELAY_MS: {
    field: 'shutdownDelayMs', default: () => '0', reloadable: true, parse: integer(0, 600_000),
    doc: 'On SIGTERM/SIGINT/SIGQUIT, keep serving but answer the readiness path 503 this long before closing the listener, so load balancers stop routing first. Never applied on SIGHUP.',
  },
  SHUTDOWN_IDLE_CLOSE_MS: {
    field: 'shutdownIdleCloseMs', default: () => '5000', reloadable: true, parse: integer(0, 600_000),
    doc: 'On a shutdown, how long an idle keep-alive connection is kept in case it carries one more request (answered with Connection: close): closing it at once races a client (nginx) sending on it. At most the keep-alive timeout; 0: close idle connections at once.',
  },
  CONTROL_SOCKET: {
    field: 'controlSocket', default: () => 'baton.sock', reloadable: false, parse: socketPath,
    doc: 'Unix socket the `baton` CLI talks to (mode 0600); a relative path is taken against the directory the .env file really is in (symlinks resolved), else APP_DIR.',
  },
  PID_FILE: {
    field: 'pidFile', default: () => 'baton.pid', reloadable: false, parse: nonEmpty,
    doc: 'File the primary writes its pid to (removed on exit); relative like CONTROL_SOCKET.',
  },
  METRICS_PORT: {
    field: 'metricsPort', default: () => '', reloadable: false, parse: optionalPort,
    doc: 'Port of the Prometheus endpoint (GET /metrics) served by the primary; empty: off; 0: a free port.',
  },
  METRICS_HOST: {
    field: 'metricsHost', default: () => '127.0.0.1', reloadable: false, parse: nonEmpty,
    doc: 'Address of the metrics endpoint (loopback unless you open it).',
  },
  WATCH: {
    field: 'watch', default: () => 'off', reloadable: true, parse: boolean,
    doc: 'Reload when the .env file changes (saved in place, renamed over, or a Kubernetes ConfigMap update), debounced 300 ms; a reload that turns it off stops watching. Also --watch.',
  },
  WATCH_PATHS: {
    field: 'watchPaths', default: () => '', reloadable: true, parse: (raw) => raw.split(',').map((p) => p.trim()).filter((p) => p !== ''),
    doc: 'With WATCH: folders (comma-separated, relative to APP_DIR) whose changes also reload, node_modules and .git ignored: a development mode that never drops a request.',
  },
  TLS_CERT_FILE: {
    field: 'tlsCertFile', default: () => '', reloadable: true, parse: optionalPath,
    doc: 'PEM certificate (the leaf, then its chain); with TLS_KEY_FILE, every TCP listener speaks HTTPS. Re-read and validated on every reload (rotation); turning TLS on or off needs a restart.',
  },
  TLS_KEY_FILE: {
    field: 'tlsKeyFile', default: () => '', reloadable: true, parse: optionalPath,
    doc: 'PEM private key of TLS_CERT_FILE. Read by the primary only; never logged.',
  },
  TLS_MIN_VERSION: {
    field: 'tlsMinVersion', default: () => 'TLSv1.2', reloadable: true, parse: tlsVersion,
    doc: `Lowest TLS version accepted: ${TLS_VERSIONS.join(' or ')}.`,
  },
  HTTP2: {
    field: 'http2', default: () => 'off', reloadable: true, parse: boolean,
    doc: 'With TLS: offer HTTP/2 (ALPN h2, falling back to http/1.1). Off by default: not every framework answers over Node\'s HTTP/2 compatibility API (Express 5 does not).',
  },
  TLS_TICKET_ROTATE_MS: {
    field: 'tlsTicketRotateMs', default: () => '43200000', reloadable: true, parse: integer(60_000, 7 * 24 * 3_600_000),
    doc: 'How often the primary replaces the TLS session-ticket keys it shares with every worker (sessions resume across workers and reloads); a rotation makes outstanding tickets fall back to a full handshake.',
  },
} as const satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof KEYS;
export const CONFIG_KEYS = Object.keys(KEYS) as ConfigKey[];

/** Not a .env key: where the .env file is comes from the environment or a flag. */
export const DEFAULT_ENV_FILE = '.env';

export type Source = 'flag' | 'env' | 'file' | 'default';

export interface ConfigError {
  readonly key: string;
  readonly message: string;
}

export interface LoadedConfig {
  readonly config: Config;
  /** Where each baton key's value came from. */
  readonly sources: Readonly<Record<ConfigKey, Source>>;
  /** The file's raw key/values, kept to tell on reload what the file changed. */
  readonly fileValues: Readonly<Record<string, string>>;
  readonly envFile: string;
  readonly fileFound: boolean;
  /** Where its generation runs from: APP_DIR's real path now, and the worker code to run (resolved at load). */
  readonly place?: { readonly dir: string; readonly workerEntry: string };
  /** The certificate and key this config names, read and checked (tls-material.ts); never logged. */
  readonly tls?: import('./tls-material.js').TlsMaterial | undefined;
  /** Things worth saying about it (a certificate about to expire). */
  readonly warnings?: readonly string[];
}

export type LoadResult =
  | { readonly ok: true; readonly loaded: LoadedConfig }
  | { readonly ok: false; readonly errors: readonly ConfigError[]; readonly envFile: string };

export interface LoadOptions {
  /** Path of the .env file; relative paths resolve against cwd. */
  readonly envFile: string;
  /** The real environment (process.env): it wins over the file. */
  readonly environment: Readonly<Record<string, string | undefined>>;
  /** Command-line flags: they win over everything. */
  readonly flags?: Readonly<Partial<Record<ConfigKey, string>>>;
  readonly cwd?: string;
}

/** Reads and parses the .env file. A missing file is not an error: defaults apply. */
function readEnvFile(path: string): { values: Record<string, string>; found: boolean } | ConfigError {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { values: {}, found: false };
    return { key: 'ENV_FILE', message: `cannot read ${path}: ${(err as Error).message}` };
  }
  // dotenv.parse, not dotenv.config: config() writes into process.env, after
  // which the "real environment wins" rule would freeze those keys forever.
  return { values: dotenv.parse(text), found: true };
}

/**
 * Precedence, the same at start and on every reload:
 * flags > real environment > .env file > defaults.
 */
export function loadConfig(options: LoadOptions): LoadResult {
  const envFile = resolve(options.cwd ?? process.cwd(), options.envFile);
  const file = readEnvFile(envFile);
  if ('key' in file) return { ok: false, errors: [file], envFile };

  const errors: ConfigError[] = [];
  const values: Partial<Record<Field, Config[Field]>> = {};
  const sources = {} as Record<ConfigKey, Source>;
  for (const key of CONFIG_KEYS) {
    const spec: KeySpec = KEYS[key];
    const flag = options.flags?.[key];
    const fromEnv = options.environment[key];
    const fromFile = file.values[key];
    let raw: string;
    if (flag !== undefined) { raw = flag; sources[key] = 'flag'; }
    else if (fromEnv !== undefined) { raw = fromEnv; sources[key] = 'env'; }
    else if (fromFile !== undefined) { raw = fromFile; sources[key] = 'file'; }
    else { raw = spec.default(); sources[key] = 'default'; }
    try {
      values[spec.field] = spec.parse(raw);
    } catch (err) {
      const where = sources[key] === 'file' ? envFile : sources[key];
      errors.push({ key, message: `${key} (from ${where}) ${(err as Error).message}` });
    }
  }
  // Keys that only make sense together.
  if (errors.length === 0) {
    // Only the primary's hand-over can pick the worker by address.
    if (values.sticky === 'ip' && sources.DISPATCH === 'default') values.dispatch = 'primary';
    const cert = values.tlsCertFile;
    const key = values.tlsKeyFile;
    if (cert !== undefined && key === undefined) errors.push({ key: 'TLS_KEY_FILE', message: 'TLS_KEY_FILE is missing: TLS_CERT_FILE is set, and TLS needs both' });
    if (key !== undefined && cert === undefined) errors.push({ key: 'TLS_CERT_FILE', message: 'TLS_CERT_FILE is missing: TLS_KEY_FILE is set, and TLS needs both' });
    if (values.http2 === true && cert === undefined) errors.push({ key: 'HTTP2', message: 'HTTP2 needs TLS (TLS_CERT_FILE and TLS_KEY_FILE): browsers speak HTTP/2 over TLS only' });
    if (values.sticky === 'ip' && values.dispatch === 'shared') errors.push({ key: 'STICKY', message: 'STICKY=ip needs DISPATCH=primary: with a shared accept queue the kernel, not baton, picks the worker' });
    const unix = (values.listen as ListenAddress[] | undefined)?.find((a) => a.kind === 'unix');
    if (values.sticky === 'ip' && unix) errors.push({ key: 'STICKY', message: `STICKY=ip cannot route connections of unix:${unix.path}: a Unix socket client has no address` });
  }
  if (errors.length > 0) return { ok: false, errors, envFile };

  // The app's own keys: everything in the file that baton does not know,
  // with the real environment winning as for baton's keys.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(file.values)) {
    if (k in KEYS) continue;
    env[k] = options.environment[k] ?? v;
  }
  const config = Object.freeze({ ...(values as Omit<Config, 'env'>), env: Object.freeze(env) });
  return {
    ok: true,
    loaded: Object.freeze({ config, sources: Object.freeze(sources), fileValues: Object.freeze({ ...file.values }), envFile, fileFound: file.found }),
  };
}

/** Keys whose value in the file is ignored because the environment or a flag sets them. */
/** True when the file's value for `key` is ignored because the environment or a flag sets it. */
function fileLoses(loaded: LoadedConfig, key: string, environment: Readonly<Record<string, string | undefined>>): boolean {
  if (key in KEYS) {
    const source = loaded.sources[key as ConfigKey];
    return source === 'env' || source === 'flag';
  }
  return environment[key] !== undefined;
}

/** Keys set in the file whose value has no effect (env or a flag wins). */
export function shadowedKeys(loaded: LoadedConfig, environment: Readonly<Record<string, string | undefined>>): string[] {
  return Object.keys(loaded.fileValues).filter((k) => fileLoses(loaded, k, environment));
}

export interface ConfigDiff {
  /** Keys whose effective value changed. */
  readonly changed: string[];
  /** Keys changed in the file whose new value has no effect (env/flag wins). */
  readonly shadowed: string[];
  /** Changed keys that cannot change on reload. */
  readonly restartOnly: ConfigKey[];
}

export function diffConfig(prev: LoadedConfig, next: LoadedConfig, environment: Readonly<Record<string, string | undefined>>): ConfigDiff {
  const changed: string[] = [];
  const restartOnly: ConfigKey[] = [];
  for (const key of CONFIG_KEYS) {
    const field = KEYS[key].field;
    // Values are primitives, or (LISTEN) plain data: compared by value.
    const a = prev.config[field];
    const b = next.config[field];
    if (a !== b && JSON.stringify(a) !== JSON.stringify(b)) {
      changed.push(key);
      if (!KEYS[key].reloadable) restartOnly.push(key);
    }
  }
  const appKeys = new Set([...Object.keys(prev.config.env), ...Object.keys(next.config.env)]);
  for (const k of appKeys) if (prev.config.env[k] !== next.config.env[k]) changed.push(k);

  const fileKeys = new Set([...Object.keys(prev.fileValues), ...Object.keys(next.fileValues)]);
  const shadowed = [...fileKeys].filter((k) => prev.fileValues[k] !== next.fileValues[k] && fileLoses(next, k, environment));
  return { changed, shadowed, restartOnly };
}

const SECRET = /(^|_)(KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASS|CREDENTIALS?|PRIVATE)(_|$)|(PASSWORD|SECRET|TOKEN)/i;

/** True for keys whose values must never be logged. */
export function isSecretKey(key: string): boolean {
  return SECRET.test(key);
}

/** The config as it may be logged: app keys whose names look secret are redacted. */
export function redacted(config: Config): Record<string, unknown> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(config.env)) env[k] = isSecretKey(k) ? '[redacted]' : v;
  return { ...config, env };
}

/**
 * A one-line, human form of a loaded config, for pretty logs: the keys not
 * at their default, each with where it came from, and the names of the
 * app's own keys (their values may be secret).
 */
export function describeConfig(loaded: LoadedConfig): string {
  const set = CONFIG_KEYS.filter((k) => loaded.sources[k] !== 'default').map((k) => {
    const value = String(loaded.config[KEYS[k].field] ?? '');
    // baton's own keys hold no secrets (TLS_KEY_FILE is a path; the key itself is never in the config).
    const shown = /^[\w./:@-]*$/.test(value) ? value : JSON.stringify(value);
    return `${k}=${shown} (${loaded.sources[k]})`;
  });
  const appKeys = Object.keys(loaded.config.env);
  return [
    set.length > 0 ? set.join(', ') : 'every baton key at its default',
    appKeys.length > 0 ? `app keys: ${appKeys.join(', ')}` : 'no app keys',
  ].join('; ');
}
