/**
 * Opens one of core's derived SQLite indexes (the recorder's key index, the archive log index):
 * the file mode 0600 in a folder created 0700, WAL with `synchronous = NORMAL`, the schema and
 * the prepared statements. Written once so that every failure is handled the same way: an index
 * that cannot be opened, or opens but cannot be set up (a damaged file, tables of that name with
 * other columns), is closed at once — never left open until garbage collection — and reported as
 * one typed error that says to delete the file so it is rebuilt from the archive.
 */
import type * as Sqlite from 'node:sqlite';
import { createRequire } from 'node:module';
import { chmodSync, mkdirSync } from 'node:fs';
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
  let db: Sqlite.DatabaseSync;
  try {
    // Several capture processes of a host may share one index (each writes only its own rows).
    db = new sqlite.DatabaseSync(options.file, { timeout: 10_000 });
  } catch (error) {
    throw unavailable(error);
  }
  try {
    chmodSync(options.file, 0o600);
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = NORMAL');
    db.exec(options.schema);
    const statements = {} as Record<S, Sqlite.StatementSync>;
    for (const name of Object.keys(options.statements) as S[]) statements[name] = db.prepare(options.statements[name]);
    return { db, statements };
  } catch (error) {
    db.close();
    throw unavailable(error);
  }
}
