/**
 * Where the recorder remembers which idempotency keys each stream already holds.
 *
 * Dedup must survive restarts and reach back years (a WhatsApp history sync re-delivers old
 * messages). Re-reading every stream at start-up to rebuild the keys in memory makes start-up
 * time and memory grow with history, so the recorder keeps them in a {@link KeyIndex}:
 *
 * - `openKeyIndex({ file })` — a SQLite file (node:sqlite, WAL) on the capture host: start-up
 *   reads only the records the index has not seen, and memory stays flat. The index is derived
 *   data: it is checked against the sink at every start (the last record it indexed must still
 *   be in the stream, with the same hash) and rebuilt from the archive when it is missing, behind,
 *   ahead or disagrees. Losing it costs one full read of the stream, never a duplicate record.
 * - `memoryKeyIndex()` — the default: keys in memory, rebuilt from the sink at every start.
 *
 * Rules for implementations: `add` is called after the records are durable in the sink, in
 * seq order, each record exactly once; `head` is the last record added (or 0). The index may
 * lose recent additions in a crash (the recorder re-reads what it misses), but it must never
 * claim a head whose keys it does not hold.
 */
import { openSqliteIndex } from '../state/open-sqlite-index.ts';
import { ZERO_HASH } from '../hash/sha256.ts';

/** The last record a key index holds for a stream. */
export interface IndexedHead {
  readonly seq: number;
  /** sha256 hex of that record's canonical bytes (64 zeros when `seq` is 0). */
  readonly hash: string;
}

/** One durable record's key. */
export interface IndexedKey {
  readonly key: string;
  readonly seq: number;
}

/** The recorder's store of idempotency keys, per stream. Synchronous: it sits on the capture path. */
export interface KeyIndex {
  /** What the index holds for `stream`. */
  head(stream: string): IndexedHead;
  /** The seq of the record with `key` in `stream`, if indexed. */
  get(stream: string, key: string): number | undefined;
  /** Adds durable records' keys (in seq order, each once) and moves the head to `head`. */
  add(stream: string, keys: readonly IndexedKey[], head: IndexedHead): void;
  /** Forgets `stream` (before a rebuild from the sink). */
  reset(stream: string): void;
  /** Releases the index. Idempotent. */
  close(): void;
}

/**
 * A memory index's keys of one stream, lent to the recorder's stream log (module-internal, not
 * exported from the package): the log keeps its records in flight in the same map — key → its
 * queued entry until durable, then the seq — so a capture costs one map and one look-up, not
 * an in-flight map and the index. The index's own `get` answers only durable keys (numbers).
 */
export interface LentKeys {
  readonly keys: Map<string, unknown>;
  head: IndexedHead;
}

const lenders = new WeakMap<KeyIndex, (stream: string) => LentKeys>();

/** The stream's lent keys when `index` is a {@link memoryKeyIndex}, else `undefined`. */
export function lendKeys(index: KeyIndex, stream: string): LentKeys | undefined {
  return lenders.get(index)?.(stream);
}

/** Keys in memory; rebuilt from the sink at every start (the recorder's default). */
export function memoryKeyIndex(): KeyIndex {
  const streams = new Map<string, LentKeys>();
  const entry = (stream: string): LentKeys => {
    let found = streams.get(stream);
    if (!found) streams.set(stream, (found = { head: { seq: 0, hash: ZERO_HASH }, keys: new Map() }));
    return found;
  };
  const index: KeyIndex = {
    head: (stream) => streams.get(stream)?.head ?? { seq: 0, hash: ZERO_HASH },
    get(stream, key) {
      const seq = streams.get(stream)?.keys.get(key);
      return typeof seq === 'number' ? seq : undefined;
    },
    add(stream, keys, head) {
      const found = entry(stream);
      for (const { key, seq } of keys) found.keys.set(key, seq);
      found.head = head;
    },
    reset: (stream) => {
      // In place: a stream log holding the lent map keeps using it.
      const found = streams.get(stream);
      if (!found) return;
      found.keys.clear();
      found.head = { seq: 0, hash: ZERO_HASH };
    },
    close: () => {
      streams.clear();
    },
  };
  lenders.set(index, entry);
  return index;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS heads (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (stream TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (stream, key)) WITHOUT ROWID;
`;

/** Keys written by one multi-row INSERT (a statement prepared once; the rest go one by one). */
const KEYS_PER_INSERT = 64;

/**
 * A key index in one SQLite file for all streams of a capture host (mode 0600, its folder
 * created 0700). WAL with `synchronous = NORMAL`: a crash may lose the newest additions, which
 * the recorder re-reads from the sink; it cannot leave the index claiming keys it lacks,
 * because the keys and the head move in one transaction.
 *
 * Cost per record on the capture path: look-ups made in one turn of the event loop share one
 * read transaction (ended in a microtask, or before any write), instead of one implicit
 * transaction — and its shared-memory locks — each; a batch's keys go in one transaction, 64
 * rows per INSERT. A read transaction sees the file as of its first look-up, so it never
 * spans a write of this handle: `add` and `reset` end it first, and the recorder writes a
 * stream's keys only after they are durable, from this same handle. Another process (or
 * handle) writes only its own streams, which this one does not look up.
 */
export function openKeyIndex(options: { readonly file: string }): KeyIndex {
  // The first record with a key wins, as the recorder's dedup does.
  const insertKeys = 'INSERT OR IGNORE INTO keys (stream, key, seq) VALUES ';
  const { db, statements } = openSqliteIndex({
    file: options.file,
    code: 'KEY_INDEX_UNAVAILABLE',
    needs: 'the persistent key index',
    title: 'the key index',
    schema: SCHEMA,
    statements: {
      readHead: 'SELECT seq, hash FROM heads WHERE stream = ?',
      readKey: 'SELECT seq FROM keys WHERE stream = ? AND key = ?',
      writeKey: `${insertKeys}(?, ?, ?)`,
      writeKeys: insertKeys + Array.from({ length: KEYS_PER_INSERT }, () => '(?, ?, ?)').join(', '),
      writeHead: 'INSERT OR REPLACE INTO heads (stream, seq, hash) VALUES (?, ?, ?)',
      dropKeys: 'DELETE FROM keys WHERE stream = ?',
      dropHead: 'DELETE FROM heads WHERE stream = ?',
    },
  });
  const { readHead, readKey, writeKey, writeKeys, writeHead, dropKeys, dropHead } = statements;
  let open = true;
  /** A read transaction is open (see {@link read}). */
  let reading = false;
  const endRead = (): void => {
    if (!reading) return;
    reading = false;
    try {
      db.exec('COMMIT');
    } catch {
      // Ended already (SQLite rolls back on some errors). Out of it in any case: a write's
      // BEGIN that still finds a transaction open fails loudly. (No `db.isTransaction`:
      // Node.js 22 before 22.16 lacks it.)
      try {
        db.exec('ROLLBACK');
      } catch {
        // No transaction was open.
      }
    }
  };
  /** Opens a read transaction for this turn's look-ups, if none is; it ends in a microtask. */
  const read = (): void => {
    if (reading) return;
    db.exec('BEGIN');
    reading = true;
    queueMicrotask(() => {
      if (open) endRead();
    });
  };
  const transaction = (run: () => void) => {
    endRead();
    db.exec('BEGIN');
    try {
      run();
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw error;
    }
  };
  const args: (string | number)[] = new Array<string | number>(3 * KEYS_PER_INSERT);
  return {
    head(stream) {
      read();
      const row = readHead.get(stream) as { seq: number; hash: string } | undefined;
      return row ? { seq: row.seq, hash: row.hash } : { seq: 0, hash: ZERO_HASH };
    },
    get(stream, key) {
      read();
      const row = readKey.get(stream, key) as { seq: number } | undefined;
      return row?.seq;
    },
    add(stream, keys, head) {
      transaction(() => {
        let next = 0;
        for (; next + KEYS_PER_INSERT <= keys.length; next += KEYS_PER_INSERT) {
          for (let row = 0; row < KEYS_PER_INSERT; row++) {
            const { key, seq } = keys[next + row] as IndexedKey;
            args[3 * row] = stream;
            args[3 * row + 1] = key;
            args[3 * row + 2] = seq;
          }
          writeKeys.run(...args);
        }
        // Rows of one INSERT go in in order, so the first of equal keys still wins.
        for (; next < keys.length; next++) {
          const { key, seq } = keys[next] as IndexedKey;
          writeKey.run(stream, key, seq);
        }
        writeHead.run(stream, head.seq, head.hash);
      });
      args.fill(0);
    },
    reset(stream) {
      transaction(() => {
        dropKeys.run(stream);
        dropHead.run(stream);
      });
    },
    close() {
      if (!open) return;
      open = false;
      endRead();
      db.close();
    },
  };
}
