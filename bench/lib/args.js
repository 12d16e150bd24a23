// @ts-check
// Pure CLI argument parsing for bench/run.js. No side effects on import.
import { parseArgs as nodeParseArgs } from 'node:util';

export const SCENARIOS = /** @type {const} */ (['selfcheck', 'throughput', 'reload', 'soak', 'shutdown', 'fullload', 'balance', 'scale', 'tls', 'dropin']);
export const SERVERS = /** @type {const} */ (['baton', 'bare', 'cluster', 'pm2']);

export const USAGE = `usage: node bench/run.js [options]      (npm run bench -- [options])

  --quick             short version of everything (2 short rounds each, 3 reloads, 20 soak reloads; ~4 min)
  --reloads N         reloads in the reloads-under-load scenario (default 10, --quick 3)
  --soak-reloads N    reloads in the soak scenario (default 200, --quick 20)
  --duration S        seconds per steady-throughput measurement (default 4, --quick 2)
  --runs N            throughput rounds per server and mode, median reported (default 8, --quick 2)
  --rate N            fixed keep-alive request rate (req/s) during reloads under load
                      (default: half the server's measured max, capped at 4000)
  --only LIST         comma list of scenarios: ${SCENARIOS.join(',')}
                      (the failure-counter self-check always runs unless --no-self-check)
  --servers LIST      comma list of servers: ${SERVERS.join(',')} (default all)
  --json PATH         also write the full JSON results to PATH
  --self-check        run only the failure-counter self-check against a deliberately broken server
  --no-self-check     skip the self-check (not recommended)
  --help              this text

Results: bench/results/<date>.json and .svg, copied to bench/results/latest.{json,svg}.
Exit status: 0 when the bench ran (missed targets are printed as FAIL), 1 on a harness
error, 2 on a usage error.`;

export class UsageError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * @param {string | undefined} v
 * @param {string} flag
 * @param {{ min?: number, integer?: boolean }} [o]
 */
function num(v, flag, o = {}) {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} needs a number, got "${v}"`);
  if (o.integer && !Number.isInteger(n)) throw new UsageError(`${flag} needs a whole number, got "${v}"`);
  if (o.min !== undefined && n < o.min) throw new UsageError(`${flag} must be >= ${o.min}, got ${n}`);
  return n;
}

/**
 * @param {string | undefined} v
 * @param {readonly string[]} allowed
 * @param {string} flag
 */
function list(v, allowed, flag) {
  if (v === undefined) return undefined;
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`${flag} needs a comma-separated list`);
  for (const it of items) {
    if (!allowed.includes(it)) throw new UsageError(`${flag}: unknown "${it}" (expected one of ${allowed.join(', ')})`);
  }
  return [...new Set(items)];
}

/**
 * @typedef {{
 *   help: boolean, quick: boolean, reloads: number, soakReloads: number, duration: number,
 *   runs: number, rate: number | null, only: string[], servers: string[], json: string | null,
 *   selfCheck: 'only' | 'yes' | 'no'
 * }} BenchOptions
 */

/**
 * Parse argv (without node and script). Throws UsageError on anything unknown or invalid.
 * @param {string[]} argv
 * @returns {BenchOptions}
 */
export function parseArgs(argv) {
  let values;
  try {
    ({ values } = nodeParseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        quick: { type: 'boolean' },
        reloads: { type: 'string' },
        'soak-reloads': { type: 'string' },
        duration: { type: 'string' },
        runs: { type: 'string' },
        rate: { type: 'string' },
        only: { type: 'string' },
        servers: { type: 'string' },
        json: { type: 'string' },
        'self-check': { type: 'boolean' },
        'no-self-check': { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError(/** @type {Error} */ (err).message);
  }
  const quick = values.quick === true;
  if (values['self-check'] && values['no-self-check']) throw new UsageError('--self-check and --no-self-check exclude each other');
  if (values.json !== undefined && values.json.trim() === '') throw new UsageError('--json needs a path');
  const only = list(values.only, SCENARIOS, '--only') ?? SCENARIOS.filter((s) => s !== 'selfcheck');
  return {
    help: values.help === true,
    quick,
    reloads: num(values.reloads, '--reloads', { min: 1, integer: true }) ?? (quick ? 3 : 10),
    soakReloads: num(values['soak-reloads'], '--soak-reloads', { min: 1, integer: true }) ?? (quick ? 20 : 200),
    duration: num(values.duration, '--duration', { min: 0.5 }) ?? (quick ? 2 : 4),
    runs: num(values.runs, '--runs', { min: 1, integer: true }) ?? (quick ? 2 : 8),
    rate: num(values.rate, '--rate', { min: 1 }) ?? null,
    only: only.filter((s) => s !== 'selfcheck'),
    servers: list(values.servers, SERVERS, '--servers') ?? [...SERVERS],
    json: values.json ?? null,
    selfCheck: values['self-check'] ? 'only' : values['no-self-check'] ? 'no' : 'yes',
  };
}
