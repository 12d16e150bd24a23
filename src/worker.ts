// Entry point of a worker process, forked by the primary.
import './worker/ignore-signals.js'; // first: before anything can take time
import { runWorker } from './worker/runtime.js';

void runWorker();
