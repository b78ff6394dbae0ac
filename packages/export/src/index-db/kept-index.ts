/**
 * A working index kept between exports of one archive (for `@offchannel/delivery`, whose pass
 * every few seconds exports only what is new): the same table and look-ups as the export's
 * temporary index (archive-index.ts), in one SQLite file that each export extends with the
 * records after the ones it holds — so a pass reads what is new, not the stream from seq 1.
 *
 * Why it can be trusted: each stream's rows end in a head (seq and hash) kept with them, in the
 * same transaction. Extending reads from the record after that head; the first one must name
 * the head's hash as `prev` and the last one must be the verified head, so by SHA-256 the rows
 * continue the very chain that was just verified. A head the archive contradicts (the stream is
 * shorter, or continues another chain — another archive, a rewritten record) drops the whole
 * index, which is then built again from seq 1 against the verified heads. Every record's bytes
 * are checked against its row's hash when read back. What the rows hold below the head is not
 * read again: an archive record changed there after it was indexed is found by `offchannel
 * verify`, not here (docs/delivery.md).
 *
 * Targets of edits, deletions, reactions and receipts are resolved as the temporary index does
 * (first message with the exact native ref in the stream, else with the same id in the
 * conversation), for the new modifiers and for the older ones a new message may now resolve.
 * Each conversation's parties are kept too (`countParties`), so the EML `To` list of a
 * conversation with a long history is not collected from all its records at every export.
 */
import { lstat, open as fsOpen, rm } from 'node:fs/promises';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { type Party, type Sink, type StreamHead, ZERO_HASH, canonicalize, sha256Hex } from '@offchannel/core';
import { ExportError } from '../export-error.ts';
import { ArchiveIndex, type BodyReader, MODIFIER_KINDS, changed, conversationKey, decodeStoredRecord } from './archive-index.ts';
import { sortableTime } from './sortable-time.ts';

const MODIFIERS = MODIFIER_KINDS.map((kind) => `'${kind}'`).join(', ');
/** `PRAGMA user_version` of this layout: an index of another layout is dropped and built again. */
const LAYOUT = 2;
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS records (stream TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, kind TEXT NOT NULL,
    conv TEXT NOT NULL, at TEXT NOT NULL, native TEXT, native_id TEXT, target TEXT, target_id TEXT,
    target_seq INTEGER, outbound_sender TEXT, body_at INTEGER NOT NULL, body_bytes INTEGER NOT NULL, modified INTEGER,
    PRIMARY KEY (conv, at, seq)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS heads (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS convs (conv TEXT PRIMARY KEY, stream TEXT NOT NULL, records INTEGER NOT NULL,
    first_at TEXT NOT NULL, last_at TEXT NOT NULL, last_seq INTEGER NOT NULL, type TEXT, title TEXT);
  CREATE TABLE IF NOT EXISTS parties (conv TEXT NOT NULL, id TEXT NOT NULL, first_pos TEXT NOT NULL, name TEXT, name_pos TEXT,
    PRIMARY KEY (conv, id)) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS parties_order ON parties (conv, first_pos);
  CREATE UNIQUE INDEX IF NOT EXISTS by_seq ON records (stream, seq);
  CREATE INDEX IF NOT EXISTS by_native ON records (stream, native, seq);
  CREATE INDEX IF NOT EXISTS by_native_id ON records (conv, native_id, seq);
  CREATE INDEX IF NOT EXISTS by_outbound ON records (conv, at, seq) WHERE outbound_sender IS NOT NULL;
  CREATE INDEX IF NOT EXISTS by_target ON records (stream, target_seq, at, seq);
  CREATE INDEX IF NOT EXISTS by_target_ref ON records (stream, target);
  CREATE INDEX IF NOT EXISTS by_target_id ON records (conv, target_id);`;

/**
 * Opens the kept index at `file` (created 0600 if missing) and extends it to `heads` (each
 * stream's verified head) from `sink`. A regular file only: anything else there is refused.
 */
export async function extendKeptIndex(file: string, sink: Sink, heads: ReadonlyMap<string, StreamHead>, pruned: ReadonlySet<string> = new Set()): Promise<ArchiveIndex> {
  const info = await lstat(file).catch(() => undefined);
  if (info && !info.isFile()) throw new ExportError('EXPORT_OUTPUT', `the kept working index ${file} is not a regular file; move it aside (it is rebuilt from the archive)`);
  await create(file);
  const kept = open(file);
  if (kept) {
    try {
      if (await extend(kept, file, sink, heads, pruned)) return ArchiveIndex.kept(kept.db, file, kept.bodies);
    } catch (error) {
      kept.db.close();
      throw error;
    }
    kept.db.close();
  }
  // The index holds records the archive contradicts (or is of another layout): built again, from seq 1.
  await removeKept(file);
  await create(file);
  const fresh = open(file);
  if (!fresh) throw new ExportError('EXPORT_OUTPUT', `the kept working index ${file} could not be created anew; move ${file}* aside`);
  try {
    if (await extend(fresh, file, sink, heads, pruned)) return ArchiveIndex.kept(fresh.db, file, fresh.bodies);
  } catch (error) {
    fresh.db.close();
    throw error;
  }
  fresh.db.close();
  throw new ExportError('EXPORT_UNVERIFIED', `the archive changed while its working index ${file} was rebuilt; nothing was exported. Run offchannel verify, then again`);
}

/** Creates the index file 0600 when missing (SQLite gives its `-wal` and `-shm` the same mode). */
async function create(file: string): Promise<void> {
  try {
    await (await fsOpen(file, 'wx', 0o600)).close();
  } catch (error) {
    if ((error as { code?: string }).code !== 'EEXIST') throw new ExportError('EXPORT_OUTPUT', `cannot create the kept working index ${file} (${(error as { code?: string }).code ?? 'error'}); check the directory`, { cause: error });
  }
}

/** Removes a kept index and its SQLite side files. */
export async function removeKept(file: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(`${file}${suffix}`, { force: true });
}

interface Kept {
  readonly db: DatabaseSync;
  readonly bodies: BodyReader;
}

function open(file: string): Kept | undefined {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL');
    const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
    const empty = db.prepare("SELECT COUNT(*) AS n FROM sqlite_schema WHERE type = 'table'").get() as { n: number };
    if (version !== LAYOUT && empty.n > 0) {
      db.close();
      return undefined;
    }
    db.exec(`${SCHEMA}; PRAGMA user_version = ${LAYOUT}`);
  } catch (error) {
    throw new ExportError('EXPORT_OUTPUT', `cannot open the kept working index ${file} (${(error as Error).message}); move ${file}* aside (it is rebuilt from the archive)`, { cause: error });
  }
  const read = db.prepare('SELECT bytes FROM bodies WHERE id = ?');
  const bodies: BodyReader = {
    read(address, bytes, sha256) {
      const row = read.get(address) as { bytes: Uint8Array } | undefined;
      if (!row || row.bytes.byteLength !== bytes || sha256Hex(row.bytes) !== sha256) {
        throw new ExportError('EXPORT_UNVERIFIED', `the kept working index ${file} holds a record that does not hash to its verified chain; nothing more is exported. Move ${file}* aside (it is rebuilt from the archive) and run again`);
      }
      return Buffer.from(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength).toString('utf8');
    },
    remove: () => Promise.resolve(),
  };
  return { db, bodies };
}

/**
 * Adds each stream's records after the kept head up to `heads`. False when a kept head is not on
 * the archive's chain. Of a spool that prunes (`pruned`: its streams, exported from the first
 * record it holds), the index keeps only what the spool holds: a stream whose pruned prefix
 * reaches the index's first row of it is dropped and built again from after the prefix
 * (`pruned.json`'s head, whose hash the first record held must name) — the rows it would keep
 * name records, and blobs, the spool no longer has, which a full export of the spool would not
 * know either. Edits and reactions of messages pruned before that are rendered without them, as
 * the temporary index does.
 */
async function extend({ db, bodies }: Kept, file: string, sink: Sink, heads: ReadonlyMap<string, StreamHead>, pruned: ReadonlySet<string>): Promise<boolean> {
  const headOf = db.prepare('SELECT seq, hash FROM heads WHERE stream = ?');
  const firstOf = db.prepare('SELECT MIN(seq) AS seq FROM records INDEXED BY by_seq WHERE stream = ?');
  const body = db.prepare('INSERT INTO bodies (bytes) VALUES (?)');
  const insert = db.prepare('INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL)');
  const conv = db.prepare(
    `INSERT INTO convs VALUES (?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (conv) DO UPDATE SET records = records + 1,
     first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at),
     type = CASE WHEN excluded.last_seq > last_seq THEN excluded.type ELSE type END,
     title = CASE WHEN excluded.last_seq > last_seq THEN excluded.title ELSE title END, last_seq = MAX(last_seq, excluded.last_seq)`,
  );
  const setHead = db.prepare('INSERT INTO heads VALUES (?, ?, ?) ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, hash = excluded.hash');
  for (const [stream, head] of heads) {
    let kept: StreamHead = (headOf.get(stream) as { seq: number; hash: string } | undefined) ?? { seq: 0, hash: ZERO_HASH };
    const prefix = pruned.has(stream) ? await sink.pruned?.(stream) : undefined;
    if (prefix && prefix.seq > 0 && prefix.seq >= ((firstOf.get(stream) as { seq: number | null } | undefined)?.seq ?? Number.POSITIVE_INFINITY)) {
      // The spool pruned records this index holds: their blobs may be gone, and a full export of
      // the spool would not know them. The stream's rows go, and are built again from the prefix
      // on (what the spool holds: bounded by its pruning, not by history).
      dropStream(db, stream);
      kept = { seq: 0, hash: ZERO_HASH };
    }
    if (prefix && prefix.seq > kept.seq) {
      if (kept.seq > 0) return false;
      kept = prefix;
    }
    if (kept.seq > head.seq || (kept.seq === head.seq && kept.hash !== head.hash)) return false;
    if (kept.seq === head.seq) continue;
    let last: StreamHead = kept;
    const appearing: Appearing[] = [];
    db.exec('BEGIN');
    try {
      for await (const stored of sink.read(stream, { fromSeq: kept.seq + 1 })) {
        if (stored.seq > head.seq) break;
        const { record, hash } = decodeStoredRecord(stream, stored.seq, stored.bytes);
        if (record.stream !== stream || record.seq !== last.seq + 1 || stored.seq !== record.seq) throw changed(stream, last.seq + 1);
        if (record.prev !== last.hash) {
          if (last.seq === kept.seq && kept.seq > 0) {
            db.exec('ROLLBACK');
            return false;
          }
          throw changed(stream, last.seq + 1);
        }
        last = { seq: record.seq, hash };
        const key = conversationKey(record);
        const at = sortableTime(record.sentAt ?? record.capturedAt);
        const { lastInsertRowid } = body.run(stored.bytes);
        insert.run(stream, record.seq, hash, record.kind, key, at, record.native ? canonicalize(record.native) : null, record.native?.id ?? null, record.target ? canonicalize(record.target) : null, record.target?.id ?? null, record.direction === 'outbound' && record.sender ? record.sender.id : null, lastInsertRowid, stored.bytes.byteLength);
        // The newest record of a conversation names its type and newest title (as `conversations()` reads them).
        conv.run(key, stream, at, at, record.seq, record.conversation?.type ?? null, record.conversation?.title ?? null);
        appearing.push({ seq: record.seq, conv: key, at, kind: record.kind, sender: record.sender, members: record.membership?.members ?? [] });
      }
      if (last.seq !== head.seq || last.hash !== head.hash) throw changed(stream, Math.min(last.seq + 1, head.seq));
      countParties(db, ArchiveIndex.kept(db, file, bodies), stream, appearing, resolveTargets(db, stream, kept.seq));
      setHead.run(stream, last.seq, last.hash);
      db.exec('COMMIT');
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw error;
    }
  }
  return true;
}

/** Removes every row of `stream` (its records, their bodies, its conversations and parties, its head), in one transaction. */
function dropStream(db: DatabaseSync, stream: string): void {
  db.exec('BEGIN');
  try {
    db.prepare('DELETE FROM bodies WHERE id IN (SELECT body_at FROM records INDEXED BY by_seq WHERE stream = ?)').run(stream);
    db.prepare('DELETE FROM parties WHERE conv IN (SELECT conv FROM convs WHERE stream = ?)').run(stream);
    db.prepare('DELETE FROM convs WHERE stream = ?').run(stream);
    db.prepare('DELETE FROM records WHERE stream = ?').run(stream);
    db.prepare('DELETE FROM heads WHERE stream = ?').run(stream);
    db.exec('COMMIT');
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw error;
  }
}

/**
 * Resolves the targets of the modifiers a stream's records after `after` may change: the new
 * modifiers, and the older ones that name a new message (exactly, or by id in its conversation)
 * — exactly the rows the temporary index's full resolution would give another result. Then
 * marks (or unmarks) as `modified` every message whose modifiers changed.
 */
function resolveTargets(db: DatabaseSync, stream: string, after: number): Set<string> {
  const affected = `kind IN (${MODIFIERS}) AND target IS NOT NULL AND stream = :stream AND (seq > :after
    OR target IN (SELECT native FROM records n INDEXED BY by_seq WHERE n.stream = :stream AND n.seq > :after AND n.kind = 'message')
    OR (conv, target_id) IN (SELECT conv, native_id FROM records n INDEXED BY by_seq WHERE n.stream = :stream AND n.seq > :after AND n.kind = 'message'))`;
  const run = (sql: string): StatementSync => db.prepare(sql);
  const older = run(`SELECT seq, conv, target_seq AS target FROM records WHERE ${affected} AND seq <= :after`);
  const olderBefore = older.all({ stream, after }) as { seq: number; conv: string; target: number | null }[];
  const before = run(`SELECT DISTINCT target_seq AS seq FROM records WHERE ${affected} AND target_seq IS NOT NULL`).all({ stream, after }) as { seq: number }[];
  run(`UPDATE records SET target_seq = (SELECT r.seq FROM records r INDEXED BY by_native WHERE r.stream = records.stream
      AND r.native = records.target AND r.kind = 'message' ORDER BY r.seq LIMIT 1) WHERE ${affected}`).run({ stream, after });
  run(`UPDATE records SET target_seq = (SELECT r.seq FROM records r INDEXED BY by_native_id WHERE r.conv = records.conv
      AND r.native_id = records.target_id AND r.kind = 'message' ORDER BY r.seq LIMIT 1) WHERE ${affected} AND target_seq IS NULL`).run({ stream, after });
  const now = run(`SELECT DISTINCT target_seq AS seq FROM records WHERE ${affected} AND target_seq IS NOT NULL`).all({ stream, after }) as { seq: number }[];
  const mark = run(`UPDATE records SET modified = CASE WHEN EXISTS (SELECT 1 FROM records m INDEXED BY by_target WHERE m.stream = records.stream
      AND m.target_seq = records.seq) THEN 1 ELSE NULL END WHERE stream = ? AND seq = ? AND kind = 'message'`);
  for (const { seq } of [...before, ...now]) mark.run(stream, seq);
  // An older modifier resolved anew moves its sender's appearance in the parties (from its own
  // place, or its former target's, to its new target's): those conversations are recounted.
  const convOf = run('SELECT conv FROM records INDEXED BY by_seq WHERE stream = ? AND seq = ?');
  const recount = new Set<string>();
  const targets = new Map(olderBefore.map((row) => [row.seq, row.target] as const));
  for (const row of older.all({ stream, after }) as { seq: number; conv: string; target: number | null }[]) {
    const was = targets.get(row.seq) ?? null;
    if (was === row.target) continue;
    recount.add(row.conv);
    for (const seq of [was, row.target]) if (seq !== null) recount.add((convOf.get(stream, seq) as { conv: string }).conv);
  }
  return recount;
}

/** A new record's part in its conversation's parties (see {@link countParties}). */
interface Appearing {
  readonly seq: number;
  readonly conv: string;
  readonly at: string;
  readonly kind: string;
  readonly sender: Party | undefined;
  readonly members: readonly Party[];
}

/**
 * The parties of each conversation, as the export's `conversationParties` lists them (everyone
 * who appears: senders, members, and the senders of a message's edits, deletions, reactions and
 * receipts at that message's place; first appearance first; the name of the last appearance
 * that has one), kept per conversation so that a pass does not read the conversation again:
 * each appearance has a place — its event's time and seq, then sender, members in order,
 * modifiers in time order — and a party keeps the first place it appears at and the place its
 * name was last given at. New records add appearances anywhere in that order; only an older
 * modifier resolved anew removes one, and its conversations are counted again from their rows.
 */
function countParties(db: DatabaseSync, index: ArchiveIndex, stream: string, appearing: readonly Appearing[], recount: ReadonlySet<string>): void {
  const put = db.prepare(
    `INSERT INTO parties VALUES (?, ?, ?, ?, ?) ON CONFLICT (conv, id) DO UPDATE SET first_pos = MIN(first_pos, excluded.first_pos),
     name = CASE WHEN excluded.name_pos IS NOT NULL AND (name_pos IS NULL OR excluded.name_pos > name_pos) THEN excluded.name ELSE name END,
     name_pos = CASE WHEN excluded.name_pos IS NOT NULL AND (name_pos IS NULL OR excluded.name_pos > name_pos) THEN excluded.name_pos ELSE name_pos END`,
  );
  const see = (conv: string, party: Party | undefined, place: string): void => {
    if (party) put.run(conv, party.id, place, party.name ?? null, party.name === undefined ? null : place);
  };
  const eventPlaces = (conv: string, at: string, seq: number, sender: Party | undefined, members: readonly Party[]): void => {
    see(conv, sender, place(at, seq, '0'));
    members.forEach((member, at_) => {
      see(conv, member, place(at, seq, `1${String(at_).padStart(6, '0')}`));
    });
  };
  const targetOf = db.prepare('SELECT target_seq AS target FROM records INDEXED BY by_seq WHERE stream = ? AND seq = ?');
  const row = db.prepare('SELECT conv, at FROM records INDEXED BY by_seq WHERE stream = ? AND seq = ?');
  for (const item of appearing) {
    const target = MODIFIER_KINDS.includes(item.kind as (typeof MODIFIER_KINDS)[number]) ? ((targetOf.get(stream, item.seq) as { target: number | null }).target ?? null) : null;
    if (target === null) {
      eventPlaces(item.conv, item.at, item.seq, item.sender, item.members);
      continue;
    }
    const message = row.get(stream, target) as { conv: string; at: string };
    see(message.conv, item.sender, place(message.at, target, `2${item.at}|${pad(item.seq)}`));
  }
  const clear = db.prepare('DELETE FROM parties WHERE conv = ?');
  for (const conv of recount) {
    clear.run(conv);
    for (const entry of index.events(conv)) {
      const at = sortableTime(entry.record.sentAt ?? entry.record.capturedAt);
      eventPlaces(conv, at, entry.seq, entry.record.sender, entry.record.membership?.members ?? []);
      if (entry.record.kind !== 'message') continue;
      for (const modifier of index.modifiersOf(entry)) see(conv, modifier.record.sender, place(at, entry.seq, `2${sortableTime(modifier.record.sentAt ?? modifier.record.capturedAt)}|${pad(modifier.seq)}`));
    }
  }
}

function place(at: string, seq: number, within: string): string {
  return `${at}|${pad(seq)}|${within}`;
}

function pad(seq: number): string {
  return String(seq).padStart(16, '0');
}
