// A reload's workers boot at a lower CPU priority (BOOT_NICE), so that at
// full load the serving generation keeps the CPU: booting Node takes a whole
// core for tens of milliseconds per worker, and without this the requests
// being served pay for it in latency. Once a worker is ready its priority is
// raised back, before it serves.
//
// Linux keeps a nice value per thread, and os.setPriority(pid) changes only
// the main thread's: every /proc/<pid>/task/* is reniced. Threads created
// later inherit their creator's value. Raising a priority back (lowering the
// nice value) needs CAP_SYS_NICE (root has it) or an RLIMIT_NICE that allows
// it (systemd's LimitNICE=+0): without either, workers boot at normal
// priority and baton says so once, since a worker stuck at the lower
// priority would then serve at it.
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

export interface BootPriority {
  /** Lowers every thread of `pid` by `nice` (0: nothing). */
  lower(pid: number, nice: number): void;
  /** Every thread of `pid` back at the primary's own priority. */
  restore(pid: number): void;
}

export interface PriorityDeps {
  readonly warn: (msg: string) => void;
  /** For tests: the facts read from /proc. */
  readonly probe?: () => { base: number; capSysNice: boolean; rlimitNice: number };
}

const CAP_SYS_NICE = 23n;

function probeProc(): { base: number; capSysNice: boolean; rlimitNice: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1];
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const soft = /^Max nice priority\s+(\S+)/m.exec(limits)?.[1];
  return {
    base: getPriority(0),
    capSysNice: capEff !== undefined && ((BigInt(`0x${capEff}`) >> CAP_SYS_NICE) & 1n) === 1n,
    rlimitNice: soft === undefined ? 0 : soft === 'unlimited' ? 40 : Number(soft),
  };
}

/** Whether a thread at `base + nice` may be set back to `base` (see setpriority(2): RLIMIT_NICE allows down to 20 - limit). */
export function canRestore(facts: { base: number; capSysNice: boolean; rlimitNice: number }): boolean {
  return facts.capSysNice || 20 - facts.rlimitNice <= facts.base;
}

export function createBootPriority(deps: PriorityDeps): BootPriority {
  let facts: { base: number; capSysNice: boolean; rlimitNice: number } | undefined;
  let able: boolean | undefined;
  let warned = false;
  const capable = (): boolean => {
    if (able !== undefined) return able;
    try {
      facts = (deps.probe ?? probeProc)();
      able = canRestore(facts);
    } catch {
      able = false; // not Linux, or no /proc: nothing to do
    }
    return able;
  };
  const setAll = (pid: number, prio: number): void => {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      return; // already gone
    }
    for (const tid of tids) {
      try {
        setPriority(Number(tid), prio);
      } catch {
        // the thread ended meanwhile
      }
    }
  };
  return {
    lower(pid, nice) {
      if (nice === 0) return;
      if (!capable()) {
        if (!warned) {
          warned = true;
          deps.warn('BOOT_NICE: reload workers boot at normal priority: raising a worker\'s priority back once it is ready needs CAP_SYS_NICE or an RLIMIT_NICE that allows it (systemd: LimitNICE=+0); set BOOT_NICE=0 to silence this');
        }
        return;
      }
      setAll(pid, Math.min(19, facts!.base + nice));
    },
    restore(pid) {
      if (able !== true) return;
      setAll(pid, facts!.base);
    },
  };
}
