import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChatDbError } from '../errors.ts';
import { chatDbSchemaSql } from '../testing/chat-db-schema.ts';
import { ChatDb } from './chat-db.ts';

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
