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
 * a link points to, and block reading a FIFO). The file is created or opened here with
 * `O_NOFOLLOW` and made 0600 through that descriptor (`fchmod`, never a path that could be
 * swapped for a link), and once SQLite has it open the path must still name that same file
 * (device and inode), with regular files (or nothing) at `-wal` and `-shm`.
 */
import type * as Sqlite from 'node:sqlite';
import { createRequire } from 'node:module';
import { type Stats, closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync } from 'node:fs';
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
  const fd = openRegularFile(options);
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
    // The path SQLite opened is still the file made 0600 above, and nothing it created beside it
    // (the WAL and its shared memory) is a link or other non-file.
    const opened = fstatSync(fd);
    const now = statOf(options, options.file);
    if (now === undefined || now.dev !== opened.dev || now.ino !== opened.ino) throw refused(options, options.file, 'was replaced while it was opened');
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
  } finally {
    closeSync(fd);
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
 * Checks `file`, `file-wal` and `file-shm`, then opens (or creates) `file` without following a
 * link or waiting on a FIFO, and makes it 0600 through the descriptor. The caller closes it.
 */
function openRegularFile(options: SqliteIndexOptions<string>): number {
  statOf(options, options.file);
  for (const suffix of SIDE_FILES) statOf(options, options.file + suffix);
  let fd: number;
  try {
    fd = openSync(options.file, constants.O_RDWR | constants.O_CREAT | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0), 0o600);
  } catch (error) {
    // Swapped for a link (ELOOP) or a directory (EISDIR) since it was checked.
    if ((error as { code?: string }).code === 'ELOOP') throw refused(options, options.file, 'is a symbolic link');
    throw new OffchannelError(options.code, `${options.title} ${options.file} cannot be opened (${(error as Error).message}); move it aside — it is rebuilt from the archive.`, { cause: error });
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw refused(options, options.file, problemOf(info));
    fchmodSync(fd, 0o600);
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}
