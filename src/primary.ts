// Entry point of the primary: `node dist/primary.js`.
import { runPrimary } from './primary/main.js';

void runPrimary(process.argv.slice(2));
