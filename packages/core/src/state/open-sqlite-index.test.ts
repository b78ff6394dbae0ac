/**
 * The derived SQLite indexes (capture's key index and archive log index, delivery's receipt key
 * index) live in a state folder whose files are opened without following links: a symbolic
 * link, FIFO or directory at the index, its `-wal` or its `-shm` is refused with the index's
 * typed error saying to move the files aside — never followed (SQLite would create, write or
 * truncate the file a link points to, and chmod would change its mode), never waited on. Each
 * case runs in a child process with a deadline: SQLite blocked reading a FIFO cannot be
 * interrupted in the test's own thread, so a hang kills the child and fails the test.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkfifo } from '../testing/fifo.ts';
import { openKeyIndex } from '../recorder/key-index.ts';
import { openArchiveLogIndex } from '../witness/archive-log-index.ts';
import { openSqliteIndex } from './open-sqlite-index.ts';

const helper = fileURLToPath(new URL('./open-sqlite-index.ts', import.meta.url));

let dir: string;
let victim: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'open-sqlite-index-'));
  // What a link points to: somewhere outside the index's folder, readable by others.
  victim = path.join(dir, 'victim.txt');
  await writeFile(victim, 'not an index');
  await chmod(victim, 0o644);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const options = (file: string) => ({
  file,
  code: 'TEST_INDEX_UNAVAILABLE',
  needs: 'the test index',
  title: 'the test index',
  schema: 'CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY) WITHOUT ROWID;',
  statements: { add: 'INSERT INTO items (name) VALUES (?)' },
});

/** Opens the index in a child, writes a row, closes; prints the outcome. */
function openInChild(file: string): { code?: string; message: string } {
  const script = `
    import { openSqliteIndex } from ${JSON.stringify(helper)};
    try {
      const { db, statements } = openSqliteIndex(${JSON.stringify(options(file))});
      statements.add.run('a');
      db.close();
      console.log(JSON.stringify({ message: 'opened' }));
    } catch (error) {
      console.log(JSON.stringify({ code: error.code, message: error.message }));
    }`;
  const child = spawnSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
  expect(child.signal, `the child hung and was killed (${child.stderr})`).toBeNull();
  return JSON.parse(child.stdout) as { code?: string; message: string };
}

const plants: [string, (at: string) => Promise<void>, RegExp][] = [
  ['a symbolic link', (at) => symlink(victim, at), /is a symbolic link;/],
  ['a FIFO', async (at) => { mkfifo(at); }, /is a FIFO \(named pipe\), not a regular file;/],
  ['a directory', (at) => mkdir(at), /is a directory, not a regular file;/],
];
const places = ['', '-wal', '-shm'];

describe('openSqliteIndex', () => {
  for (const suffix of places) {
    it.each(plants)(`refuses %s at the index's path${suffix || ''}, leaving what it points to alone`, async (_name, plant, problem) => {
      const file = path.join(dir, 'state', 'index.sqlite');
      await mkdir(path.dirname(file), { mode: 0o700 });
      await plant(file + suffix);
      const outcome = openInChild(file);
      expect(outcome.code).toBe('TEST_INDEX_UNAVAILABLE');
      expect(outcome.message).toMatch(problem);
      expect(outcome.message).toContain(`${file + suffix} is`);
      expect(outcome.message).toContain(`move ${file} and any ${file}-wal and ${file}-shm aside`);
      // The link's target was neither written, truncated nor made 0600.
      expect(await readFile(victim, 'utf8')).toBe('not an index');
      expect((await stat(victim)).mode & 0o777).toBe(0o644);
      // Nothing was created in its place: the index's own file only if it was not the one refused.
      if (suffix !== '') await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
    }, 60_000);
  }

  it('opens as before once the planted files are moved aside, and makes an existing file 0600', async () => {
    const file = path.join(dir, 'index.sqlite');
    await symlink(victim, `${file}-wal`);
    expect(openInChild(file).code).toBe('TEST_INDEX_UNAVAILABLE');
    await rm(`${file}-wal`);
    expect(openInChild(file)).toEqual({ message: 'opened' });
    await chmod(file, 0o644);
    const { db } = openSqliteIndex(options(file));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(`${file}-wal`)).mode & 0o777).toBe(0o600);
    db.close();
  });

  it('keeps SQLite\'s lock on the index file: another process cannot take it exclusively while this one has it open', { timeout: 60_000 }, async () => {
    // Closing any descriptor of a file drops every POSIX lock the process holds on it. Were the
    // opener to close a descriptor of its own after SQLite opened the file, SQLite's shared lock
    // on it would be gone, and another process could take the file exclusively (and, closing
    // last as it would think, checkpoint and delete the WAL this one still uses). A child that
    // asks for an exclusive lock (locking_mode EXCLUSIVE, then a read) must be refused — for a
    // new index and for an existing one.
    const probe = (file: string): string => {
      const script = `
        import { DatabaseSync } from 'node:sqlite';
        const db = new DatabaseSync(${JSON.stringify(file)}, { timeout: 0 });
        try { db.exec('PRAGMA locking_mode = EXCLUSIVE'); db.prepare('SELECT count(*) FROM items').get(); console.log('taken'); }
        catch (error) { console.log(error.message); } finally { db.close(); }`;
      const child = spawnSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
      expect(child.signal, `the child hung and was killed (${child.stderr})`).toBeNull();
      return child.stdout.trim();
    };
    for (const fresh of [true, false]) {
      const file = path.join(dir, `shared-${fresh}.sqlite`);
      if (!fresh) openSqliteIndex(options(file)).db.close();
      const { db, statements } = openSqliteIndex(options(file));
      try {
        statements.add.run('here');
        expect([fresh, probe(file)]).toEqual([fresh, 'database is locked']);
      } finally {
        db.close();
      }
      expect([fresh, probe(file)]).toEqual([fresh, 'taken']);
    }
  });

  it('is the check of every index that uses it: the key index and the archive log index', async () => {
    const keys = path.join(dir, 'key-index.sqlite');
    const log = path.join(dir, 'archive-log-index.sqlite');
    await symlink(victim, keys);
    await symlink(victim, `${log}-shm`);
    expect(() => openKeyIndex({ file: keys })).toThrow(expect.objectContaining({ code: 'KEY_INDEX_UNAVAILABLE', message: expect.stringContaining('is a symbolic link') as unknown }));
    expect(() => openArchiveLogIndex({ file: log })).toThrow(expect.objectContaining({ code: 'ARCHIVE_LOG_INDEX_UNAVAILABLE', message: expect.stringContaining('is a symbolic link') as unknown }));
    expect(await readFile(victim, 'utf8')).toBe('not an index');
    expect((await stat(victim)).mode & 0o777).toBe(0o644);
  });
});
