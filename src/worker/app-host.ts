// Loads the app a worker serves from APP_MODULE. The contract (also exported
// from the package root for users' types):
//   export function createApp(ctx)  -> listener | { handler, close? } (may be async)
//   export default (req, res) => {}  -> a plain request listener
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export interface AppContext {
  /** This generation's frozen config; `config.env` holds the app's own keys. */
  readonly config: Config;
  readonly generation: number;
  readonly workerId: number;
  readonly log: Logger;
}

export interface AppHandle {
  readonly handler: RequestListener;
  /** Runs once the worker's in-flight requests are done, before it exits (e.g. close a DB pool). */
  readonly close?: () => void | Promise<void>;
}

export type AppFactory = (ctx: AppContext) => RequestListener | AppHandle | Promise<RequestListener | AppHandle>;

export const DEMO_APP = new URL('../app/demo.js', import.meta.url);

export function appModuleUrl(appModule: string, cwd = process.cwd()): URL {
  return appModule === '' ? DEMO_APP : pathToFileURL(resolve(cwd, appModule));
}

function toHandle(made: unknown, what: string): AppHandle {
  if (typeof made === 'function') return { handler: made as RequestListener };
  if (typeof made === 'object' && made !== null && typeof (made as AppHandle).handler === 'function') {
    const close = (made as AppHandle).close;
    if (close !== undefined && typeof close !== 'function') throw new Error(`${what}: close must be a function`);
    return made as AppHandle;
  }
  throw new Error(`${what} must return a request listener or { handler, close? }`);
}

export async function loadApp(ctx: AppContext): Promise<AppHandle> {
  const name = ctx.config.appModule === '' ? 'the demo app' : `APP_MODULE ${ctx.config.appModule}`;
  let mod: Record<string, unknown>;
  try {
    mod = await import(appModuleUrl(ctx.config.appModule).href) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`cannot load ${name}: ${(err as Error).message}`, { cause: err });
  }
  // CommonJS modules arrive as { default: module.exports }.
  const cjs = typeof mod.default === 'object' && mod.default !== null ? mod.default as Record<string, unknown> : undefined;
  const factory = mod.createApp ?? cjs?.createApp;
  if (typeof factory === 'function') return toHandle(await (factory as AppFactory)(ctx), `${name} createApp()`);
  if (typeof mod.default === 'function') return { handler: mod.default as RequestListener };
  throw new Error(`${name} exports neither createApp(ctx) nor a default request listener`);
}
