// The primary's view of one worker process, and the seam behind which the
// real process sits (cluster.fork in production, a fake in unit tests).
import cluster from 'node:cluster';
import { stderr, stdout } from '../log.js';
import type { PrimaryMessage } from '../protocol.js';
import type { Generation } from './generation.js';
import type { RawConnection } from './dispatcher.js';
import { relayLines } from './output-relay.js';

/** What the supervisor needs of a worker process. */
export interface WorkerProcess {
  readonly pid: number;
  connected(): boolean;
  /**
   * `handle`: a raw libuv handle that goes with the message (a connection, a
   * listening socket). `done`: without a handle, once written; with one,
   * once the worker's process holds it (Node's own acknowledgement), or
   * with the error if it could not be sent. A worker that exits first
   * may never call it.
   */
  send(msg: PrimaryMessage, handle?: RawConnection, done?: (err: Error | null) => void): void;
  /** SIGKILL: workers ignore terminal signals by design. */
  kill(): void;
}

export interface WorkerEvents {
  /** `handle`: a raw handle that came with the message (DISPATCH=shared's forwarded connections). */
  message(raw: unknown, handle?: RawConnection): void;
  exit(code: number | null, signal: string | null): void;
  error(err: Error): void;
}

/** Where a generation's workers run from (APP_DIR's real path) and what they run. */
export interface Place {
  readonly dir: string;
  readonly workerEntry: string;
}

export interface Spawner {
  /** `nodeFlags`: WORKER_NODE_FLAGS of the worker's generation. */
  spawn(events: WorkerEvents, place: Place | undefined, nodeFlags?: readonly string[]): WorkerProcess;
}

export type WorkerState = 'booting' | 'ready' | 'draining' | 'exited';

export class WorkerHandle {
  state: WorkerState = 'booting';
  readyAt: number | undefined;
  /** Why it failed to boot, once known (its own error, or a timeout). */
  failure: string | undefined;
  /** Its exit was asked for (drain, abandoned generation, forced stop). */
  planned = false;
  /** The pending deadline: readiness while booting, drain while draining. */
  timer: unknown;
  /** The worker's last pushed counters. */
  stats = { served: 0, inFlight: 0, connections: 0, upgraded: 0 };
  /** A drop-in app that has not called listen() yet (for the reason a ready timeout gives). */
  waitingForListen = false;
  /** Booting at a lower CPU priority (BOOT_NICE), to be raised back once ready. */
  niced = false;

  constructor(
    readonly id: number,
    readonly gen: Generation,
    readonly proc: WorkerProcess,
    readonly startedAt: number,
  ) {}

  get pid(): number {
    return this.proc.pid;
  }
}

/** Real workers: cluster.fork of dist/worker.js, their output relayed through the primary's. */
export function clusterSpawner(workerEntry: string): Spawner {
  // Workers never listen through cluster (the primary hands them sockets), so
  // cluster's scheduling does not matter; it gives us fork + IPC with handles.
  // Their stdout and stderr are pipes to the primary (output-relay.ts).
  const stdio = ['ignore', 'pipe', 'pipe', 'ipc'];
  return {
    spawn(events, place, nodeFlags = []) {
      // Settings per generation: a release switch changes both, a reload the flags.
      cluster.setupPrimary({ exec: place?.workerEntry ?? workerEntry, cwd: place?.dir ?? process.cwd(), args: [], stdio, execArgv: [...process.execArgv, ...nodeFlags] });
      const worker = cluster.fork();
      if (worker.process.stdout) relayLines(worker.process.stdout, stdout);
      if (worker.process.stderr) relayLines(worker.process.stderr, stderr);
      worker.on('message', (raw: unknown, handle?: unknown) => events.message(raw, handle as RawConnection | undefined));
      worker.on('exit', (code: number | null, signal: string | null) => events.exit(code, signal));
      worker.on('error', (err: Error) => events.error(err));
      // Node sends one handle at a time on a channel and the next only once
      // the worker's NODE_HANDLE_ACK says it holds the last one: these
      // acknowledgements arrive in the order the handles were sent. Taking
      // them as the receipt saves a message of our own per connection
      // (cluster's round-robin sends one) on the data path.
      const received: ((err: Error | null) => void)[] = [];
      worker.process.on('internalMessage', (msg: { cmd?: unknown } | null) => {
        if (msg?.cmd === 'NODE_HANDLE_ACK') received.shift()?.(null);
      });
      return {
        pid: worker.process.pid ?? -1,
        connected: () => worker.isConnected(),
        send(msg, handle, done) {
          if (!worker.isConnected()) {
            done?.(new Error('worker IPC channel closed'));
            return;
          }
          if (!handle) {
            worker.process.send(msg, undefined, {}, (err: Error | null) => done?.(err));
            return;
          }
          const onReceived = (err: Error | null): void => done?.(err);
          received.push(onReceived);
          // A raw handle travels as 'net.Native': Node neither wraps nor
          // closes it here; the dispatcher closes its copy once received.
          worker.process.send(msg, handle as Parameters<typeof worker.process.send>[1], {}, (err: Error | null) => {
            if (!err) return;
            const i = received.indexOf(onReceived);
            if (i >= 0) received.splice(i, 1);
            done?.(err);
          });
        },
        kill() {
          worker.process.kill('SIGKILL');
        },
      };
    },
  };
}
