// Entry point of the primary: `node dist/primary.js`.
import { setFlagsFromString } from 'node:v8';
import { runPrimary } from './primary/main.js';

// The primary allocates short-lived objects for every connection it hands
// over; V8 would grow its young generation to 32 MB for that. Keeping it at
// its start size costs no measurable throughput (4071 vs 4077 new
// connections/s) and keeps ~20 MB of RSS from piling up. This flag is read at
// each growth decision, so setting it at run time takes effect.
setFlagsFromString('--semi-space-growth-factor=1');
// V8 lets a heap accumulate 8 MB of garbage beyond its live size before a
// full collection; in size mode, 2 MB. Every reload leaves some garbage
// (the retired workers' handles and channels), so over dozens of reloads RSS
// settled ~8 MB above the start instead of ~2.5 MB. The primary is a
// dispatcher with a small heap: memory is worth more here than the ~10 us of
// CPU per new connection this costs it.
setFlagsFromString('--optimize-for-size');

void runPrimary(process.argv.slice(2));
