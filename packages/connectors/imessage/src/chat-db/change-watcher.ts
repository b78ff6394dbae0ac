/**
 * Wakes the relay when chat.db may have changed. Two independent triggers, because each fails
 * alone: a watch on the Messages *directory* (a watch on `chat.db-wal` dies silently when
 * Messages replaces the file after a checkpoint or restart), and a poll of
 * `PRAGMA data_version` every `pollMs`, which moves whenever another connection commits and
 * needs no file events at all. A failed directory watch is re-armed from the poll.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

/** What the watcher calls. `onPoll` runs every interval and returns true when data changed. */
export interface ChangeWatcherOptions {
  readonly file: string;
  readonly pollMs: number;
  readonly watchDirectory: boolean;
  readonly onChange: () => void;
  readonly onPoll: (elapsedMs: number) => boolean;
  readonly onWatchError: (code: string) => void;
}

/** Starts both triggers; call the returned function to stop them. */
export function watchChanges(options: ChangeWatcherOptions): { stop(): void; readonly watching: () => boolean } {
  const dir = path.dirname(options.file);
  const base = path.basename(options.file);
  let watcher: FSWatcher | undefined;
  const arm = (): void => {
    if (!options.watchDirectory || watcher !== undefined) return;
    try {
      watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name === null || name.startsWith(base)) options.onChange();
      });
      watcher.on('error', (error: { code?: unknown }) => {
        options.onWatchError(typeof error.code === 'string' ? error.code : 'WATCH_ERROR');
        watcher?.close();
        watcher = undefined;
      });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      options.onWatchError(typeof code === 'string' ? code : 'WATCH_ERROR');
    }
  };
  arm();
  let last = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    const elapsed = now - last;
    last = now;
    arm();
    if (options.onPoll(elapsed)) options.onChange();
  }, options.pollMs);
  return {
    stop: () => {
      clearInterval(timer);
      watcher?.close();
      watcher = undefined;
    },
    watching: () => watcher !== undefined,
  };
}
