/**
 * The kernel-held lock, with real processes: a child that holds it keeps everyone else out (other
 * processes and other attempts of this one); a child killed with SIGKILL leaves the lock free at
 * once; of many processes released at the same instant exactly one gets it; whatever is planted
 * in the lock file's place is refused without waiting on it. A failed attempt of the holder's own
 * process never drops its lock (closing any descriptor of a file drops a process's POSIX locks).
 * Contenders that collide mid-climb retry instead of leaving the lock to nobody; the lock file
 * protocol of earlier versions (a `-journal` on disk) and this one exclude each other.
 */
import { type ChildProcessByStdio, execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OffchannelError } from '../errors/offchannel-error.ts';
import { nextLine as line } from '../testing/child-lines.ts';
import { takeOsLock, takeOsLockAsync } from './os-lock.ts';

const module = fileURLToPath(new URL('./os-lock.ts', import.meta.url));
type Child = ChildProcessByStdio<Writable, Readable, null>;

let dir: string;
let lockFile: string;
const children: Child[] = [];
const servers: Server[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'os-lock-'));
  lockFile = path.join(dir, 'target.lock');
});
afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const server of servers.splice(0)) server.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * A child that tries the lock once and prints `held` or the error's code; it holds the lock until
 * its stdin ends. With `ready`, it first prints `ready` and waits (a blocking read) for a line on
 * its stdin, so that contenders all start at one instant.
 */
function contender(ready = false): Child {
  const script = `
    import { readSync } from 'node:fs';
    import { takeOsLock } from ${JSON.stringify(module)};
    if (${String(ready)}) { console.log('ready'); readSync(0, Buffer.alloc(3)); }
    try {
      const lock = takeOsLock(${JSON.stringify(lockFile)});
      console.log('held');
      process.stdin.resume();
      process.stdin.on('end', () => { lock.release(); });
    } catch (error) {
      console.log(error.code);
    }`;
  const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

const code = (action: () => unknown): string => {
  try {
    action();
    return 'taken';
  } catch (error) {
    expect(OffchannelError.isInstance(error), String(error)).toBe(true);
    return (error as OffchannelError).code;
  }
};

describe('takeOsLock', () => {
  it('keeps other processes out while held, and is free the moment its holder is killed (SIGKILL)', async () => {
    const holder = contender();
    expect(await line(holder)).toBe('held');
    expect(code(() => takeOsLock(lockFile))).toBe('OS_LOCK_HELD');
    const other = contender();
    expect(await line(other)).toBe('OS_LOCK_HELD');
    holder.kill('SIGKILL');
    await once(holder, 'exit');
    // No waiting, no stale lock to break: the kernel released it with the process.
    const lock = takeOsLock(lockFile);
    const third = contender();
    expect(await line(third)).toBe('OS_LOCK_HELD');
    expect(await readdir(dir), 'no -journal beside a held lock').toEqual(['target.lock']);
    lock.release();
    expect((await stat(lockFile)).size, 'nothing is written to a lock').toBe(0);
    expect((await stat(lockFile)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['target.lock']);
  }, 60_000);

  it('says held to a second attempt of the same process, which leaves the first lock in force', async () => {
    const first = takeOsLock(lockFile);
    expect(code(() => takeOsLock(lockFile))).toBe('OS_LOCK_HELD');
    // Also through another name of the same file.
    await symlink(dir, path.join(dir, 'alias'));
    expect(code(() => takeOsLock(path.join(dir, 'alias', 'target.lock')))).toBe('OS_LOCK_HELD');
    // The failed attempts closed nothing that held the lock: another process is still kept out.
    const other = contender();
    expect(await line(other)).toBe('OS_LOCK_HELD');
    first.release();
    first.release(); // idempotent
    const next = contender();
    expect(await line(next)).toBe('held');
    expect(code(() => takeOsLock(lockFile))).toBe('OS_LOCK_HELD');
    next.stdin.end();
    await once(next, 'exit');
    takeOsLock(lockFile).release();
  }, 60_000);

  it('lets exactly one of many processes released at the same instant take it, round after round', async () => {
    for (let round = 0; round < 8; round++) {
      const list = Array.from({ length: 4 }, () => contender(true));
      await Promise.all(list.map(async (child) => { expect(await line(child)).toBe('ready'); }));
      for (const child of list) child.stdin.write('go\n');
      const results = await Promise.all(list.map(line));
      expect(results.filter((result) => result === 'held'), results.join(',')).toHaveLength(1);
      expect(results.filter((result) => result === 'OS_LOCK_HELD')).toHaveLength(3);
      // The winner really holds it: never two at once, never none.
      expect(code(() => takeOsLock(lockFile, { retryForMs: 0 }))).toBe('OS_LOCK_HELD');
      for (const child of list) {
        child.stdin.end();
        if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
      }
    }
  }, 120_000);
});

describe('contention', () => {
  it('outlasts another attempt caught mid-climb (its SHARED lock), instead of leaving the lock to nobody', () => {
    // What a colliding contender holds until it closes: SQLite's SHARED lock, kept in EXCLUSIVE
    // locking mode after a failed climb. Earlier, the lock then went to nobody: both failed.
    const other = new DatabaseSync(lockFile, { timeout: 0 });
    other.exec('PRAGMA locking_mode = EXCLUSIVE');
    other.exec('BEGIN');
    other.prepare('SELECT count(*) FROM sqlite_master').get();
    const pauses: number[] = [];
    const lock = takeOsLock(lockFile, {
      random: () => 0.55,
      pause: (ms) => {
        pauses.push(ms);
        if (pauses.length === 3) other.close(); // the other attempt gives up and closes
      },
    });
    expect(pauses).toEqual([6, 6, 6]);
    expect(code(() => takeOsLock(lockFile, { retryForMs: 0 }))).toBe('OS_LOCK_HELD');
    lock.release();
  });

  it('says held only after its retries, and leaves a real holder’s lock in force', async () => {
    const holder = contender();
    expect(await line(holder)).toBe('held');
    const pauses: number[] = [];
    let draw = 0;
    const outcome = code(() => takeOsLock(lockFile, { pause: (ms) => pauses.push(ms), random: () => (draw++ % 10) / 10 }));
    expect(outcome).toBe('OS_LOCK_HELD');
    expect(pauses.slice(0, 10)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const total = pauses.reduce((sum, ms) => sum + ms, 0);
    expect(total).toBeGreaterThanOrEqual(250);
    expect(total).toBeLessThan(260);
    expect(await line(contender())).toBe('OS_LOCK_HELD');
    holder.stdin.end();
    await once(holder, 'exit');
    takeOsLock(lockFile).release();
  }, 60_000);
});

describe('takeOsLockAsync', () => {
  it('waits on timers while another process holds the lock: the event loop runs meanwhile, and it still says held', async () => {
    const holder = contender();
    expect(await line(holder)).toBe('held');
    let ticks = 0;
    const timer = setInterval(() => (ticks += 1), 1);
    try {
      const outcome = await takeOsLockAsync(lockFile).then(
        (lock) => {
          lock.release();
          return 'taken';
        },
        (error: unknown) => (error as { code?: string }).code,
      );
      expect(outcome).toBe('OS_LOCK_HELD');
      // The blocking form would have held the loop for its whole ~250 ms budget: no tick at all.
      expect(ticks).toBeGreaterThan(5);
    } finally {
      clearInterval(timer);
      holder.stdin.end();
      await once(holder, 'exit');
    }
    const lock = await takeOsLockAsync(lockFile);
    expect(await line(contender())).toBe('OS_LOCK_HELD');
    lock.release();
  }, 60_000);
});

describe('the lock file protocol of earlier versions (a -journal on disk)', () => {
  /** A child that locks the file as earlier versions did, prints `held` or `busy`, holds until stdin ends. */
  function olderVersion(): Child {
    const script = `
      import { DatabaseSync } from 'node:sqlite';
      let db;
      try {
        db = new DatabaseSync(${JSON.stringify(lockFile)}, { timeout: 0 });
        db.exec('PRAGMA locking_mode = EXCLUSIVE');
        db.exec('BEGIN EXCLUSIVE');
        console.log('held');
        process.stdin.resume();
        process.stdin.on('end', () => { db.close(); });
      } catch (error) {
        console.log(error.errcode === 5 ? 'busy' : String(error));
      }`;
    const child = spawn(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    return child;
  }

  it('keeps an older version out while held, and is kept out by it', async () => {
    const lock = takeOsLock(lockFile);
    expect(await line(olderVersion())).toBe('busy');
    lock.release();
    const older = olderVersion();
    expect(await line(older)).toBe('held');
    expect(code(() => takeOsLock(lockFile, { retryForMs: 20 }))).toBe('OS_LOCK_HELD');
    expect(await line(contender())).toBe('OS_LOCK_HELD');
    // Killed, it leaves its -journal; the next lock is taken and SQLite removes it.
    older.kill('SIGKILL');
    await once(older, 'exit');
    expect((await readdir(dir)).sort()).toEqual(['target.lock', 'target.lock-journal']);
    const next = takeOsLock(lockFile);
    expect(await readdir(dir)).toEqual(['target.lock']);
    expect(await line(olderVersion())).toBe('busy');
    next.release();
    expect((await stat(lockFile)).size).toBe(0);
  }, 60_000);

  it('neither creates nor follows a symbolic link planted as its -journal', async () => {
    await symlink(path.join(dir, 'planted'), `${lockFile}-journal`);
    const lock = takeOsLock(lockFile);
    expect(await line(contender())).toBe('OS_LOCK_HELD');
    lock.release();
    expect((await readdir(dir)).sort()).toEqual(['target.lock', 'target.lock-journal']);
    await writeFile(path.join(dir, 'planted'), 'keep');
    takeOsLock(lockFile).release();
    expect(await readFile(path.join(dir, 'planted'), 'utf8')).toBe('keep');
  }, 60_000);
});

describe('what is in the lock file’s place', () => {
  /** Tries the lock in a child with a deadline: a hang kills it and fails the test. */
  function tryInChild(): { code?: string; message: string } {
    const script = `
      import { takeOsLock } from ${JSON.stringify(module)};
      try { takeOsLock(${JSON.stringify(lockFile)}).release(); console.log(JSON.stringify({ message: 'taken' })); }
      catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })); }`;
    const child = spawnSync(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { timeout: 30_000, encoding: 'utf8' });
    expect(child.signal, `the child hung and was killed (${child.stderr})`).toBeNull();
    return JSON.parse(child.stdout) as { code?: string; message: string };
  }

  const plants: [string, (file: string) => Promise<unknown>, RegExp][] = [
    ['a FIFO', async (file) => execFileSync('mkfifo', [file], { timeout: 10_000 }), /is a FIFO \(named pipe\), not a regular file/],
    ['a symbolic link', async (file) => {
      await writeFile(path.join(dir, 'elsewhere'), '');
      await symlink(path.join(dir, 'elsewhere'), file);
    }, /is a symbolic link/],
    ['a dangling symbolic link', async (file) => symlink(path.join(dir, 'nowhere'), file), /is a symbolic link/],
    ['a directory', async (file) => mkdir(file), /is a directory, not a regular file/],
    ['a socket', async (file) => {
      const server = createServer().listen(file);
      servers.push(server);
      await once(server, 'listening');
    }, /is a socket, not a regular file/],
    ['a file holding other data (a pid file of an older version)', async (file) => writeFile(file, '12345\n'), /holds other data, not a lock/],
  ];

  it.each(plants)('refuses %s (OS_LOCK_REFUSED), without waiting on it', async (_name, plant, problem) => {
    await plant(lockFile);
    const outcome = tryInChild();
    expect(outcome.code).toBe('OS_LOCK_REFUSED');
    expect(outcome.message).toMatch(problem);
    expect(outcome.message).toContain(lockFile);
  }, 60_000);

  it('leaves what a link points at untouched', async () => {
    await writeFile(path.join(dir, 'elsewhere'), 'keep');
    await symlink(path.join(dir, 'elsewhere'), lockFile);
    expect(tryInChild().code).toBe('OS_LOCK_REFUSED');
    expect(await readFile(path.join(dir, 'elsewhere'), 'utf8')).toBe('keep');
  }, 60_000);

  it('reports a lock in a missing or unwritable folder as OS_LOCK_FAILED, not as held', async () => {
    lockFile = path.join(dir, 'missing', 'target.lock');
    expect(tryInChild().code).toBe('OS_LOCK_FAILED');
  }, 60_000);
});
