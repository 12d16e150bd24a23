// Where things are, for a primary and for the `baton` command alike:
//
// - APP_DIR, the directory the app runs from, is a path that may go through
//   a symlink (Capistrano's `current`), re-resolved at every reload: the
//   kernel resolved the working directory once, at start, so after the
//   symlink switches process.cwd() still names the old release. Default:
//   $PWD when it leads to the working directory (a shell started baton from
//   the symlink), else the working directory.
// - The .env file (ENV_FILE, default .env) is taken against APP_DIR, and so
//   re-resolved at every reload too.
// - Runtime files (CONTROL_SOCKET, PID_FILE), bound once for the primary's
//   life, need a place that survives a release switch and the deletion of
//   the old release: relative paths are taken against the directory the
//   .env file really is in (symlinks resolved: `current/.env` linked to
//   `shared/.env` puts them in shared/), else APP_DIR's real path. Absolute
//   paths (/run/baton/...) are as they are.
import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';

/** APP_DIR when none is set: $PWD if it leads to the working directory, else the working directory. */
export function defaultAppDir(env: NodeJS.ProcessEnv, cwd = process.cwd()): string {
  const pwd = env.PWD;
  if (pwd && isAbsolute(pwd)) {
    try {
      if (realpathSync(pwd) === realpathSync(cwd)) return pwd;
    } catch { /* $PWD is gone or stale */ }
  }
  return cwd;
}

/** APP_DIR as given (a flag or the environment), absolute, else the default. */
export function appDirOf(given: string | undefined, env: NodeJS.ProcessEnv): string {
  return given !== undefined && given.trim() !== '' ? resolve(defaultAppDir(env), given.trim()) : defaultAppDir(env);
}

/** Where relative CONTROL_SOCKET and PID_FILE paths are taken from (see above). */
export function runtimeBase(envFile: string, appDir: string): string {
  try {
    if (existsSync(envFile)) return dirname(realpathSync(envFile));
  } catch { /* fall through */ }
  try {
    return realpathSync(appDir);
  } catch {
    return appDir;
  }
}

export function runtimePath(base: string, path: string): string {
  return resolve(base, path);
}

/**
 * The worker code a generation runs: baton as installed in APP_DIR
 * (`node_modules/baton`, or APP_DIR being baton's own package), re-resolved
 * for every generation, so that a release layout with baton inside each
 * release keeps booting workers after the primary's own release is deleted;
 * else the primary's own. A worker that speaks another IPC protocol than
 * the primary fails its boot, and the reload rolls back (protocol.ts).
 */
export function workerEntryFor(dir: string, own: string): string {
  try {
    return createRequire(join(dir, 'package.json')).resolve('baton/worker');
  } catch {
    return own;
  }
}
