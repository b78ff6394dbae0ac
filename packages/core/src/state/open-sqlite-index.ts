/**
 * Opens one of core's derived SQLite indexes (the recorder's key index, the archive log index):
 * the file mode 0600 in a folder created 0700, WAL with `synchronous = NORMAL`, the schema and
 * the prepared statements. Written once so that every failure is handled the same way: an index
 * that cannot be opened, or opens but cannot be set up (a damaged file, tables of that name with
 * other columns), is closed at once — never left open until garbage collection — and reported as
 * one typed error that says to delete the file so it is rebuilt from the archive.
 *
 * The index lives in a state folder, whose files are opened without following links: anything
 * but a regular file (or nothing) at `file`, `file-wal` or `file-shm` — a symbolic link, a FIFO,
 * a directory — is refused before SQLite sees it (SQLite would open, create or truncate the file
 * a link points to, and block reading a FIFO). An absent file is created here 0600 with `O_EXCL`
 * and `O_NOFOLLOW` (and that descriptor closed before SQLite opens it); an existing one is never
 * opened here (closing a descriptor of it would drop SQLite's POSIX locks on it). Once SQLite has
 * it open the path must still name that same file (device and inode), with regular files (or
 * nothing) at `-wal` and `-shm`.
 */
import type * as Sqlite from 'node:sqlite';
import { createRequire } from 'node:module';
import { type Stats, chmodSync, closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { OffchannelError } from '../errors/offchannel-error.ts';

export interface SqliteIndexOptions<S extends string> {
  readonly file: string;
  /** The error code of every failure, e.g. `KEY_INDEX_UNAVAILABLE`. */
  readonly code: string;
  /** What the index is called in the "needs node:sqlite" message, e.g. `the persistent key index`. */
  readonly needs: string;
  /** What the index is called in the "cannot be opened" message, e.g. `the key index`. */
  readonly title: string;
  /** `CREATE TABLE IF NOT EXISTS …` statements. */
  readonly schema: string;
  /** The statements to prepare, by name. */
  readonly statements: Readonly<Record<S, string>>;
}

export interface SqliteIndex<S extends string> {
  readonly db: Sqlite.DatabaseSync;
  readonly statements: Readonly<Record<S, Sqlite.StatementSync>>;
}

const require = createRequire(import.meta.url);

export function openSqliteIndex<S extends string>(options: SqliteIndexOptions<S>): SqliteIndex<S> {
  let sqlite: typeof Sqlite;
  try {
    sqlite = require('node:sqlite') as typeof Sqlite;
  } catch (error) {
    throw new OffchannelError(options.code, `${options.needs} needs node:sqlite: use Node.js 22.13 or newer.`, { cause: error });
  }
  mkdirSync(path.dirname(options.file), { recursive: true, mode: 0o700 });
  const unavailable = (error: unknown): OffchannelError =>
    new OffchannelError(options.code, `${options.title} ${options.file} cannot be opened (${(error as Error).message}); delete it to have it rebuilt from the archive.`, { cause: error });
  const prepared = prepareFile(options);
  let db: Sqlite.DatabaseSync | undefined;
  try {
    // Several capture processes of a host may share one index (each writes only its own rows).
    try {
      db = new sqlite.DatabaseSync(options.file, { timeout: 10_000 });
    } catch (error) {
      throw unavailable(error);
    }
    try {
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec(options.schema);
    } catch (error) {
      throw unavailable(error);
    }
    // The path SQLite opened is still the file checked (or made 0600) above, and nothing it
    // created beside it (the WAL and its shared memory) is a link or other non-file.
    const now = statOf(options, options.file);
    if (now === undefined || now.dev !== prepared.dev || now.ino !== prepared.ino) throw refused(options, options.file, 'was replaced while it was opened');
    for (const suffix of SIDE_FILES) statOf(options, options.file + suffix);
    try {
      const statements = {} as Record<S, Sqlite.StatementSync>;
      for (const name of Object.keys(options.statements) as S[]) statements[name] = db.prepare(options.statements[name]);
      return { db, statements };
    } catch (error) {
      throw unavailable(error);
    }
  } catch (error) {
    db?.close();
    throw error;
  }
}

/** SQLite's files beside the database in WAL mode. */
const SIDE_FILES = ['-wal', '-shm'] as const;

/** What is wrong with a file that is not a regular file. */
function problemOf(info: Stats): string {
  if (info.isSymbolicLink()) return 'is a symbolic link';
  if (info.isFIFO()) return 'is a FIFO (named pipe), not a regular file';
  if (info.isDirectory()) return 'is a directory, not a regular file';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'is a device, not a regular file';
  if (info.isSocket()) return 'is a socket, not a regular file';
  return 'is not a regular file';
}

function refused(options: SqliteIndexOptions<string>, file: string, problem: string): OffchannelError {
  return new OffchannelError(
    options.code,
    `${file} ${problem}; move ${options.file} and any ${options.file}-wal and ${options.file}-shm aside — ${options.title} is rebuilt from the archive.`,
  );
}

/** `file`'s own status (a link's, not its target's), or `undefined` if absent; anything but a regular file is refused. */
function statOf(options: SqliteIndexOptions<string>, file: string): Stats | undefined {
  let info: Stats;
  try {
    info = lstatSync(file);
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw new OffchannelError(options.code, `${options.title} ${file} cannot be inspected (${(error as Error).message}); move it aside — it is rebuilt from the archive.`, { cause: error });
  }
  if (!info.isFile()) throw refused(options, file, problemOf(info));
  return info;
}

/**
 * Checks `file`, `file-wal` and `file-shm` and returns the status of `file`, creating it first
 * (0600, `O_EXCL`, never through a link) when it is absent. The descriptor that creates it is
 * closed before SQLite opens the file: closing any descriptor of a file drops every POSIX lock
 * the process holds on it, SQLite's own (in WAL mode, the shared lock that tells other
 * processes the database is in use) included — so an existing index is never opened here.
 */
function prepareFile(options: SqliteIndexOptions<string>): Stats {
  for (const suffix of SIDE_FILES) statOf(options, options.file + suffix);
  const existing = statOf(options, options.file);
  if (existing !== undefined) {
    // Made 0600 when it was created; a looser mode (set by hand) is tightened by path: the
    // check above refused a link, and the folder is the process's own (0700).
    if ((existing.mode & 0o077) !== 0) failing(options, () => {
      chmodSync(options.file, 0o600);
    });
    return existing;
  }
  let fd: number | undefined;
  try {
    fd = openSync(options.file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0), 0o600);
    fchmodSync(fd, 0o600);
  } catch (error) {
    const code = (error as { code?: string }).code;
    // Another process created it meanwhile (EEXIST), or something was put there: checked again below.
    if (code !== 'EEXIST' && code !== 'ELOOP' && code !== 'EISDIR') throw unavailableFile(options, error);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const created = statOf(options, options.file);
  if (created === undefined) throw refused(options, options.file, 'was removed while it was created');
  return created;
}

function failing(options: SqliteIndexOptions<string>, step: () => void): void {
  try {
    step();
  } catch (error) {
    throw unavailableFile(options, error);
  }
}

function unavailableFile(options: SqliteIndexOptions<string>, error: unknown): OffchannelError {
  return new OffchannelError(options.code, `${options.title} ${options.file} cannot be opened (${(error as Error).message}); move it aside — it is rebuilt from the archive.`, { cause: error });
}
