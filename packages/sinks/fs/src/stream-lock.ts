/**
 * One writer per stream, enforced by the operating system: the writer holds an exclusive
 * SQLite lock (POSIX advisory lock) on `locks/<stream>.lock` for as long as it has the stream
 * open. The kernel releases it when the process exits in any way — including SIGKILL and
 * power loss — so there are no stale locks to break, and pid reuse cannot fool it. The lock
 * itself is core's `takeOsLock` (its async form), shared with the delivery target and witness locks.
 */
import type * as Sqlite from 'node:sqlite';
import { OffchannelError, SinkConflictError, SinkUnavailableError, takeOsLockAsync } from '@offchannel/core';

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

/**
 * Takes the stream's writer lock (`takeOsLockAsync` from core: its retries of a busy lock wait on
 * timers, never blocking the capture process's other accounts), or rejects with `SinkConflictError` if
 * another writer has it. Anything but a regular file in the lock's place is refused
 * (`OsLockError`, `OS_LOCK_REFUSED`, fatal), never waited on nor followed. A lock that could not
 * be taken for another reason (`OS_LOCK_FAILED`: no descriptor left, disk full, the folder gone)
 * is `SinkUnavailableError`, retryable: nothing was written, and the recorder tries again later
 * instead of stopping capture.
 */
export async function acquireStreamLock(file: string, stream: string): Promise<StreamLock> {
  await loadSqlite(); // without node:sqlite, say so in the sink's words
  try {
    return await takeOsLockAsync(file);
  } catch (error) {
    if (OffchannelError.hasCode(error, 'OS_LOCK_HELD')) {
      throw new SinkConflictError(stream, 'another writer (this or another process) holds this stream; a stream has exactly one writer — stop the other capture process for this account first.');
    }
    if (OffchannelError.hasCode(error, 'OS_LOCK_FAILED')) {
      throw new SinkUnavailableError(`the writer lock of stream ${stream} could not be taken: ${(error as Error).message}`, { cause: error });
    }
    throw error;
  }
}
