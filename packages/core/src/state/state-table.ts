/**
 * A table in the secret state store: many small secret values in one SQLite file, written in
 * batches. For state that grows with every message (WhatsApp's message secrets), one file per
 * value costs a sealed temp file, an fsync, a rename and a directory fsync per value; a table
 * writes a whole batch in one transaction and makes it durable with one fdatasync.
 *
 * - File `<scope directory>/.table-<name>.sqlite` (and SQLite's `-wal`, `-shm`), 0600 in the
 *   store's 0700 directory. `list()` never shows it; a scope cannot collide with it.
 * - Each value is sealed like a state file (AES-256-GCM, or a SHA-256 checksum when the store is
 *   unencrypted), bound to the table's path and the row's key: a row copied to another key or a
 *   table moved to another scope does not open. Keys are stored in clear: callers use digests.
 * - `write(entries)` applies all entries in one transaction: after a crash, all of them or none.
 *   It resolves once they are on disk. SQLite runs in WAL mode with `synchronous=NORMAL`, which
 *   keeps the database consistent after any crash but does not sync at commit; the table then
 *   fdatasyncs the WAL file through libuv's thread pool, so the event loop never waits for the
 *   disk. The committed transaction's frames in the WAL are what SQLite's recovery replays, so it
 *   is durable once that sync returns. Writes committed while a sync runs share the next one
 *   (group commit). A failed sync fails the table: nothing later is reported durable.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type * as Sqlite from 'node:sqlite';
import { StateStoreError } from '../errors/state-errors.ts';

/** Many small values under one name of a scope, written in durable batches. */
export interface StateTable {
  /** The value stored under `key`, or `undefined`. Throws `StateStoreError` if damaged. */
  get(key: string): Promise<Uint8Array | undefined>;
  /**
   * Stores every entry (`null` deletes) in one transaction; resolves when all are durable.
   * Later writes apply after earlier ones; reads see a write as soon as it was called.
   */
  write(entries: Iterable<readonly [key: string, value: Uint8Array | null]>): Promise<void>;
  /** Removes every row in one transaction; resolves when durable. */
  clear(): Promise<void>;
  /** Waits for the writes and reads called before it, then closes the file (the next call opens it again). */
  close(): Promise<void>;
}

/** What a table needs from its store: sealing, the file, and the directory made ready. */
export interface TableHost {
  readonly file: string;
  /** The table's path relative to the store root (bound into every row's seal). */
  readonly relative: string;
  seal(relative: string, value: Uint8Array): Buffer;
  open(relative: string, sealed: Buffer): Buffer;
  ready(): Promise<void>;
}

const KEY = /^[A-Za-z0-9._:=+-]{1,200}$/;
/** SQLite's page cache per table, KiB (its default is 2 MiB: too much per account). */
const CACHE_KIB = 256;

/**
 * WAL pages between checkpoints (SQLite's default 1 000). A checkpoint runs in the committing
 * call, with two fsyncs; random keys dirty about one page per row, and a later checkpoint
 * writes a page touched many times once. At most ~16 MiB of WAL per table.
 */
const CHECKPOINT_PAGES = 4000;

let sqlite: Promise<typeof Sqlite> | undefined;

function loadSqlite(): Promise<typeof Sqlite> {
  sqlite ??= import('node:sqlite').catch((error: unknown) => {
    sqlite = undefined;
    throw new StateStoreError('STATE_UNAVAILABLE', 'state tables need node:sqlite: use Node.js 22.13 or newer (or run Node 22.12 with --experimental-sqlite).', { cause: error });
  });
  return sqlite;
}

interface Waiter {
  readonly seq: number;
  resolve(): void;
  reject(error: Error): void;
}

export class SqliteStateTable implements StateTable {
  readonly #host: TableHost;
  #db: Sqlite.DatabaseSync | undefined;
  #opening: Promise<Sqlite.DatabaseSync> | undefined;
  #select: Sqlite.StatementSync | undefined;
  #upsert: Sqlite.StatementSync | undefined;
  #remove: Sqlite.StatementSync | undefined;
  #wal: FileHandle | undefined;
  /** Writes in call order (opening the file is asynchronous once). */
  #chain: Promise<unknown> = Promise.resolve();
  #committed = 0;
  #synced = 0;
  #syncing: Promise<void> | undefined;
  readonly #waiters: Waiter[] = [];
  #failed: Error | undefined;

  constructor(host: TableHost) {
    this.#host = host;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    checkKey(key);
    await this.#chain;
    const db = await this.#open();
    this.#select ??= db.prepare('SELECT v FROM kv WHERE k = ?');
    const row = this.#select.get(key) as { v: Uint8Array } | undefined;
    if (!row) return undefined;
    let value: Buffer;
    try {
      value = this.#host.open(this.#rowPath(key), Buffer.from(row.v));
    } catch {
      // The row's key is left out (also as a cause): callers' keys may be derived from identifiers.
      throw new StateStoreError('STATE_CORRUPT', `a row of state table "${this.#host.relative}" does not open (damaged, moved to another key, or written with another key); restore the table from backup or delete it to start that state again.`);
    }
    return new Uint8Array(value.buffer, value.byteOffset, value.length);
  }

  clear(): Promise<void> {
    return this.#commit((db) => { db.exec('DELETE FROM kv'); });
  }

  write(entries: Iterable<readonly [string, Uint8Array | null]>): Promise<void> {
    let rows: [string, Buffer | null][];
    try {
      // Sealed now: the caller may reuse its buffers, and a bad key fails before anything is written.
      rows = [...entries].map(([key, value]) => {
        checkKey(key);
        if (value !== null && !(value instanceof Uint8Array)) throw new StateStoreError('STATE_INVALID_NAME', `value for table row "${key}" must be a Uint8Array or null`);
        return [key, value === null ? null : this.#host.seal(this.#rowPath(key), value)];
      });
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    if (rows.length === 0) return this.#chain.then(() => this.#durable(this.#committed));
    return this.#commit((db) => {
      this.#upsert ??= db.prepare('INSERT INTO kv(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v');
      this.#remove ??= db.prepare('DELETE FROM kv WHERE k = ?');
      for (const [key, sealed] of rows) {
        if (sealed === null) this.#remove.run(key);
        else this.#upsert.run(key, sealed);
      }
    });
  }

  /** Runs `change` in one transaction after every earlier write; resolves when it is durable. */
  #commit(change: (db: Sqlite.DatabaseSync) => void): Promise<void> {
    const commit = this.#chain.then(async () => {
      if (this.#failed) throw this.#failed;
      const db = await this.#open();
      db.exec('BEGIN IMMEDIATE');
      try {
        change(db);
        db.exec('COMMIT');
      } catch (error) {
        if (db.isTransaction) db.exec('ROLLBACK');
        throw error;
      }
      return ++this.#committed;
    });
    this.#chain = commit.catch(() => undefined);
    return commit.then((seq) => this.#durable(seq));
  }

  async close(): Promise<void> {
    await this.#chain;
    // A read issued before this call may be opening the file: wait for it, then close what it opened.
    await this.#opening?.catch(() => undefined);
    while (this.#syncing) await this.#syncing.catch(() => undefined);
    const db = this.#db;
    this.#db = undefined;
    this.#opening = undefined;
    this.#select = this.#upsert = this.#remove = undefined;
    await this.#wal?.close().catch(() => undefined);
    this.#wal = undefined;
    db?.close();
  }

  #rowPath(key: string): string {
    return `${this.#host.relative}#${key}`;
  }

  /** Resolves when a sync that started after commit `seq` has finished. */
  #durable(seq: number): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (seq <= this.#synced) return Promise.resolve();
    const done = new Promise<void>((resolve, reject) => { this.#waiters.push({ seq, resolve, reject }); });
    this.#syncing ??= this.#syncLoop().finally(() => { this.#syncing = undefined; });
    return done;
  }

  async #syncLoop(): Promise<void> {
    try {
      while (this.#synced < this.#committed) {
        const target = this.#committed;
        this.#wal ??= await open(`${this.#host.file}-wal`, constants.O_RDWR);
        await this.#wal.datasync();
        this.#synced = target;
        this.#settle((waiter) => waiter.seq <= target);
      }
    } catch (error) {
      // After a failed fsync the page cache cannot be trusted: fail everything from here on.
      this.#failed = new StateStoreError('STATE_UNAVAILABLE', `state table "${this.#host.relative}" could not be synced to disk; nothing after the last durable write is kept. Check the disk, then restart.`, { cause: error });
      this.#settle(() => true);
    }
  }

  #settle(which: (waiter: Waiter) => boolean): void {
    for (let i = 0; i < this.#waiters.length; ) {
      const waiter = this.#waiters[i] as Waiter;
      if (!which(waiter)) {
        i++;
        continue;
      }
      this.#waiters.splice(i, 1);
      if (this.#failed) waiter.reject(this.#failed);
      else waiter.resolve();
    }
  }

  #open(): Promise<Sqlite.DatabaseSync> {
    if (this.#db) return Promise.resolve(this.#db);
    this.#opening ??= (async () => {
      const { DatabaseSync } = await loadSqlite();
      await this.#host.ready();
      // Created 0600 before SQLite opens it (SQLite gives its -wal and -shm files the same mode).
      const created = await open(this.#host.file, constants.O_RDWR | constants.O_CREAT, 0o600);
      await created.close();
      const db = new DatabaseSync(this.#host.file);
      try {
        db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -${CACHE_KIB}; PRAGMA wal_autocheckpoint = ${CHECKPOINT_PAGES};`);
        db.exec('CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID');
        // The schema and the WAL file itself are on disk before the first write relies on them.
        db.exec('PRAGMA wal_checkpoint(FULL)');
      } catch (error) {
        db.close();
        throw new StateStoreError('STATE_CORRUPT', `state table "${this.#host.relative}" cannot be opened; restore it from backup or delete it to start that state again.`, { cause: error });
      }
      try {
        await syncDirectory(path.dirname(this.#host.file)); // the new files' names are durable too
      } catch (error) {
        db.close();
        throw error;
      }
      this.#db = db;
      return db;
    })();
    this.#opening.catch(() => { this.#opening = undefined; }); // the next call tries again
    return this.#opening;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || !KEY.test(key)) throw new StateStoreError('STATE_INVALID_NAME', 'invalid state table key: use 1-200 of [A-Za-z0-9._:=+-]');
}
