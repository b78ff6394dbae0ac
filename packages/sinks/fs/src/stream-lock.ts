/**
 * One writer per stream, enforced by the operating system: the writer holds an exclusive
 * SQLite lock (POSIX advisory lock) on `locks/<stream>.lock` for as long as it has the stream
 * open. The kernel releases it when the process exits in any way — including SIGKILL and
 * power loss — so there are no stale locks to break, and pid reuse cannot fool it.
 */
import type * as Sqlite from 'node:sqlite';
import { SinkConflictError } from '@offchannel/core';

const SQLITE_BUSY = 5;

export interface StreamLock {
  release(): void;
}

let sqlite: Promise<typeof Sqlite> | undefined;

/** node:sqlite, loaded once (also for the spool's writer presence, blob-prune.ts). */
export async function loadSqlite(): Promise<typeof Sqlite> {
  sqlite ??= import('node:sqlite').catch((error: unknown) => {
    sqlite = undefined;
    throw new Error('the fs sink needs node:sqlite for its writer lock: use Node.js 22.13 or newer (or run Node 22.12 with --experimental-sqlite).', { cause: error });
  });
  return sqlite;
}

/** Takes the stream's writer lock, or rejects with `SinkConflictError` if another writer has it. */
export async function acquireStreamLock(file: string, stream: string): Promise<StreamLock> {
  const { DatabaseSync: Database } = await loadSqlite();
  let db: Sqlite.DatabaseSync | undefined;
  try {
    db = new Database(file, { timeout: 0 });
    db.exec('PRAGMA locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    db?.close();
    if ((error as { errcode?: unknown }).errcode === SQLITE_BUSY) {
      throw new SinkConflictError(stream, 'another writer (this or another process) holds this stream; a stream has exactly one writer — stop the other capture process for this account first.');
    }
    throw error;
  }
  const held = db;
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      held.close();
    },
  };
}
