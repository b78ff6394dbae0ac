import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ZERO_HASH } from '../hash/sha256.ts';
import { type KeyIndex, memoryKeyIndex, openKeyIndex } from './key-index.ts';
import { openFilesUnder } from '../testing/open-files.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-key-index-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const h = (n: number) => n.toString(16).padStart(64, '0');

for (const [name, open] of [
  ['memoryKeyIndex', () => memoryKeyIndex()],
  ['openKeyIndex', () => openKeyIndex({ file: path.join(dir, 'state', 'keys.sqlite') })],
] as const) {
  describe(name, () => {
    it('holds keys and a head per stream, first record wins, reset forgets one stream', () => {
      const index: KeyIndex = open();
      expect(index.head('demo:a')).toEqual({ seq: 0, hash: ZERO_HASH });
      index.add('demo:a', [{ key: 'k1', seq: 1 }, { key: 'k2', seq: 2 }], { seq: 2, hash: h(2) });
      index.add('demo:b', [{ key: 'k1', seq: 1 }], { seq: 1, hash: h(1) });
      index.add('demo:a', [{ key: 'k1', seq: 3 }], { seq: 3, hash: h(3) });
      expect(index.head('demo:a')).toEqual({ seq: 3, hash: h(3) });
      expect(index.get('demo:a', 'k2')).toBe(2);
      expect(index.get('demo:b', 'k2')).toBeUndefined();
      if (name === 'openKeyIndex') expect(index.get('demo:a', 'k1')).toBe(1);
      index.reset('demo:a');
      expect(index.head('demo:a')).toEqual({ seq: 0, hash: ZERO_HASH });
      expect(index.get('demo:a', 'k2')).toBeUndefined();
      expect(index.get('demo:b', 'k1')).toBe(1);
      index.close();
      index.close();
    });
  });
}

describe('openKeyIndex on disk', () => {
  it('keeps keys across reopening, in a 0600 file inside a 0700 folder', async () => {
    const file = path.join(dir, 'state', 'keys.sqlite');
    const first = openKeyIndex({ file });
    const keys = Array.from({ length: 10_000 }, (_, i) => ({ key: `message:${i}`, seq: i + 1 }));
    first.add('demo:a', keys, { seq: 10_000, hash: h(10_000) });
    first.close();
    const second = openKeyIndex({ file });
    expect(second.head('demo:a')).toEqual({ seq: 10_000, hash: h(10_000) });
    expect(second.get('demo:a', 'message:0')).toBe(1);
    expect(second.get('demo:a', 'message:9999')).toBe(10_000);
    second.close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
  });

  it('refuses a file that is not an index with a typed error saying what to do', async () => {
    const file = path.join(dir, 'not-an-index.sqlite');
    await writeFile(file, 'this is not a SQLite database, it is a text file of some length '.repeat(20));
    let error: unknown;
    try {
      openKeyIndex({ file });
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'KEY_INDEX_UNAVAILABLE' });
    expect((error as Error).message).toMatch(/delete it to have it rebuilt/);
    // Refused and closed: the file the message says to delete is not held open by this process.
    expect(await openFilesUnder(dir)).toEqual([]);
    await rm(file);
    openKeyIndex({ file }).close();
  });

  it.each([
    ['an index', 'CREATE TABLE t (x); CREATE INDEX keys ON t (x);'],
    ['tables with other columns', 'CREATE TABLE keys (x); CREATE TABLE heads (y);'],
  ])('refuses a database whose names clash with the index\'s tables (%s), and leaves it closed', async (_, schema) => {
    const file = path.join(dir, 'clash.sqlite');
    const db = new (await import('node:sqlite')).DatabaseSync(file);
    db.exec(schema);
    db.close();
    expect(() => openKeyIndex({ file })).toThrow(expect.objectContaining({ code: 'KEY_INDEX_UNAVAILABLE' }));
    expect(await openFilesUnder(dir)).toEqual([]);
  });

  it('is shared by two processes\' worth of handles, each writing its own streams', () => {
    const file = path.join(dir, 'keys.sqlite');
    const a = openKeyIndex({ file });
    const b = openKeyIndex({ file });
    a.add('demo:a', [{ key: 'x', seq: 1 }], { seq: 1, hash: h(1) });
    b.add('demo:b', [{ key: 'y', seq: 1 }], { seq: 1, hash: h(1) });
    expect(b.get('demo:a', 'x')).toBe(1);
    expect(a.get('demo:b', 'y')).toBe(1);
    a.close();
    b.close();
  });

  it('keeps the first of equal keys within one add of many rows (64 per INSERT, then one by one)', () => {
    const index = openKeyIndex({ file: path.join(dir, 'keys.sqlite') });
    // 200 rows: three full INSERTs and eight single ones; "dup" in the first INSERT, again in
    // the second and among the single rows; "late" twice among the single rows.
    const keys = Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, seq: i + 1 }));
    keys[3] = { key: 'dup', seq: 4 };
    keys[70] = { key: 'dup', seq: 71 };
    keys[195] = { key: 'dup', seq: 196 };
    keys[193] = { key: 'late', seq: 194 };
    keys[198] = { key: 'late', seq: 199 };
    index.add('demo:a', keys, { seq: 200, hash: h(200) });
    expect(index.get('demo:a', 'dup')).toBe(4);
    expect(index.get('demo:a', 'late')).toBe(194);
    expect(index.get('demo:a', 'k0')).toBe(1);
    expect(index.get('demo:a', 'k191')).toBe(192);
    expect(index.get('demo:a', 'k199')).toBe(200);
    expect(index.get('demo:a', 'k3')).toBeUndefined();
    index.close();
  });

  it('sees its own additions in the same turn as earlier look-ups, and ends its read transaction in a microtask', async () => {
    const file = path.join(dir, 'keys.sqlite');
    const index = openKeyIndex({ file });
    const other = new (await import('node:sqlite')).DatabaseSync(file);
    const checkpoint = () => other.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy: number };
    // Look-ups, then an add, then look-ups, in one turn: the read transaction never spans the write.
    expect(index.get('demo:a', 'x')).toBeUndefined();
    index.add('demo:a', [{ key: 'x', seq: 1 }], { seq: 1, hash: h(1) });
    expect(index.get('demo:a', 'x')).toBe(1);
    expect(index.head('demo:a')).toEqual({ seq: 1, hash: h(1) });
    // The look-ups' read transaction is still open in this turn: a truncating checkpoint must wait for it…
    expect(checkpoint().busy).toBe(1);
    await Promise.resolve();
    // …and is over after the turn's microtasks: nothing holds the file's WAL.
    expect(checkpoint().busy).toBe(0);
    // Closing with a read open ends it first.
    expect(index.get('demo:a', 'y')).toBeUndefined();
    index.close();
    expect(checkpoint().busy).toBe(0);
    other.close();
  });
});
