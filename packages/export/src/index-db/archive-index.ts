import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { type ArchiveRecord, type NativeRef, type Party, type Sink, type StreamHead, ZERO_HASH, canonicalize, sha256Hex } from '@offchannel/core';
import { ExportError } from '../export-error.ts';
import { RecordBodies } from './record-bodies.ts';
import { sortableTime } from './sortable-time.ts';

/** A record as the exporters see it: where it sits in the archive and its hash. */
export interface IndexedRecord {
  readonly stream: string;
  readonly seq: number;
  /** SHA-256 of the stored canonical bytes, hex. */
  readonly hash: string;
  readonly record: ArchiveRecord;
  /** The record exactly as stored: its canonical JSON text. */
  readonly text: string;
  /** An edit, delete, reaction or receipt in the index targets this record ({@link ArchiveIndex.modifiersOf} is not empty). */
  readonly modified: boolean;
}

/** One conversation of one stream (records without a conversation form the stream's "account" conversation). */
export interface ConversationSummary {
  /** `<stream>|<conversation id>`; `<stream>|` for account-level records. */
  readonly key: string;
  readonly stream: string;
  /** Platform conversation id; `undefined` for the account-level records. */
  readonly id: string | undefined;
  readonly type: 'direct' | 'group' | 'channel' | undefined;
  /** Newest title seen. */
  readonly title: string | undefined;
  readonly records: number;
  readonly firstAt: string;
  readonly lastAt: string;
}

/** Kinds that change another record when their target is in the archive. */
export const MODIFIER_KINDS = ['edit', 'delete', 'reaction', 'receipt'] as const;
const MODIFIER_LIST = MODIFIER_KINDS.map((kind) => `'${kind}'`).join(', ');

/**
 * A temporary index over the archive, so export streams with bounded memory: one pass reads
 * every record into it (on disk, deleted on close); the exporters then walk one conversation
 * at a time and look up the edits, deletes, reactions and receipts of each message by its
 * resolved target. Two files: the records' stored bytes, written as they are read to
 * `records.bin` in blocks of one conversation each where it pays (no conversion; see
 * record-bodies.ts), and a SQLite table of the few fields the lookups need plus where each
 * record's bytes are — rows of a hundred bytes, not of the whole record, so inserting them and
 * building the lookup indexes scan a table a tenth the size. Rows are kept in conversation and
 * time order (the table's key), so a conversation's records are read back a block at a time.
 * Seq order, for JSONL, goes through the `by_seq` index. The index is a working copy only — what is exported comes from records whose hashes
 * the archive's verification has just checked.
 */
/** Where the index's record bytes are: the export's working file, or a kept index's own table. */
export interface BodyReader {
  read(address: number, bytes: number, sha256: string): string;
  remove(): Promise<void>;
}

export class ArchiveIndex {
  readonly #db: DatabaseSync;
  readonly #file: string;
  readonly #bodies: BodyReader;
  /** A kept index (kept-index.ts): its files stay at close, and its conversations come from its `convs` table. */
  readonly #kept: boolean;
  readonly #byKey: StatementSync;
  readonly #events: StatementSync;
  readonly #touched: StatementSync;
  readonly #touchedConversations: StatementSync;
  readonly #days: StatementSync;
  readonly #modifiers: StatementSync;
  readonly #byNative: StatementSync;
  readonly #byNativeId: StatementSync;
  readonly #streamRecords: StatementSync;
  readonly #custodian: StatementSync;

  private constructor(db: DatabaseSync, file: string, bodies: BodyReader, kept = false) {
    this.#db = db;
    this.#file = file;
    this.#bodies = bodies;
    this.#kept = kept;
    this.#byKey = db.prepare('SELECT stream, seq, hash, body_at, body_bytes, modified FROM records INDEXED BY by_seq WHERE stream = ? AND seq = ?');
    this.#events = db.prepare(
      `SELECT stream, seq, hash, body_at, body_bytes, modified FROM records WHERE conv = ? AND at >= ? AND at < ?
       AND (kind NOT IN ('edit', 'delete', 'reaction', 'receipt') OR target_seq IS NULL) ORDER BY at, seq`,
    );
    // The events of a conversation from a seq on, and the messages a modifier from that seq on
    // changes: both found from the stream's rows from that seq on (`by_seq`), so the cost is
    // what is new, not the conversation's history.
    const newEvents = `FROM records INDEXED BY by_seq WHERE stream = ? AND seq >= ? AND (kind NOT IN (${MODIFIER_LIST}) OR target_seq IS NULL)`;
    const changedTargets = `FROM records m INDEXED BY by_seq JOIN records t INDEXED BY by_seq ON t.stream = m.stream AND t.seq = m.target_seq
       WHERE m.stream = ? AND m.seq >= ? AND m.target_seq IS NOT NULL`;
    const columns = (alias: string): string => ['stream', 'seq', 'hash', 'body_at', 'body_bytes', 'modified', 'at'].map((column) => `${alias}${column}`).join(', ');
    this.#touched = db.prepare(`SELECT ${columns('')} ${newEvents} AND conv = ? UNION SELECT ${columns('t.')} ${changedTargets} AND t.conv = ? ORDER BY at, seq`);
    this.#touchedConversations = db.prepare(`SELECT conv ${newEvents} UNION SELECT t.conv ${changedTargets}`);
    this.#days = db.prepare(
      `SELECT DISTINCT substr(at, 1, 10) AS day FROM records WHERE conv = ? AND at >= ? AND at < ?
       AND (kind NOT IN ('edit', 'delete', 'reaction', 'receipt') OR target_seq IS NULL) ORDER BY day`,
    );
    this.#modifiers = db.prepare('SELECT stream, seq, hash, body_at, body_bytes, modified FROM records INDEXED BY by_target WHERE stream = ? AND target_seq = ? ORDER BY at, seq');
    this.#byNative = db.prepare("SELECT seq FROM records INDEXED BY by_native WHERE stream = ? AND native = ? AND kind = 'message' ORDER BY seq LIMIT 1");
    this.#byNativeId = db.prepare("SELECT seq FROM records INDEXED BY by_native_id WHERE conv = ? AND native_id = ? AND kind = 'message' ORDER BY seq LIMIT 1");
    this.#custodian = db.prepare(
      `SELECT outbound_sender FROM records INDEXED BY by_outbound WHERE conv = ? AND outbound_sender IS NOT NULL
       AND (kind NOT IN ('edit', 'delete', 'reaction', 'receipt') OR target_seq IS NULL) ORDER BY at, seq LIMIT 1`,
    );
    this.#streamRecords = db.prepare('SELECT stream, seq, hash, body_at, body_bytes, modified FROM records INDEXED BY by_seq WHERE stream = ? ORDER BY seq');
  }

  /**
   * Reads `streams` of `sink` into a new index file (0600) in `dir` (the export's private
   * working directory, see export-temp-dir.ts), up to each
   * stream's verified head and checked against it: every record must continue the hash chain
   * (its `seq` next, its `prev` the hash of the record before) and the last one must be the
   * verified head. The archive can change between verification and this read; a chain that ends
   * in the verified head's hash is, by SHA-256, the very chain that was verified. Records
   * appended after verification (a live archive) are not read.
   *
   * `pruned` names the streams of a spool pruned after forwarding that verification continued
   * from their pruned prefix (`Sink.pruned`): each is read from the record after it, its chain
   * continuing the prefix's hash. Any other stream whose first records are gone is refused.
   */
  static async build(sink: Sink, heads: ReadonlyMap<string, StreamHead>, dir: string, onProgress?: (done: number) => void, limits: IndexLimits = {}, pruned: ReadonlySet<string> = new Set()): Promise<ArchiveIndex> {
    const file = path.join(dir, 'index.sqlite');
    await (await open(file, 'wx', 0o600)).close();
    let db: DatabaseSync;
    try {
      db = working(file, () => new DatabaseSync(file));
    } catch (error) {
      await rm(file, { force: true });
      throw error;
    }
    // Every statement on the working index: its SQLite failures are the output's (see `working`).
    const exec = (sql: string): void => {
      working(file, () => {
        db.exec(sql);
      });
    };
    let bodies: RecordBodies | undefined;
    try {
      const store = RecordBodies.create(path.join(dir, 'records.bin'));
      bodies = store;
      // 16 KiB pages: a third less CPU building the index than 4 KiB pages (measured when rows held the record text).
      exec(`PRAGMA page_size = 16384; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
        CREATE TABLE records (stream TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, kind TEXT NOT NULL,
          conv TEXT NOT NULL, at TEXT NOT NULL, native TEXT, native_id TEXT, target TEXT, target_id TEXT,
          target_seq INTEGER, outbound_sender TEXT, body_at INTEGER NOT NULL, body_bytes INTEGER NOT NULL, modified INTEGER,
          PRIMARY KEY (conv, at, seq)) WITHOUT ROWID;`);
      if (limits.maxPages !== undefined) exec(`PRAGMA max_page_count = ${Math.trunc(limits.maxPages)}`);
      const insert = working(file, () => db.prepare('INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL)'));
      let done = 0;
      for (const [stream, head] of heads) {
        exec('BEGIN');
        // Read now, not taken from verification: a prune since then moved it (a suffix of the verified chain remains).
        const start = pruned.has(stream) ? await sink.pruned?.(stream) : undefined;
        let last: StreamHead = start ?? { seq: 0, hash: ZERO_HASH };
        const add = (seq: number, bytes: Uint8Array): void => {
          const { record, hash } = decodeStoredRecord(stream, seq, bytes);
          if (record.stream !== stream || record.seq !== last.seq + 1 || seq !== record.seq || record.prev !== last.hash) throw changed(stream, last.seq + 1);
          last = { seq: record.seq, hash };
          const conv = conversationKey(record);
          const at = store.append(bytes, conv);
          try {
            insert.run(
              stream,
              record.seq,
              hash,
              record.kind,
              conv,
              sortableTime(record.sentAt ?? record.capturedAt),
              record.native ? canonicalize(record.native) : null,
              record.native?.id ?? null,
              record.target ? canonicalize(record.target) : null,
              record.target?.id ?? null,
              record.direction === 'outbound' && record.sender ? record.sender.id : null,
              at,
              bytes.byteLength,
            );
          } catch (error) {
            // The working index's file system failed (full, I/O error): not the archive's fault.
            if (isWorkingFileError(error)) throw outputFailed(file, error);
            // Fields that are not what a verified record holds: the bytes changed since verification.
            throw invalid(stream, record.seq, error);
          }
          if (++done % 10_000 === 0) onProgress?.(done);
        };
        await readStoredRecords(sink, stream, head.seq, add, start?.seq ?? 0);
        if (last.seq !== head.seq || last.hash !== head.hash) throw changed(stream, Math.min(last.seq + 1, head.seq));
        exec('COMMIT');
      }
      store.finish();
      onProgress?.(done);
      // Full (not partial) indexes, named in the queries: SQLite does not use a partial index for
      // a comparison with a bound parameter, and would otherwise scan (quadratic export time).
      exec(`CREATE UNIQUE INDEX by_seq ON records (stream, seq);
        CREATE INDEX by_native ON records (stream, native, seq);
        CREATE INDEX by_native_id ON records (conv, native_id, seq);
        CREATE INDEX by_outbound ON records (conv, at, seq) WHERE outbound_sender IS NOT NULL;`);
      // A modifier's target is the original's native ref; fall back to the bare id within the
      // conversation for connectors whose target carries fewer scope members than the native.
      // Targets are then marked `modified`, so the exporters look modifiers up only for them.
      exec(`UPDATE records SET target_seq = (SELECT r.seq FROM records r INDEXED BY by_native WHERE r.stream = records.stream
          AND r.native = records.target AND r.kind = 'message' ORDER BY r.seq LIMIT 1)
        WHERE kind IN (${MODIFIER_KINDS.map((kind) => `'${kind}'`).join(', ')}) AND target IS NOT NULL;
        UPDATE records SET target_seq = (SELECT r.seq FROM records r INDEXED BY by_native_id WHERE r.conv = records.conv
          AND r.native_id = records.target_id AND r.kind = 'message' ORDER BY r.seq LIMIT 1)
        WHERE kind IN (${MODIFIER_KINDS.map((kind) => `'${kind}'`).join(', ')}) AND target IS NOT NULL AND target_seq IS NULL;
        CREATE INDEX by_target ON records (stream, target_seq, at, seq);
        UPDATE records SET modified = 1 WHERE (stream, seq) IN (SELECT stream, target_seq FROM records INDEXED BY by_target
          WHERE target_seq IS NOT NULL) AND kind = 'message';`);
      return new ArchiveIndex(db, file, store);
    } catch (error) {
      db.close();
      await bodies?.remove();
      await rm(file, { force: true });
      throw error;
    }
  }

  /** A kept index over `db` (see kept-index.ts): the same look-ups, its record bytes in `bodies`. */
  static kept(db: DatabaseSync, file: string, bodies: BodyReader): ArchiveIndex {
    return new ArchiveIndex(db, file, bodies, true);
  }

  /**
   * A kept index's parties of a conversation (id and name, in order of first appearance), as
   * `conversationParties` collects them without a time range; undefined for an export's own
   * index (which collects them from the records).
   */
  keptParties(conversation: string): Party[] | undefined {
    if (!this.#kept) return undefined;
    const rows = this.#db.prepare('SELECT id, name FROM parties INDEXED BY parties_order WHERE conv = ? ORDER BY first_pos').all(conversation) as { id: string; name: string | null }[];
    return rows.map((row) => (row.name === null ? { id: row.id } : { id: row.id, name: row.name }));
  }

  /** Every conversation, ordered by stream then first event time. */
  conversations(): ConversationSummary[] {
    const query = this.#kept
      ? 'SELECT conv, stream, records, first_at AS firstAt, last_at AS lastAt, last_seq AS lastSeq, type, title FROM convs ORDER BY stream, firstAt, conv'
      : 'SELECT conv, stream, COUNT(*) AS records, MIN(at) AS firstAt, MAX(at) AS lastAt, MAX(seq) AS lastSeq FROM records GROUP BY conv ORDER BY stream, firstAt, conv';
    const rows = this.#db.prepare(query).all() as { conv: string; stream: string; records: number; firstAt: string; lastAt: string; lastSeq: number; type?: 'direct' | 'group' | 'channel' | null; title?: string | null }[];
    return rows.map((row) => {
      const id = row.conv.slice(row.stream.length + 1);
      // Every record of a conversation with an id names it: the newest one has its newest title
      // (a kept index keeps them per conversation: no record is read).
      const kept = { ...(row.type ? { type: row.type } : {}), ...(row.title === null || row.title === undefined ? {} : { title: row.title }) };
      const conversation = id === '' ? undefined : this.#kept ? kept : this.get(row.stream, row.lastSeq)?.record.conversation;
      return {
        key: row.conv,
        stream: row.stream,
        id: id === '' ? undefined : id,
        type: conversation?.type,
        title: conversation?.title,
        records: row.records,
        firstAt: row.firstAt,
        lastAt: row.lastAt,
      };
    });
  }

  /**
   * The conversation's events in time order: every record except modifiers whose target was
   * found (those are returned by {@link modifiersOf}). `from` inclusive, `to` exclusive, as
   * {@link sortableTime} strings.
   */
  *events(conversation: string, from = '', to = '\uffff'): Generator<IndexedRecord> {
    for (const row of this.#events.iterate(conversation, from, to)) yield this.#toIndexed(row);
  }

  /**
   * The UTC days (`YYYY-MM-DD`) that hold an event of {@link events}, ascending: from the index
   * rows alone (the day is the start of the sortable time), no record read.
   */
  eventDays(conversation: string, from = '', to = '\uffff'): string[] {
    return (this.#days.all(conversation, from, to) as { day: string }[]).map((row) => row.day);
  }

  /**
   * The events of {@link events} that a record from `fromSeq` on makes or changes: those from
   * that seq on, and the messages whose edits, deletions, reactions or receipts include one.
   */
  *touchedEvents(stream: string, conversation: string, fromSeq: number): Generator<IndexedRecord> {
    for (const row of this.#touched.iterate(stream, fromSeq, conversation, stream, fromSeq, conversation)) yield this.#toIndexed(row);
  }

  /** The conversations (index keys) of {@link touchedEvents}: those a record of `stream` from `fromSeq` on makes or changes. */
  touchedConversations(stream: string, fromSeq: number): Set<string> {
    return new Set((this.#touchedConversations.all(stream, fromSeq, stream, fromSeq) as { conv: string }[]).map((row) => row.conv));
  }

  /**
   * Edits, deletes, reactions and receipts whose target is `entry`, in time order. Looked up
   * only for a record marked {@link IndexedRecord.modified} (most are not: no query for them).
   */
  modifiersOf(entry: IndexedRecord): IndexedRecord[] {
    if (!entry.modified) return [];
    return this.#modifiers.all(entry.stream, entry.seq).map((row) => this.#toIndexed(row));
  }

  /** The message record a ref (reply, quote, target) names, if it is in the archive. */
  resolve(stream: string, conversation: string, ref: NativeRef): number | undefined {
    const exact = this.#byNative.get(stream, canonicalize(ref)) as { seq: number } | undefined;
    if (exact) return exact.seq;
    const byId = this.#byNativeId.get(conversation, ref.id) as { seq: number } | undefined;
    return byId ? byId.seq : undefined;
  }

  /** The sender id of the conversation's first outbound event (as {@link events} orders them), if any. */
  firstOutboundSender(conversation: string): string | undefined {
    const row = this.#custodian.get(conversation) as { outbound_sender: string } | undefined;
    return row?.outbound_sender;
  }

  get(stream: string, seq: number): IndexedRecord | undefined {
    const row = this.#byKey.get(stream, seq);
    return row ? this.#toIndexed(row) : undefined;
  }

  /** All records of `stream` in seq order. */
  *streamRecords(stream: string): Generator<IndexedRecord> {
    for (const row of this.#streamRecords.iterate(stream)) yield this.#toIndexed(row);
  }

  /** Closes and deletes the index (a kept index is only closed). */
  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
    if (this.#kept) return;
    await this.#bodies.remove();
    await rm(this.#file, { force: true });
  }

  #toIndexed(row: Record<string, unknown>): IndexedRecord {
    const text = this.#bodies.read(Number(row.body_at), Number(row.body_bytes), row.hash as string);
    return { stream: row.stream as string, seq: Number(row.seq), hash: row.hash as string, record: JSON.parse(text) as ArchiveRecord, text, modified: row.modified === 1 };
  }
}

/** Limits of the working index. */
export interface IndexLimits {
  /**
   * The most pages (16 KiB each) the working index may grow to; SQLite then fails with
   * SQLITE_FULL, exactly as on a full file system. For tests; default: no limit.
   */
  readonly maxPages?: number;
}

/**
 * SQLite result codes (primary, the low byte of the extended code) that say a record is not
 * what a verified record holds: a constraint (NOT NULL, UNIQUE), a type mismatch, a value too
 * big or out of range. Every other SQLite failure is the working index's own (its file system
 * is full, an I/O error, it cannot be opened): an output problem, not an archive that changed.
 */
const RECORD_RESULT_CODES = new Set([18 /* TOOBIG */, 19 /* CONSTRAINT */, 20 /* MISMATCH */, 25 /* RANGE */]);

function isWorkingFileError(error: unknown): boolean {
  const { code, errcode } = error as { code?: unknown; errcode?: unknown };
  return code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' && !RECORD_RESULT_CODES.has(errcode & 0xff);
}

/** Runs one step on the working index; an SQLite failure of it is an `EXPORT_OUTPUT`. */
function working<T>(file: string, step: () => T): T {
  try {
    return step();
  } catch (error) {
    if (isWorkingFileError(error)) throw outputFailed(file, error);
    throw error;
  }
}

function outputFailed(file: string, error: unknown): ExportError {
  const { errcode, errstr } = error as { errcode?: unknown; errstr?: unknown };
  const code = typeof errcode === 'number' ? errcode & 0xff : undefined;
  const what = typeof errstr === 'string' ? errstr : 'an SQLite error';
  const next = code === 13 /* FULL */ ? 'make room on the file system of --out (the working files sit beside it) or choose an --out on a larger one' : 'check that the file system of --out (the working files sit beside it) is writable, healthy and has room';
  return new ExportError('EXPORT_OUTPUT', `the export's working index ${file} failed (${what}); nothing was exported. ${next}, then export again`, { cause: error });
}

export function changed(stream: string, seq: number): ExportError {
  return new ExportError('EXPORT_UNVERIFIED', `stream ${stream} changed between verification and export (detected at seq ${seq}); nothing was exported. Run offchannel verify, then export again`);
}

/**
 * A stored record's fields and SHA-256. Parsing is all that is needed: verification validated
 * every record (canonical form, schema), and the chain checked here, ending in the verified
 * head, proves by SHA-256 that these are the very bytes it validated — any other bytes stop
 * the build before anything is exported.
 */
export function decodeStoredRecord(stream: string, seq: number, bytes: Uint8Array): { record: ArchiveRecord; hash: string } {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch (error) {
    throw invalid(stream, seq, error);
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) throw invalid(stream, seq);
  return { record: record as ArchiveRecord, hash: sha256Hex(bytes) };
}

/**
 * Calls `add` with each stored record of `stream` up to seq `through`, in order: whatever is
 * stored (`add` checks it against the verified chain). Through the sink's bulk read when it has
 * one (whole segments in large pieces, split into lines here: no async step per record), else
 * record by record; a stream whose first records were pruned is read record by record, from
 * the record after `prunedThrough` (0: from the first, so the sink's own error says they are gone).
 */
async function readStoredRecords(sink: Sink, stream: string, through: number, add: (seq: number, bytes: Uint8Array) => void, prunedThrough: number): Promise<void> {
  if (prunedThrough === 0 && sink.readSegments && (await sink.pruned?.(stream)) === undefined) {
    let first = true;
    for await (const piece of sink.readSegments(stream)) {
      if (first && piece.firstSeq !== 1) break;
      first = false;
      if (splitRecords(piece.firstSeq, piece.bytes, through, add)) return;
    }
    if (!first) return;
  }
  for await (const stored of sink.read(stream, { fromSeq: prunedThrough + 1 })) {
    if (stored.seq > through) return;
    add(stored.seq, stored.bytes);
  }
}

/**
 * Calls `add` with each record of a bulk-read piece (records each followed by a newline; a
 * damaged last one may lack it: passed on as it is, for `add` to reject). True once past `through`.
 */
function splitRecords(firstSeq: number, bytes: Uint8Array, through: number, add: (seq: number, bytes: Uint8Array) => void): boolean {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let seq = firstSeq;
  for (let start = 0; start < data.length; seq++) {
    if (seq > through) return true;
    const newline = data.indexOf(0x0a, start);
    const end = newline === -1 ? data.length : newline;
    add(seq, data.subarray(start, end));
    start = end + 1;
  }
  return seq > through;
}

function invalid(stream: string, seq: number, cause?: unknown): ExportError {
  return new ExportError('EXPORT_UNVERIFIED', `stream ${stream} changed between verification and export (seq ${seq} is no longer a valid record); nothing was exported. Run offchannel verify`, cause === undefined ? undefined : { cause });
}

/** The index key of a record's conversation: `<stream>|<id>`, or `<stream>|` when it has none. */
export function conversationKey(record: ArchiveRecord): string {
  return `${record.stream}|${record.conversation?.id ?? ''}`;
}
