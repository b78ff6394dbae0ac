import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync, StatementSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChatDbError } from '../errors.ts';
import { chatDbSchemaSql } from '../testing/chat-db-schema.ts';
import { mapChatDbEvent } from '../map-chat-db-row.ts';
import { decodeRawRow, encodeRawRow } from '../raw-row.ts';
import { ChatDbWriter } from '../testing/chat-db-writer.ts';
import { ChatDb, type RowBundle, type SqlRow } from './chat-db.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-chatdb-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ChatDb', () => {
  it('explains a missing or unreadable chat.db (Full Disk Access)', () => {
    expect(() => ChatDb.open(path.join(dir, 'missing.db'))).toThrow(ChatDbError);
    expect(() => ChatDb.open(path.join(dir, 'missing.db'))).toThrow(/Full Disk Access/);
  });

  it('refuses a database that is not Messages', async () => {
    const file = path.join(dir, 'other.db');
    new DatabaseSync(file).exec('CREATE TABLE t (x)');
    expect(() => ChatDb.open(file)).toThrow(/not a Messages database/);
    await writeFile(path.join(dir, 'garbage.db'), 'not sqlite at all, not sqlite at all, not sqlite');
    expect(() => ChatDb.open(path.join(dir, 'garbage.db'))).toThrow(ChatDbError);
  });

  it('reads WAL commits of another connection, as BigInt, without writing to the file', async () => {
    const file = path.join(dir, 'chat.db');
    const writer = new DatabaseSync(file);
    writer.exec(chatDbSchemaSql('macos26'));
    const before = await stat(file);
    const db = ChatDb.open(file);
    const version = db.dataVersion();
    writer.prepare("INSERT INTO message (guid, date) VALUES ('G1', 785000000123456789)").run();
    expect(db.dataVersion()).not.toBe(version);
    const [row] = db.rowsAfter(0n, 10);
    expect(row?.['date']).toBe(785000000123456789n);
    expect(db.has('date_edited')).toBe(true);
    expect(db.has('sr_ck_sync_state')).toBe(false);
    db.close();
    writer.close();
    expect((await stat(file)).ino).toBe(before.ino);
  });
});

describe('ChatDb.readBatch', () => {
  it('reads a message table that does not declare its ROWID (the implicit rowid), under the name ROWID', () => {
    const file = path.join(dir, 'undeclared.db');
    const writer = new DatabaseSync(file);
    writer.exec(chatDbSchemaSql('macos26'));
    writer.exec('PRAGMA foreign_keys = OFF; DROP TABLE message; CREATE TABLE message (guid TEXT, date INTEGER, is_from_me INTEGER, handle_id INTEGER, text TEXT)');
    writer.exec("INSERT INTO message VALUES ('G1', 1, 0, 0, 'one'), ('G2', 2, 1, 0, 'two')");
    writer.close();
    const db = ChatDb.open(file);
    try {
      const { bundles } = db.readBatch(0n, 10);
      expect(bundles.map((bundle) => [bundle.message['ROWID'], bundle.message['guid']])).toEqual([[1n, 'G1'], [2n, 'G2']]);
      expect(Object.keys(bundles[0]?.message ?? {})).toEqual(['ROWID', 'guid', 'date', 'is_from_me', 'handle_id', 'text']);
      expect(db.bundle(2n)?.message['guid']).toBe('G2');
    } finally {
      db.close();
    }
  });

  /**
   * A chat.db written by the fixtures' writer, then given what real and damaged databases hold:
   * messages in several chats (and joins to chats that are gone), 0, 1 and many attachments
   * (joined out of ROWID order, one shared by two messages, one join to a deleted attachment),
   * handle_id 0, handles that are gone, and other_handle set.
   */
  function buildChatDb(file: string): void {
    const db = new DatabaseSync(file);
    db.exec(chatDbSchemaSql('macos26'));
    const writer = new ChatDbWriter(db, 'me@firm.example', path.join(dir, 'Attachments'));
    const group = writer.apply({ op: 'group', name: 'Desk', members: ['+15550100', '+15550101'] }).chat as string;
    for (let i = 0; i < 40; i++) {
      const peer = `+1555010${i % 4}`;
      if (i % 5 === 0) writer.apply({ op: 'message', fromMe: true, chat: group, text: `to the desk ${i}` });
      else if (i % 7 === 0) writer.apply({ op: 'message', fromMe: false, peer, text: `file ${i}`, attachment: { name: `f${i}.pdf`, mime: 'application/pdf' } });
      else writer.apply({ op: 'message', fromMe: i % 3 === 0, peer, text: `hello ${i}`, bodyOnly: i % 2 === 0 });
    }
    db.exec('PRAGMA foreign_keys = OFF'); // damage the references, as a hand-edited or half-synced database has them
    const run = (sql: string, ...params: (number | bigint | string)[]): void => void db.prepare(sql).run(...params);
    const chats = db.prepare('SELECT ROWID AS r FROM chat ORDER BY ROWID').all().map((row) => Number(row['r']));
    run('INSERT INTO chat_message_join (chat_id, message_id) VALUES (?, 3), (?, 3)', chats.at(-1) as number, chats[0] as number); // several chats: the lowest ROWID wins
    run('INSERT INTO chat_message_join (chat_id, message_id) VALUES (900, 4), (1, 4)'); // one gone (900)
    run('DELETE FROM chat_message_join WHERE message_id IN (5, 6)');
    run('INSERT INTO chat_message_join (chat_id, message_id) VALUES (901, 6)'); // only a gone chat
    run('UPDATE message SET handle_id = 777 WHERE ROWID IN (7, 8)'); // handles that are gone
    run('UPDATE message SET other_handle = 1 WHERE ROWID IN (9, 30)');
    run('UPDATE message SET other_handle = 778 WHERE ROWID = 10');
    for (let a = 0; a < 4; a++) run("INSERT INTO attachment (guid, original_guid, mime_type, transfer_state) VALUES (?, ?, 'image/png', 5)", `EXTRA-${a}`, `EXTRA-${a}`);
    const extra = db.prepare("SELECT ROWID AS r FROM attachment WHERE guid LIKE 'EXTRA-%' ORDER BY ROWID").all().map((row) => Number(row['r']));
    for (const rowid of [...extra].reverse()) run('INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (11, ?)', rowid); // many, joined in reverse order
    run('INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (12, ?), (12, 555), (12, ?)', extra[2] as number, extra[1] as number); // shared with 11, and one gone
    run('INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (13, 556)'); // only gone ones
    run('DELETE FROM handle WHERE ROWID = 4');
    run('DELETE FROM chat WHERE ROWID = ?', chats[1] as number);
    db.close();
  }

  it('follows a schema change made while it is open: a column added, a table rebuilt with its columns in another order', () => {
    const file = path.join(dir, 'migrating.db');
    buildChatDb(file);
    const db = ChatDb.open(file);
    const other = new DatabaseSync(file);
    try {
      const own = (query: string, rowid: number): SqlRow | undefined => {
        const statement = other.prepare(query);
        statement.setReadBigInts(true);
        return statement.get(rowid);
      };
      const withAttachment = (bundles: readonly RowBundle[]) => bundles.find((bundle) => bundle.attachments.length > 0);
      const withHandle = (bundles: readonly RowBundle[]) => bundles.find((bundle) => bundle.handle !== undefined);
      const before = db.readBatch(0n, 100).bundles;
      const attachmentRowid = Number(withAttachment(before)?.attachments[0]?.['ROWID']);
      expect(withHandle(before)).toBeDefined();
      // Messages migrates: attachment gains columns; handle is rebuilt with its columns reversed.
      other.exec("ALTER TABLE attachment ADD COLUMN migrated_flag INTEGER DEFAULT 7; ALTER TABLE attachment ADD COLUMN note TEXT DEFAULT 'n'");
      const columns = other.prepare('PRAGMA table_info(handle)').all().map((row) => String(row['name']));
      const reversed = [...columns].reverse().map((name) => `"${name}"`).join(', ');
      other.exec(`PRAGMA foreign_keys = OFF; CREATE TABLE handle_new AS SELECT ${reversed} FROM handle; DROP TABLE handle; ALTER TABLE handle_new RENAME TO handle`);
      const afterBatch = db.readBatch(0n, 100).bundles;
      const attachment = withAttachment(afterBatch)?.attachments.find((row) => Number(row['ROWID']) === attachmentRowid);
      expect(attachment).toEqual({ ...own('SELECT * FROM attachment WHERE ROWID = ?', attachmentRowid) });
      expect(attachment?.['migrated_flag']).toBe(7n);
      const after = withHandle(afterBatch);
      const handleRowid = Number(after?.handle?.['ROWID']);
      expect(Object.keys(after?.handle ?? {})).toEqual([...columns].reverse());
      expect(after?.handle).toEqual({ ...own('SELECT * FROM handle WHERE ROWID = ?', handleRowid) });
      // The per-row path outside a batch too.
      expect(db.handle(BigInt(handleRowid))).toEqual(after?.handle);
      // The message table itself gains a column; then a joined table changes and is read first.
      other.exec("ALTER TABLE message ADD COLUMN migrated_note TEXT DEFAULT 'm'");
      const message = db.readBatch(0n, 1).bundles[0]?.message;
      expect(Object.keys(message ?? {}).at(-1)).toBe('migrated_note');
      expect(message?.['migrated_note']).toBe('m');
      expect(db.has('migrated_note')).toBe(true);
      other.exec("ALTER TABLE handle ADD COLUMN late TEXT DEFAULT 'h'");
      expect(db.handle(BigInt(handleRowid))?.['late']).toBe('h');
      expect(db.bundle(message?.['ROWID'] as bigint)?.message['migrated_note']).toBe('m');
      // A column the relay needs is gone: a typed error, and the read transaction is ended.
      other.exec('ALTER TABLE message DROP COLUMN is_from_me');
      expect(() => db.readBatch(0n, 1)).toThrow(expect.objectContaining({ code: 'CHAT_DB_UNSUPPORTED' }));
      other.exec('ALTER TABLE message ADD COLUMN is_from_me INTEGER DEFAULT 0');
      expect(db.readBatch(0n, 1).bundles).toHaveLength(1);
    } finally {
      other.close();
      db.close();
    }
  });

  it('reads per batch exactly the joined rows that the per-row queries read, at any cursor and batch size', () => {
    const file = path.join(dir, 'chat.db');
    buildChatDb(file);
    const db = ChatDb.open(file);
    // The joined rows are node:sqlite's own, key for key and byte for byte (ChatDb builds its own objects of them).
    const native = new DatabaseSync(file, { readOnly: true });
    const sameAsNative = (row: SqlRow | undefined, table: string): void => {
      const select = native.prepare(`SELECT * FROM ${table} WHERE ROWID = ?`);
      select.setReadBigInts(true);
      const want = select.get(row?.['ROWID'] as bigint) as SqlRow;
      expect(Object.keys(row ?? {}), table).toEqual(Object.keys(want));
      expect({ ...row }, table).toEqual({ ...want });
      expect(Buffer.from(encodeRawRow({ message: row as SqlRow, attachments: [] })).equals(Buffer.from(encodeRawRow({ message: want, attachments: [] }))), table).toBe(true);
    };
    const max = db.maxRowId();
    const seen = { chats: 0, noChat: 0, handles: 0, noHandle: 0, other: 0, attachments: new Set<number>() };
    for (const limit of [1, 3, 7, 200]) {
      for (const start of [0n, 2n, 10n]) {
        let cursor = start;
        let read = 0;
        for (;;) {
          const { bundles, fingerprints } = db.readBatch(cursor, limit);
          for (const bundle of bundles) {
            const rowid = bundle.message['ROWID'] as bigint;
            const single = db.bundle(rowid);
            expect(bundle).toStrictEqual(single);
            expect(Object.keys(bundle)).toEqual(Object.keys(single ?? {}));
            expect(Buffer.from(encodeRawRow(bundle))).toEqual(Buffer.from(encodeRawRow(single as RowBundle)));
            expect(fingerprints.has(String(bundle.message['guid']))).toBe(true);
            if (bundle.handle) sameAsNative(bundle.handle, 'handle');
            if (bundle.otherHandle) sameAsNative(bundle.otherHandle, 'handle');
            if (bundle.chat) sameAsNative(bundle.chat, 'chat');
            for (const attachment of bundle.attachments) sameAsNative(attachment, 'attachment');
            seen[bundle.chat ? 'chats' : 'noChat']++;
            seen[bundle.handle ? 'handles' : 'noHandle']++;
            if (bundle.otherHandle) seen.other++;
            seen.attachments.add(bundle.attachments.length);
          }
          read += bundles.length;
          if (bundles.length < limit) break;
          cursor = bundles.at(-1)?.message['ROWID'] as bigint;
        }
        expect(BigInt(read)).toBe(max - start);
      }
    }
    // The damaged cases above were all read: without a chat, without a handle, with 0, 1, many attachments.
    expect(seen.noChat).toBeGreaterThan(0);
    expect(seen.noHandle).toBeGreaterThan(0);
    expect(seen.other).toBeGreaterThan(0);
    expect([...seen.attachments].sort()).toEqual([0, 1, 2, 4]);
    expect(db.readBatch(max, 10).bundles).toEqual([]);
    native.close();
    db.close();
  });
});

describe('ChatDb message rows', () => {
  const OTHER_TABLES = [
    'CREATE TABLE handle (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, uncanonicalized_id TEXT)',
    'CREATE TABLE chat (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT, style INTEGER, display_name TEXT)',
    'CREATE TABLE chat_message_join (chat_id INTEGER, message_id INTEGER)',
    'CREATE TABLE chat_handle_join (chat_id INTEGER, handle_id INTEGER)',
    'CREATE TABLE attachment (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT, transfer_state INTEGER)',
    'CREATE TABLE message_attachment_join (message_id INTEGER, attachment_id INTEGER)',
  ].join(';');
  const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;
  /** Message tables as no Mac writes them: the required columns alone, reordered among odd names, far wider than any schema. */
  const TABLES: Record<string, string[]> = {
    minimal: ['ROWID INTEGER PRIMARY KEY AUTOINCREMENT', 'guid TEXT', 'date INTEGER', 'is_from_me INTEGER', 'handle_id INTEGER'],
    // ROWID amid the others; names that are array indexes, Object.prototype members, quotes, non-ASCII, empty.
    reordered: ['date_edited INTEGER', '"42" TEXT', 'text TEXT', '"__proto__" TEXT', 'ROWID INTEGER PRIMARY KEY', 'guid TEXT', '"toString" TEXT', '"1" INTEGER', 'handle_id INTEGER', '"we""ird" BLOB', '"ü ß" TEXT', '"" TEXT', 'date INTEGER', 'is_from_me INTEGER', 'attributedBody BLOB', 'constructor TEXT', '"4294967295" TEXT', '"-1" TEXT', '"01" TEXT'],
    wide: ['ROWID INTEGER PRIMARY KEY', 'guid TEXT', 'date INTEGER', 'is_from_me INTEGER', 'handle_id INTEGER', 'text TEXT', ...Array.from({ length: 1500 }, (_, i) => `c${i} INTEGER`)],
  };

  function build(file: string, columns: string[]): string[] {
    const db = new DatabaseSync(file);
    db.exec(`CREATE TABLE message (${columns.join(', ')}); ${OTHER_TABLES}`);
    const names = db.prepare('PRAGMA table_info(message)').all().map((row) => String(row['name']));
    // Every type in every column, the wrong ones included: a BLOB guid, a TEXT date, a REAL flag, huge values.
    const values: unknown[][] = [
      [null, 0, 1, -1, 'x'],
      ['G1', 785000000123456789n, 0.5, 9223372036854775807n, -9223372036854775808n],
      [new Uint8Array([0, 255, 1]), 'not a date', -2.5e-300, '𝄞 ', 'x'.repeat(300)],
      [], // and one huge value: 1 MiB in the first column that is not ROWID
    ];
    for (const row of values) {
      const huge = names.find((name) => name !== 'ROWID');
      const cells = names.map((name, i) => (name === 'ROWID' ? null : row.length === 0 ? (name === huge ? 'x'.repeat(1 << 20) : null) : row[i % row.length]));
      db.prepare(`INSERT INTO message (${names.map(quote).join(', ')}) VALUES (${names.map(() => '?').join(', ')})`).run(...(cells as (null | bigint | number | string | Uint8Array)[]));
    }
    db.close();
    return names;
  }

  it('are node:sqlite’s own rows column for column: same keys in the same order, same values, same raw bytes, same records', { timeout: 60_000 }, () => {
    for (const [variant, columns] of Object.entries(TABLES)) check(variant, columns, true);
  });

  it('are the same rows on a Node without StatementSync.setReturnArrays (22.13–22.15)', { timeout: 60_000 }, () => {
    const saved = Object.getOwnPropertyDescriptor(StatementSync.prototype, 'setReturnArrays') as PropertyDescriptor;
    Object.defineProperty(StatementSync.prototype, 'setReturnArrays', { value: undefined, configurable: true });
    try {
      check('reordered', TABLES['reordered'] as string[], false);
    } finally {
      Object.defineProperty(StatementSync.prototype, 'setReturnArrays', saved);
    }
  });

  /** `arrays`: whether ChatDb builds the rows itself (Object.prototype) or hands on node:sqlite's (null prototype). */
  function check(variant: string, columns: string[], arrays: boolean): void {
    {
      const file = path.join(dir, `${variant}.db`);
      const names = build(file, columns);
      // What node:sqlite itself returns for the relay's SELECT (its row objects, not arrays).
      const native = new DatabaseSync(file, { readOnly: true });
      const select = native.prepare(`SELECT ${[...new Set(['ROWID', ...names])].map(quote).join(', ')} FROM message ORDER BY ROWID`);
      select.setReadBigInts(true);
      const expected = select.all();
      native.close();
      const db = ChatDb.open(file);
      const batch = db.readBatch(0n, 10).bundles;
      expect(batch.map((bundle) => bundle.message), variant).toEqual(db.rowsAfter(0n, 10));
      expect(batch).toHaveLength(4);
      expect(Object.getPrototypeOf(batch[0]?.message)).toBe(arrays ? Object.prototype : null);
      for (const [index, bundle] of batch.entries()) {
        const want = expected[index] as SqlRow;
        const rows = [bundle.message, db.bundle(want['ROWID'] as bigint)?.message as SqlRow];
        for (const row of rows) {
          expect(Object.keys(row), variant).toEqual(Object.keys(want));
          for (const key of Object.keys(want)) expect(row[key], `${variant} ${key}`).toEqual(want[key]);
          const bytes = encodeRawRow({ message: row, attachments: [] });
          expect(Buffer.from(bytes).equals(Buffer.from(encodeRawRow({ message: want, attachments: [] }))), variant).toBe(true);
          // The records the relay makes of it are the ones an auditor re-derives from its raw bytes.
          const context = { self: 'me@firm.example', files: new Map() };
          const records = mapChatDbEvent({ type: 'row', bundle: { message: row, attachments: [] } }, context);
          expect(records.length).toBeGreaterThan(0);
          expect(records).toEqual(mapChatDbEvent({ type: 'row', bundle: decodeRawRow(bytes) }, context));
        }
      }
      db.close();
    }
  }
});
