// A generation: the set of workers started together with one config snapshot.
// Every worker knows its generation; a reload replaces a whole generation.
import type { LoadedConfig } from '../config.js';
import type { WorkerHandle } from './worker-handle.js';

export class Generation {
  /** Live workers that belong to this generation and are not draining. */
  readonly workers = new Set<WorkerHandle>();

  constructor(
    readonly id: number,
    readonly loaded: LoadedConfig,
    readonly configVersion: number,
    /** How many workers this generation should have. */
    public size: number,
    /** When it was asked for (the signal's time, for durations). */
    readonly requestedAt: number,
  ) {}

  get config(): LoadedConfig['config'] {
    return this.loaded.config;
  }

  ready(): WorkerHandle[] {
    return [...this.workers].filter((w) => w.state === 'ready');
  }
}
