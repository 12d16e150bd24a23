// The package's public surface: for apps served by baton (APP_MODULE), the
// drain signal and the types of the factory contract and its config.
export { drainSignal } from './drain-signal.js';
export type { AppContext, AppFactory, AppHandle, RequestListener } from './worker/app-host.js';
export type { DrainNotice } from './worker/drain.js';
export type { Config, LogFormat, LogLevel } from './config.js';
export type { Logger } from './log.js';
