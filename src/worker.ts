// Entry point of a worker process, forked by the primary.
import './worker/ignore-signals.js'; // first: before anything can take time
import { routeStdio } from './worker/stdio.js';
import { runWorker } from './worker/runtime.js';

routeStdio();
void runWorker();
