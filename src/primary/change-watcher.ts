// WATCH: reload when the .env file changes, and (WATCH_PATHS) when files in
// the app's folders change: a development mode that never drops a request,
// and config updates without anyone running `baton reload`.
//
// The .env file is watched through its directory, not itself: editors save
// by writing a new file and renaming it over the old one, `mv new .env`
// replaces the inode, and Kubernetes updates a ConfigMap by swapping a
// `..data` symlink in the mounted directory; a watch on the file would
// follow the old inode and miss all of these. Any event in the directory
// makes the watcher read the file again, and only a different content
// counts, so files baton itself writes there (its socket, its PID file) do
// not reload anything. Changes are debounced: a burst (an editor's save, a
// `git checkout`) ends in one reload, of the newest state.
import { readdirSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export const WATCH_DEBOUNCE_MS = 300;
/** The pending mark of "the .env file's directory changed". */
const ENV = '\0env';
/** Folder names under WATCH_PATHS that never trigger a reload. */
export const IGNORED_DIRS = ['node_modules', '.git'];
/** A tree of more folders than this is not watched past it (one watch each). */
const MAX_WATCHED_DIRS = 4096;

export interface WatchSettings {
  readonly enabled: boolean;
  readonly envFile: string;
  /** Folders to watch (absolute), recursively. */
  readonly paths: readonly string[];
  /** File names baton writes itself (control socket, PID file): never a reason to reload. */
  readonly ownFiles: readonly string[];
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export class ChangeWatcher {
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private envText = '';
  private envFile = '';
  private pending = new Set<string>();
  private current = '';

  constructor(
    private readonly onChange: (what: readonly string[]) => void,
    private readonly onProblem: (message: string) => void,
  ) {}

  /** (Re)starts watching as `settings` say; false (a no-op) if nothing changed. */
  configure(settings: WatchSettings): boolean {
    const key = JSON.stringify(settings);
    if (key === this.current) return false;
    this.current = key;
    this.stop();
    if (!settings.enabled) return true;
    this.envText = readOrEmpty(settings.envFile);
    const envDir = dirname(settings.envFile);
    // Compared when the debounce ends, not at each event: a file written in
    // place is read half-written (even empty) at its first event.
    this.envFile = settings.envFile;
    this.add(envDir, () => this.changed(ENV));
    const own = new Set(settings.ownFiles);
    let dirs = 0;
    const tree = (dir: string): void => {
      if (++dirs > MAX_WATCHED_DIRS) {
        if (dirs === MAX_WATCHED_DIRS + 1) this.onProblem(`WATCH_PATHS: more than ${MAX_WATCHED_DIRS} folders; the rest is not watched`);
        return;
      }
      this.add(dir, (file) => {
        if (file === undefined) return this.changed(dir);
        if (own.has(file) || file.startsWith('.baton-') || IGNORED_DIRS.includes(file)) return;
        const path = join(dir, file);
        // A new folder: watch it too.
        try {
          if (statSync(path).isDirectory() && !this.watchers.some((w) => (w as FSWatcher & { dir?: string }).dir === path)) tree(path);
        } catch { /* removed meanwhile */ }
        this.changed(path);
      });
      let entries: string[] = [];
      try {
        entries = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !IGNORED_DIRS.includes(e.name)).map((e) => e.name);
      } catch { /* unreadable: its own watch reports what it can */ }
      for (const name of entries) tree(join(dir, name));
    };
    for (const path of settings.paths) tree(resolve(path));
    return true;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  private add(dir: string, onEvent: (file: string | undefined) => void): void {
    try {
      const w = watch(dir, { persistent: false }, (_event, file) => onEvent(file === null ? undefined : String(file)));
      w.on('error', (err) => this.onProblem(`cannot watch ${dir} any more: ${err.message}`));
      (w as FSWatcher & { dir?: string }).dir = dir;
      this.watchers.push(w);
    } catch (err) {
      this.onProblem(`cannot watch ${dir}: ${(err as Error).message}`);
    }
  }

  private changed(what: string): void {
    this.pending.add(what);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const what = [...this.pending];
      this.pending.clear();
      if (what.includes(ENV)) {
        const text = readOrEmpty(this.envFile);
        const same = text === this.envText;
        this.envText = text;
        // Only the .env directory stirred, and the file reads as before:
        // baton's own files there, or a write of the same content.
        if (same && what.length === 1) return;
        if (same) what.splice(what.indexOf(ENV), 1);
        else what[what.indexOf(ENV)] = basename(this.envFile);
      }
      this.onChange(what);
    }, WATCH_DEBOUNCE_MS);
    this.timer.unref();
  }
}
