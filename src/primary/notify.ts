// systemd readiness notification (Type=notify and Type=notify-reload).
// Node has no Unix datagram sockets, so messages go through the
// `systemd-notify` binary (the unit needs NotifyAccess=all); `--pid` names
// the primary as the main process. Messages are sent one after another, in
// order, without ever blocking the primary.
import { spawn } from 'node:child_process';
import type { Logger } from '../log.js';
import type { ReloadOutcome, SupervisorObserver } from './supervisor.js';

export class SystemdNotifier implements SupervisorObserver {
  private chain: Promise<void> = Promise.resolve();
  private warned = false;

  /** While false, READY=1 waits: a new primary of an upgrade is not the main process until it takes over. */
  private mayBeReady = true;
  private readyPending: number | undefined;

  constructor(readonly socket: string, private readonly log: Logger, private readonly binary = 'systemd-notify') {}

  /**
   * Only when started by systemd with a notify socket (or, for a new primary
   * of an upgrade, handed the old one's). The variable is removed from the
   * environment: workers and the app must not think they are the one to
   * notify; an upgrade passes it on explicitly.
   */
  static fromEnvironment(env: NodeJS.ProcessEnv, log: Logger, inherited?: string): SystemdNotifier | undefined {
    const socket = inherited ?? env.NOTIFY_SOCKET;
    delete env.NOTIFY_SOCKET;
    return socket ? new SystemdNotifier(socket, log) : undefined;
  }

  /** A new primary: hold READY=1 until it takes over (`takeOver()`). */
  holdReady(): void {
    this.mayBeReady = false;
  }

  /** Every message carries --pid=this process (systemd-notify sends it as MAINPID=): READY=1 now makes it the unit's main process. */
  takeOver(): void {
    this.mayBeReady = true;
    if (this.readyPending !== undefined) this.ready(this.readyPending);
  }

  ready(generation: number): void {
    if (!this.mayBeReady) {
      this.readyPending = generation;
      return;
    }
    this.readyPending = undefined;
    this.send('READY=1', `STATUS=serving, generation ${generation}`);
  }

  reloadStarted(): void {
    // notify-reload wants the CLOCK_MONOTONIC time; hrtime is that clock.
    this.send('RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`, 'STATUS=reloading');
  }

  reloadEnded(outcome: ReloadOutcome): void {
    // READY=1 either way: after a failed reload the old generation serves.
    this.send('READY=1', outcome.ok ? `STATUS=serving, generation ${outcome.generation}` : `STATUS=reload ${outcome.kind}: ${outcome.reason}`.slice(0, 1000));
  }

  stopping(): void {
    this.send('STOPPING=1', 'STATUS=shutting down');
  }

  /** Resolves once every message sent so far has been handed over (or after 2 s). */
  flushed(): Promise<void> {
    return Promise.race([this.chain, new Promise<void>((r) => setTimeout(r, 2000).unref())]);
  }

  private send(...assignments: string[]): void {
    this.chain = this.chain.then(() => new Promise<void>((resolve) => {
      const child = spawn(this.binary, [`--pid=${process.pid}`, ...assignments], {
        env: { ...process.env, NOTIFY_SOCKET: this.socket },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
      child.on('error', (err) => {
        if (!this.warned) this.log.warn({ err: err.message }, `cannot notify systemd: ${this.binary} not found; use Type=simple or install systemd`);
        this.warned = true;
        resolve();
      });
      child.on('exit', (code) => {
        if (code !== 0) this.log.warn({ code, stderr: stderr.trim(), assignments }, 'systemd-notify failed');
        resolve();
      });
    }));
  }
}
