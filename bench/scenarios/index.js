// @ts-check
// The bench scenarios that live in their own module (the original four are in
// run.js). Each exports: name (its --only key), run(ctx) -> a JSON-able result
// stored as results[name], targets(result, add, all) and report(result, all)
// -> lines. ctx (bench/run.js): { O, P, say, sleep, start(name, { vars }),
// withCpu(pgid, f), speedProbe(), recordError(what, err), batonEntry() }.
import * as fullload from './fullload.js';
import * as balance from './balance.js';
import * as scale from './scale.js';
import * as tls from './tls.js';
import * as dropin from './dropin.js';

/** @type {import('../lib/summary.js').ScenarioModule[]} */
export const SCENARIO_MODULES = [fullload, balance, scale, tls, dropin];
