/**
 * What is in place of the delivery state's files is not trusted: a FIFO, a symbolic link, a
 * directory, a file of other data or an oversized file where the target's lock (or the pid-file
 * lock of an earlier version) or cursor should be is refused with
 * DELIVERY_STATE saying what to do — never waited on (a FIFO would block the open until a
 * writer appears), never followed, never read whole. Each case runs in a child process with a
 * deadline: a synchronous read blocked on a FIFO cannot be interrupted in the test's own thread,
 * so a hang kills the child and fails the test.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_CURSOR_BYTES } from './delivery-state.ts';

const module = fileURLToPath(new URL('./delivery-state.ts', import.meta.url));

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'delivery-state-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Opens the target's state in a child and reads its cursor; prints the outcome. */
function openInChild(): { code?: string; message: string } {
  const script = `
    import { DeliveryState } from ${JSON.stringify(module)};
    try {
      const state = await DeliveryState.open(${JSON.stringify(dir)}, 'journal');
      state.read();
      console.log(JSON.stringify({ message: 'read' }));
    } catch (error) {
      console.log(JSON.stringify({ code: error.code, message: error.message }));
    }`;
  const child = spawnSync(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { timeout: 30_000, encoding: 'utf8' });
  expect(child.signal, `the child hung and was killed (${child.stderr})`).toBeNull();
  return JSON.parse(child.stdout) as { code?: string; message: string };
}

type Plant = (file: string) => Promise<void>;
const plants: [string, Plant, RegExp][] = [
  ['a FIFO', async (file) => void execFileSync('mkfifo', [file], { timeout: 10_000 }), /is a FIFO \(named pipe\), not a regular file/],
  ['a symbolic link', async (file) => {
    await writeFile(path.join(dir, 'elsewhere'), '{}');
    await symlink(path.join(dir, 'elsewhere'), file);
  }, /is a symbolic link/],
  ['a directory', async (file) => {
    await mkdir(file);
  }, /is a directory, not a regular file/],
];

describe('the lock', () => {
  it.each([...plants, ['a file holding other data', async (file: string) => writeFile(file, `${process.pid}\n`), /holds other data, not a lock/] as const])(
    'is refused when %s is in its place',
    async (_name, plant, problem) => {
      await plant(path.join(dir, 'journal.lock.db'));
      const outcome = openInChild();
      expect(outcome.code).toBe('DELIVERY_STATE');
      expect(outcome.message).toMatch(problem);
      expect(outcome.message).toContain('journal.lock.db');
      expect(outcome.message).toContain('remove it if no deliverer runs');
    },
    60_000,
  );
});

describe('the pid-file lock of an earlier version', () => {
  it.each([...plants, ['an oversized file', async (file: string) => writeFile(file, `${process.pid}\n${' '.repeat(4096)}`), /is larger than 64 bytes/] as const])(
    'is refused when %s is in its place',
    async (_name, plant, problem) => {
      await plant(path.join(dir, 'journal.lock'));
      const outcome = openInChild();
      expect(outcome.code).toBe('DELIVERY_STATE');
      expect(outcome.message).toMatch(problem);
      expect(outcome.message).toContain('journal.lock');
      expect(outcome.message).toContain('remove it if no deliverer runs');
    },
    60_000,
  );
});

describe('the cursor', () => {
  it.each([...plants, ['an oversized file', async (file: string) => truncate(await writeFile(file, '').then(() => file), MAX_CURSOR_BYTES + 1), /is larger than 67108864 bytes/] as const])(
    'is refused when %s is in its place',
    async (_name, plant, problem) => {
      await plant(path.join(dir, 'journal.cursor.json'));
      const outcome = openInChild();
      expect(outcome.code).toBe('DELIVERY_STATE');
      expect(outcome.message).toMatch(problem);
      expect(outcome.message).toContain('journal.cursor.json');
      expect(outcome.message).toContain('move it aside');
    },
    60_000,
  );

  it('is read as before when it is a regular file', async () => {
    await writeFile(path.join(dir, 'journal.cursor.json'), JSON.stringify({ format: 'offchannel-delivery-cursor', v: 1, target: 'journal', to: 'j@archive.test', mode: 'record', streams: {}, receipts: 0 }));
    expect(openInChild()).toEqual({ message: 'read' });
  }, 60_000);
});
