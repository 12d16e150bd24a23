// Entry point of a worker process, forked by the primary.
import './worker/signals.js'; // first: before anything can take time (or installs a signal handler)
import { routeStdio } from './worker/stdio.js';
import { runWorker } from './worker/runtime.js';

routeStdio();
void runWorker();
