/**
 * One deliverer per target, with real processes. The target's lock is held by the kernel for the
 * deliverer's process: a deliverer killed with SIGKILL leaves it free at once, and after such a
 * crash, deliverers started at the same instant never both win, nor all lose — the pid-file
 * lock of earlier versions let two of them "take over" the dead one's lock together (one removing the other's
 * fresh lock), and both delivered the same target. A pid file left by an earlier version is
 * removed when its process is gone, and refused while a process of that pid runs; while this
 * version runs it keeps such a file itself, so that an earlier version started beside it stays out.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import { link, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OffchannelError } from '@offchannel/core';
import { nextLine as line } from '@offchannel/core/testing';
import { DeliveryState } from './delivery-state.ts';

const module = fileURLToPath(new URL('./delivery-state.ts', import.meta.url));
type Child = ChildProcessByStdio<Writable, Readable, null>;

let dir: string;
const children: Child[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'delivery-lock-'));
});
afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/**
 * A deliverer's state in a child: it prints `ready` and waits for a line on its stdin (so that
 * contenders start at one instant), opens the target's state, prints `open` or the error's code
 * (`: message`), and holds the state until its stdin ends. With `again`, a refused one prints
 * `ready` and waits for the next line to try again.
 */
function deliverer(again = false): Child {
  const script = `
    import { readSync } from 'node:fs';
    import { DeliveryState } from ${JSON.stringify(module)};
    for (;;) {
      console.log('ready');
      if (readSync(0, Buffer.alloc(3)) === 0) break;
      try {
        const state = await DeliveryState.open(${JSON.stringify(dir)}, 'journal');
        console.log('open');
        process.stdin.resume();
        process.stdin.on('end', () => { state.close(); });
        break;
      } catch (error) {
        console.log(error.code + ': ' + error.message);
        if (!${String(again)}) break;
      }
    }`;
  const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

/** Starts deliverers, releases them at one instant, and returns what each printed. */
async function race(count: number): Promise<{ list: Child[]; results: string[] }> {
  const list = Array.from({ length: count }, () => deliverer());
  for (const child of list) expect(await line(child)).toBe('ready');
  for (const child of list) child.stdin.write('go\n');
  return { list, results: await Promise.all(list.map(line)) };
}

async function endAll(list: readonly Child[]): Promise<void> {
  for (const child of list) {
    child.stdin.end();
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
}

/** A deliverer that opened the target's state and was then killed outright. */
async function crashedDeliverer(): Promise<void> {
  const { list, results } = await race(1);
  expect(results).toEqual(['open']);
  const [child] = list as [Child];
  child.kill('SIGKILL');
  await once(child, 'exit');
}

const failure = async (promise: Promise<unknown>): Promise<OffchannelError> => {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(OffchannelError.isInstance(error), String(error)).toBe(true);
  return error as OffchannelError;
};

/** What one more deliverer, started now, printed (`open`, or its error's code and message); it is stopped. */
async function anotherDeliverer(): Promise<string> {
  const { list, results } = await race(1);
  await endAll(list);
  return results[0] as string;
}

describe('the target lock', () => {
  it('is free the moment a deliverer is killed (SIGKILL), and keeps others out while held', async () => {
    await crashedDeliverer();
    const state = await DeliveryState.open(dir, 'journal');
    try {
      expect(await anotherDeliverer()).toMatch(/^DELIVERY_STATE: target journal is being delivered by another process.*journal\.lock\.db.*run one deliverer per target$/);
    } finally {
      state.close();
    }
  }, 60_000);

  it('after a crash, lets exactly one of the deliverers started at the same instant win, every time', async () => {
    // Four waiting deliverers (each tries again at every line on its stdin); every round, the
    // winner is killed outright — a crash — and replaced, and the others try again at once.
    await crashedDeliverer();
    let pool = Array.from({ length: 4 }, () => deliverer(true));
    for (let round = 0; round < 25; round++) {
      for (const child of pool) expect(await line(child)).toBe('ready');
      for (const child of pool) child.stdin.write('go\n');
      const results = await Promise.all(pool.map(line));
      // Never two at once, and never none: the losers retried while a collision lasted.
      expect(results.filter((result) => result === 'open'), `round ${round}: ${results.join(' | ')}`).toHaveLength(1);
      expect((await failure(DeliveryState.open(dir, 'journal'))).message).toMatch(/run one deliverer per target$/);
      const next: Child[] = [];
      for (const [index, child] of pool.entries()) {
        if (results[index] === 'open') {
          child.kill('SIGKILL');
          await once(child, 'exit');
          next.push(deliverer(true));
        } else {
          expect(results[index]).toMatch(/^DELIVERY_STATE: .*run one deliverer per target$/);
          next.push(child);
        }
      }
      pool = next;
    }
    await endAll(pool);
  }, 240_000);

  it('is refused to a second deliverer of the same process, and free again after close', async () => {
    const first = await DeliveryState.open(dir, 'journal');
    const error = await failure(DeliveryState.open(dir, 'journal'));
    expect(error.code).toBe('DELIVERY_STATE');
    expect(error.message).toContain('run one deliverer per target');
    // The refused attempt did not drop the first one's lock for other processes.
    expect(await anotherDeliverer()).toMatch(/^DELIVERY_STATE: /);
    first.close();
    const again = await DeliveryState.open(dir, 'journal');
    again.close();
    expect((await readdir(dir)).sort()).toEqual(['journal.lock.db']);
  }, 60_000);
});

describe('another name of the lock (a hard link)', () => {
  // Opening and closing any name of the lock file in the holding process drops its POSIX lock.
  it('is refused as the pid file of an earlier version, never opened; so is a pid file with other names', async () => {
    (await DeliveryState.open(dir, 'journal')).close();
    await link(path.join(dir, 'journal.lock.db'), path.join(dir, 'journal.lock'));
    const error = await failure(DeliveryState.open(dir, 'journal'));
    expect(error.code).toBe('DELIVERY_STATE');
    expect(error.message).toContain('journal.lock.db under another name (a hard link)');
    await rm(path.join(dir, 'journal.lock'));
    await writeFile(path.join(dir, 'elsewhere'), '1\n');
    await link(path.join(dir, 'elsewhere'), path.join(dir, 'journal.lock'));
    expect((await failure(DeliveryState.open(dir, 'journal'))).message).toContain('has other names (2 hard links)');
    // The refusals released the lock: a deliverer of another process gets in.
    await rm(path.join(dir, 'journal.lock'));
    expect(await anotherDeliverer()).toBe('open');
  }, 60_000);

  it('is refused as the cursor, never opened: the lock keeps other deliverers out', async () => {
    const state = await DeliveryState.open(dir, 'journal');
    try {
      await link(path.join(dir, 'journal.lock.db'), path.join(dir, 'journal.cursor.json'));
      expect(() => state.read()).toThrow(/journal\.cursor\.json is the lock .*journal\.lock\.db under another name/);
      expect(await anotherDeliverer()).toMatch(/^DELIVERY_STATE: .*run one deliverer per target$/);
    } finally {
      state.close();
    }
  }, 60_000);

  it('never writes the cursor through a hard link to the lock planted as its temporary file: the lock keeps other deliverers out', async () => {
    const state = await DeliveryState.open(dir, 'journal');
    try {
      await link(path.join(dir, 'journal.lock.db'), path.join(dir, `journal.cursor.json.${process.pid}.tmp`));
      state.write({ format: 'offchannel-delivery-cursor', v: 1, target: 'journal', to: 'journal@example.com', mode: 'record', receipts: 0, streams: {} });
      expect((await stat(path.join(dir, 'journal.lock.db'))).size).toBe(0);
      expect(await anotherDeliverer()).toMatch(/^DELIVERY_STATE: .*run one deliverer per target$/);
    } finally {
      state.close();
    }
  }, 60_000);
});

describe('the pid-file lock of an earlier version', () => {
  /** The pid of a process that has exited. */
  async function deadPid(): Promise<number> {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await once(child, 'exit');
    return child.pid as number;
  }

  /**
   * A deliverer of an earlier version, as it took its lock: create `journal.lock` (`O_EXCL`) with
   * its pid; if it exists, refuse while the pid in it runs, else take it over. Prints `taken`
   * (and holds it until its stdin ends, then removes it) or `refused`.
   */
  function earlierDeliverer(): Child {
    const script = `
      import { closeSync, constants, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
      const file = ${JSON.stringify(path.join(dir, 'journal.lock'))};
      const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
      for (;;) {
        try {
          const fd = openSync(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
          writeSync(fd, process.pid + '\\n');
          closeSync(fd);
          console.log('taken');
          process.stdin.resume();
          process.stdin.on('end', () => { rmSync(file, { force: true }); });
          break;
        } catch (error) {
          if (error.code !== 'EEXIST') throw error;
          const pid = Number(readFileSync(file, 'utf8').trim());
          if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) { console.log('refused'); break; }
          rmSync(file, { force: true });
        }
      }`;
    const child = spawn(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    return child;
  }

  it('is kept, holding this deliverer’s pid, while it runs: an earlier version started beside it stays out', async () => {
    const state = await DeliveryState.open(dir, 'journal');
    expect(await readFile(path.join(dir, 'journal.lock'), 'utf8')).toBe(`${process.pid}\n`);
    expect((await stat(path.join(dir, 'journal.lock'))).mode & 0o777).toBe(0o400); // this version's (an earlier version's is 0600)
    expect(await line(earlierDeliverer())).toBe('refused');
    state.close();
    expect(await readdir(dir)).toEqual(['journal.lock.db']);
    // Stopped, it lets an earlier version in again (a rollback), which keeps this one out.
    const earlier = earlierDeliverer();
    expect(await line(earlier)).toBe('taken');
    expect((await failure(DeliveryState.open(dir, 'journal'))).message).toContain('of an earlier offchannel version');
    await endAll([earlier]);
    // Killed, it leaves its pid file, which the next deliverer retires and replaces with its own.
    await crashedDeliverer();
    expect((await readdir(dir)).sort()).toEqual(['journal.lock', 'journal.lock.db']);
    const next = await DeliveryState.open(dir, 'journal');
    expect(await readFile(path.join(dir, 'journal.lock'), 'utf8')).toBe(`${process.pid}\n`);
    expect(await line(earlierDeliverer())).toBe('refused');
    next.close();
    expect(await readdir(dir)).toEqual(['journal.lock.db']);
  }, 60_000);

  it('is removed when its process is gone; the new lock is taken', async () => {
    await writeFile(path.join(dir, 'journal.lock'), `${await deadPid()}\n`, { mode: 0o600 });
    const state = await DeliveryState.open(dir, 'journal');
    state.close();
    expect(await readdir(dir)).toEqual(['journal.lock.db']);
  }, 60_000);

  it('is removed when this version wrote it (mode 0400) and a crash left it, even if its pid now runs: never stale after a reboot', async () => {
    const running = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      // What a deliverer of this version killed between linking its pid file and removing the
      // temporary name leaves: the pid file (0400, two names), its pid now someone else's.
      await writeFile(path.join(dir, 'journal.lock.4242.tmp'), `${running.pid}\n`, { mode: 0o400 });
      await link(path.join(dir, 'journal.lock.4242.tmp'), path.join(dir, 'journal.lock'));
      const state = await DeliveryState.open(dir, 'journal');
      expect(await readFile(path.join(dir, 'journal.lock'), 'utf8')).toBe(`${process.pid}\n`);
      expect(((await stat(path.join(dir, 'journal.lock'))).mode & 0o777)).toBe(0o400);
      state.close();
      expect(await readdir(dir)).toEqual(['journal.lock.db']);
    } finally {
      running.kill('SIGKILL');
    }
  }, 60_000);

  it('is refused while a process of its pid runs (an earlier deliverer may be delivering), and kept', async () => {
    const running = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await writeFile(path.join(dir, 'journal.lock'), `${running.pid}\n`, { mode: 0o600 });
      const error = await failure(DeliveryState.open(dir, 'journal'));
      expect(error.code).toBe('DELIVERY_STATE');
      expect(error.message).toContain(`process ${running.pid} of an earlier offchannel version`);
      expect(error.message).toContain('run one deliverer per target');
      expect((await readdir(dir)).sort()).toEqual(['journal.lock', 'journal.lock.db']);
      // The refusal released the new lock.
      expect(await anotherDeliverer()).toMatch(/^DELIVERY_STATE: .*earlier offchannel version/);
    } finally {
      running.kill('SIGKILL');
    }
  }, 60_000);
});
