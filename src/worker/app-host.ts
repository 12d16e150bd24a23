// Loads the app a worker serves from APP_MODULE, in one of two forms:
//
// - a factory (baton builds the server around the app's handler):
//     export function createApp(ctx)  -> listener | { handler, close? } (may be async)
//     export default (req, res) => {}  -> a plain request listener
// - a drop-in app, as it runs without baton: it builds its own server and
//   calls listen() (at import, or later after async work); listen-capture.ts
//   intercepts that and baton feeds that server.
//
// A module that calls listen() while it is imported is a drop-in app even if
// it also exports a listener (`app.listen(); export default app`). One that
// neither exports a factory nor listens during import is waited for: it is a
// drop-in app that listens later (after connecting to its database).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { isAbsolute, resolve } from 'node:path';
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
  /**
   * The worker's HTTP/1 server, for what needs a server: WebSockets
   * (`new WebSocketServer({ server: ctx.server })`), socket.io
   * (`new Server(ctx.server)`). It never listens; baton feeds it.
   */
  readonly server: Server;
  /** Aborts when this worker starts to drain. */
  readonly signal: AbortSignal;
  /** Aborts when baton tells the connection `req` came on to go (see README, Long-lived connections). */
  drainSignal(req: IncomingMessage | Http2ServerRequest): AbortSignal;
}

export interface AppHandle {
  readonly handler: RequestListener;
  /** Runs once the worker's in-flight requests are done, before it exits (e.g. close a DB pool). */
  readonly close?: () => void | Promise<void>;
}

export type AppFactory = (ctx: AppContext) => RequestListener | AppHandle | Promise<RequestListener | AppHandle>;

export type LoadedApp =
  | { readonly kind: 'factory'; readonly handle: AppHandle }
  /** The app builds its own server; `listened` tells whether it called listen() yet. */
  | { readonly kind: 'drop-in'; readonly listened: boolean };

export const DEMO_APP = new URL('../app/demo.js', import.meta.url);

/** APP_MODULE as a URL; a relative path is taken against `dir` (APP_DIR). */
export function appModuleUrl(appModule: string, dir = process.cwd()): URL {
  if (appModule === '') return DEMO_APP;
  return pathToFileURL(isAbsolute(appModule) ? appModule : resolve(dir, appModule));
}

export function appName(appModule: string): string {
  return appModule === '' ? 'the demo app' : `APP_MODULE ${appModule}`;
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

/**
 * Imports the app. `listened()` says whether it has called listen() (a
 * captured listen) so far.
 */
export async function loadApp(ctx: AppContext, listened: () => boolean): Promise<LoadedApp> {
  const name = appName(ctx.config.appModule);
  let mod: Record<string, unknown>;
  try {
    mod = await import(appModuleUrl(ctx.config.appModule).href) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`cannot load ${name}: ${(err as Error).message}`, { cause: err });
  }
  if (listened()) return { kind: 'drop-in', listened: true };
  // CommonJS modules arrive as { default: module.exports }.
  const cjs = typeof mod.default === 'object' && mod.default !== null ? mod.default as Record<string, unknown> : undefined;
  const factory = mod.createApp ?? cjs?.createApp;
  if (typeof factory === 'function') return { kind: 'factory', handle: toHandle(await (factory as AppFactory)(ctx), `${name} createApp()`) };
  if (typeof mod.default === 'function') return { kind: 'factory', handle: { handler: mod.default as RequestListener } };
  return { kind: 'drop-in', listened: false };
}
