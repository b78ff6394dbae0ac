/**
 * A lock the kernel holds for us: an exclusive SQLite lock (a POSIX advisory lock) on one file,
 * held for as long as the returned handle is open. The kernel releases it however the process
 * ends — exit, crash, SIGKILL, power loss — so a lock is never stale, nothing has to be "taken
 * over", and a reused process id cannot fool it (no pid is involved). Users: a stream's writer
 * (`@offchannel/sink-fs`), a delivery target, a witness's state folder, an export's working
 * directory.
 *
 * How: `new DatabaseSync(file, { timeout: 0 })`, `PRAGMA locking_mode = EXCLUSIVE`, `PRAGMA
 * journal_mode = MEMORY`, `BEGIN EXCLUSIVE`. Nothing is ever written: the file stays empty (SQLite
 * creates it if needed; it is set to mode 0600), and with the journal in memory SQLite creates no
 * `<file>-journal` beside it and writes nothing to disk at all. The locks SQLite takes on the file
 * are the same as with a journal on disk, so an older offchannel, which kept a `-journal`, and this
 * one exclude each other on the same lock file; a `-journal` an older holder left when it was
 * killed is removed by SQLite at the next lock (an empty database has no hot journal to replay;
 * SQLite unlinks the name, never what a symbolic link there points at).
 *
 * Contenders: `BEGIN EXCLUSIVE` climbs SHARED → RESERVED → EXCLUSIVE, and a failed climb keeps its
 * SHARED lock until the connection is closed. Two processes trying at one instant can thus make
 * each other fail (both SHARED; one RESERVED, fails EXCLUSIVE on the other's SHARED) and leave
 * the lock to nobody. So SQLITE_BUSY closes the connection and tries again after a random pause
 * of 1–10 ms, for about 250 ms of pauses in all, before saying `OS_LOCK_HELD`: a real holder keeps
 * its EXCLUSIVE lock throughout, so the answer is the same, only later; colliding contenders part
 * and exactly one of them gets the lock. The pauses block the thread (the helper is synchronous);
 * they happen only while the lock is contended.
 *
 * SQLite answers SQLITE_BUSY when the lock is held — by another process, or by another
 * connection of this same process (SQLite tracks its locks per file inside a process, where POSIX
 * locks alone would not see them).
 *
 * File systems: these are `fcntl` locks, which hold on a local file system. On NFS they hold only
 * with working NFS locking (NFSv4, or NFSv3 with lockd): a crashed client's lock lasts until its
 * lease expires (NFSv4, typically 90 s), and a mount with `nolock`, as well as some SMB, FUSE, 9p
 * and WSL `drvfs` mounts, does not lock across hosts at all — two hosts could then both "hold" it.
 * Keep lock files on a local file system.
 *
 * What is in the file's place is not trusted: it is `lstat`ed first, never opened by us — a
 * FIFO, a symbolic link, a directory, a device or a socket is refused (`OS_LOCK_REFUSED`) without
 * waiting on it, and a file holding other data is refused by SQLite unless it is an SQLite database
 * (one is locked like an empty file and left unchanged: nothing is written to it). After
 * the lock is taken the path must still be the regular file seen before (or, if there was none,
 * a regular file): a swap in between is refused too. (The check is by `lstat`, so it cannot hang;
 * a FIFO swapped in between the look and SQLite's open fails in SQLite with an I/O error, and
 * never blocks: SQLite opens read-write and reads nothing from an empty file.)
 *
 * Never open the lock file yourself while this process holds the lock: POSIX drops a process's
 * locks on a file when ANY descriptor of that file is closed. This helper opens nothing itself
 * for that reason (SQLite keeps such descriptors open until the lock is released).
 */
import type * as Sqlite from 'node:sqlite';
import { type Stats, chmodSync, lstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import { OsLockError } from '../errors/os-lock-error.ts';

/** A held lock. */
export interface OsLock {
  /** The lock file. */
  readonly file: string;
  /**
   * Releases the lock (idempotent). The file stays: removing it could drop a newer holder's lock.
   * Keep the handle referenced while the lock must hold: a handle that is garbage collected
   * closes its database, and the lock is released with it.
   */
  release(): void;
}

/** How {@link takeOsLock} waits out contenders; the defaults suit every caller. */
export interface OsLockOptions {
  /** Milliseconds of pauses after which SQLITE_BUSY is `OS_LOCK_HELD` (default 250). */
  readonly retryForMs?: number;
  /** Blocks the thread for `ms` (default: `Atomics.wait`); tests inject their own. */
  readonly pause?: (ms: number) => void;
  /** A number in [0, 1) that draws each pause (default `Math.random`). */
  readonly random?: () => number;
}

const SQLITE_BUSY = 5;
const SQLITE_NOTADB = 26;
const RETRY_FOR_MS = 250;
const require = createRequire(import.meta.url);

/**
 * Takes the exclusive lock on `file` (its directory must exist), or throws {@link OsLockError}:
 * `OS_LOCK_HELD` when another process or this one holds it (after about 250 ms of retries, see
 * the header), `OS_LOCK_REFUSED` when something other than a lock file is in its place,
 * `OS_LOCK_FAILED` otherwise.
 */
export function takeOsLock(file: string, options: OsLockOptions = {}): OsLock {
  const sqlite = loadSqlite(file);
  const pause = options.pause ?? sleep;
  let waited = 0;
  for (;;) {
    const outcome = attempt(sqlite, file);
    if (!(outcome instanceof Error)) return outcome;
    const ms = nextPause(file, outcome, waited, options);
    pause(ms);
    waited += ms;
  }
}

export interface OsLockAsyncOptions extends Omit<OsLockOptions, 'pause'> {
  /** Resolves after `ms` (default: a timer); tests inject their own. */
  readonly pause?: (ms: number) => Promise<void>;
}

/**
 * {@link takeOsLock} for a running service: the pauses between attempts are timers, so a
 * contended lock (another process holds it) never blocks the event loop — a capture process
 * opening the streams of accounts another process holds keeps its other accounts running.
 */
export async function takeOsLockAsync(file: string, options: OsLockAsyncOptions = {}): Promise<OsLock> {
  const sqlite = loadSqlite(file);
  const pause = options.pause ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let waited = 0;
  for (;;) {
    const outcome = attempt(sqlite, file);
    if (!(outcome instanceof Error)) return outcome;
    const ms = nextPause(file, outcome, waited, options);
    await pause(ms);
    waited += ms;
  }
}

/** The next pause (1–10 ms) after a busy attempt, or `OS_LOCK_HELD` once the budget is spent. */
function nextPause(file: string, busy: Error, waited: number, options: { readonly retryForMs?: number; readonly random?: () => number }): number {
  if (waited >= (options.retryForMs ?? RETRY_FOR_MS)) throw new OsLockError('OS_LOCK_HELD', file, 'is held by another process or by this one', { cause: busy });
  return 1 + Math.min(9, Math.floor((options.random ?? Math.random)() * 10));
}

function attempt(sqlite: typeof Sqlite, file: string): OsLock | Error {
  const before = inspect(file);
  let db: Sqlite.DatabaseSync;
  try {
    db = new sqlite.DatabaseSync(file, { timeout: 0 });
  } catch (error) {
    throw new OsLockError('OS_LOCK_FAILED', file, `cannot be opened (${messageOf(error)})`, { cause: error });
  }
  try {
    const opened = same(file, before);
    if ((opened.mode & 0o777) !== 0o600) chmodSync(file, 0o600);
    db.exec('PRAGMA locking_mode = EXCLUSIVE');
    // No `-journal` beside the lock, and nothing written to disk; the locks are the same.
    db.exec('PRAGMA journal_mode = MEMORY');
    db.exec('BEGIN EXCLUSIVE');
    same(file, opened);
  } catch (error) {
    // Closing drops the SHARED lock a failed climb keeps, which would block a contender.
    db.close();
    if (error instanceof OsLockError) throw error;
    const errcode = (error as { errcode?: unknown }).errcode;
    if (errcode === SQLITE_BUSY) return error as Error;
    if (errcode === SQLITE_NOTADB) throw new OsLockError('OS_LOCK_REFUSED', file, 'holds other data, not a lock (a lock file is empty)', { cause: error });
    // Swapped for a FIFO or the like after the first look: say what is there now.
    inspect(file);
    throw new OsLockError('OS_LOCK_FAILED', file, `cannot be locked (${messageOf(error)})`, { cause: error });
  }
  const held = db;
  let released = false;
  return {
    file,
    release() {
      if (released) return;
      released = true;
      held.close();
    },
  };
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function loadSqlite(file: string): typeof Sqlite {
  try {
    return require('node:sqlite') as typeof Sqlite;
  } catch (error) {
    throw new OsLockError('OS_LOCK_FAILED', file, 'needs node:sqlite to be taken: use Node.js 22.13 or newer', { cause: error });
  }
}

/** The file's `lstat`, undefined when it does not exist; anything but a regular file is refused. */
function inspect(file: string): Stats | undefined {
  let info: Stats;
  try {
    info = lstatSync(file);
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw new OsLockError('OS_LOCK_FAILED', file, `cannot be examined (${(error as { code?: string }).code ?? 'error'})`, { cause: error });
  }
  const problem = problemOf(info);
  if (problem !== undefined) throw new OsLockError('OS_LOCK_REFUSED', file, problem);
  return info;
}

/** The file's `lstat`: a regular file, the one seen before (if any), else refused. */
function same(file: string, before: Stats | undefined): Stats {
  const now = inspect(file);
  if (now === undefined || (before !== undefined && (now.dev !== before.dev || now.ino !== before.ino))) {
    throw new OsLockError('OS_LOCK_REFUSED', file, 'was removed or replaced while it was being locked');
  }
  return now;
}

function problemOf(info: Stats): string | undefined {
  if (info.isFile()) return undefined;
  if (info.isSymbolicLink()) return 'is a symbolic link, not a regular file';
  if (info.isFIFO()) return 'is a FIFO (named pipe), not a regular file';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'is a device, not a regular file';
  if (info.isSocket()) return 'is a socket, not a regular file';
  if (info.isDirectory()) return 'is a directory, not a regular file';
  return 'is not a regular file';
}

/** SQLite's own words ("database is locked", "disk I/O error"): never input, safe to show. */
function messageOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return error instanceof Error ? error.message : typeof code === 'string' ? code : 'error';
}
