// The package's public surface: types for apps served by baton
// (APP_MODULE), and the config shape they receive.
export type { AppContext, AppFactory, AppHandle, RequestListener } from './worker/app-host.js';
export type { Config, LogFormat, LogLevel } from './config.js';
export type { Logger } from './log.js';
