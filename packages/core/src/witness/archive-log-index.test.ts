/**
 * An archive log index that cannot be opened (a damaged file) is refused with a typed error and
 * leaves nothing open: the file the error says to delete is not held by this process.
 */
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as Sqlite from 'node:sqlite';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { OffchannelError } from '../errors/offchannel-error.ts';
import { openArchiveLogIndex } from './archive-log-index.ts';
import { openFilesUnder } from '../testing/open-files.ts';

const { DatabaseSync } = createRequire(import.meta.url)('node:sqlite') as typeof Sqlite;

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'archive-log-index-'));
  file = path.join(dir, 'state', 'archive-log-index.sqlite');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function refusal(): unknown {
  try {
    openArchiveLogIndex({ file }).close();
  } catch (error) {
    return error;
  }
  return undefined;
}

const damaged: readonly (readonly [string, () => Promise<void>])[] = [
  ['not a database at all', () => writeFile(file, Buffer.alloc(8192, 0x41))],
  ['an SQLite header over garbage', () => writeFile(file, Buffer.concat([Buffer.from('SQLite format 3\0', 'latin1'), Buffer.alloc(8192 - 16, 0xff)]))],
  [
    'a database whose names clash with the index\'s tables',
    async () => {
      const db = new DatabaseSync(file);
      db.exec('CREATE TABLE t (x); CREATE INDEX archive_log_streams ON t (x);');
      db.close();
    },
  ],
  [
    'tables of the index\'s names with other columns',
    async () => {
      const db = new DatabaseSync(file);
      db.exec('CREATE TABLE archive_log_heads (x); CREATE TABLE archive_log_streams (y);');
      db.close();
    },
  ],
];

it.each(damaged)('a damaged index (%s) is refused and left closed, and works again once deleted', async (_, damage) => {
  openArchiveLogIndex({ file }).close(); // creates the folder
  await rm(file, { force: true });
  await rm(`${file}-wal`, { force: true });
  await rm(`${file}-shm`, { force: true });
  await damage();
  const error = refusal();
  expect(OffchannelError.hasCode(error, 'ARCHIVE_LOG_INDEX_UNAVAILABLE'), String(error)).toBe(true);
  expect(await openFilesUnder(dir)).toEqual([]);
  // What the error says to do works, and the deleted file is not kept open.
  await unlink(file);
  const index = openArchiveLogIndex({ file });
  index.record('archive-log', { size: 1, root: 'ab' }, new Map([['s', 2]]));
  expect(index.head('archive-log')).toEqual({ size: 1, root: 'ab' });
  index.close();
  expect(await openFilesUnder(dir)).toEqual([]);
});
