/**
 * readSmallFile / readSmallFileSync on real files: a FIFO, a symbolic link, a directory and an
 * oversized file in place of the file are refused through the caller's error, without hanging.
 * The FIFO reads run in a child process with a deadline: a read that blocked on the FIFO would
 * hang the test worker itself (a synchronous open cannot be interrupted), so the child is killed
 * and the test fails instead.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSmallFile, readSmallFileSync } from './read-small-file.ts';

class Refused extends Error {}
const options = { maxBytes: 64, refuse: (problem: string) => new Refused(problem) };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'offchannel-small-file-'));
  writeFileSync(path.join(dir, 'ok'), 'hello\n');
  writeFileSync(path.join(dir, 'big'), 'x'.repeat(65));
  writeFileSync(path.join(dir, 'limit'), 'x'.repeat(64));
  symlinkSync(path.join(dir, 'ok'), path.join(dir, 'link'));
  mkdirSync(path.join(dir, 'folder'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')], { timeout: 10_000 });
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const both = [
  ['sync', (file: string, extra = {}) => Promise.resolve().then(() => readSmallFileSync(file, { ...options, ...extra }))],
  ['async', (file: string, extra = {}) => readSmallFile(file, { ...options, ...extra })],
] as const;

describe.each(both)('readSmallFile (%s)', (_name, read) => {
  it('reads a regular file up to its limit', async () => {
    expect((await read(path.join(dir, 'ok'))).toString()).toBe('hello\n');
    expect((await read(path.join(dir, 'limit'))).length).toBe(64);
  });

  it('refuses a file over the limit, a symbolic link and a directory through the caller\'s error', async () => {
    await expect(read(path.join(dir, 'big'))).rejects.toThrow(new Refused('is larger than 64 bytes'));
    await expect(read(path.join(dir, 'link'))).rejects.toThrow(new Refused('is a symbolic link'));
    await expect(read(path.join(dir, 'folder'))).rejects.toThrow(new Refused('is a directory, not a regular file'));
  });

  it('follows a link only when asked, and still checks what it points at', async () => {
    expect((await read(path.join(dir, 'link'), { followLinks: true })).toString()).toBe('hello\n');
    symlinkSync(path.join(dir, 'fifo'), path.join(dir, `fifo-link-${_name}`));
    await expect(read(path.join(dir, `fifo-link-${_name}`), { followLinks: true })).rejects.toThrow(new Refused('is a FIFO (named pipe), not a regular file'));
  });

  it('passes a missing file on as ENOENT', async () => {
    await expect(read(path.join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

const module = fileURLToPath(new URL('./read-small-file.ts', import.meta.url));

describe('a FIFO in place of the file', () => {
  it.each(['readSmallFileSync', 'readSmallFile'])('is refused at once by %s, in a child with a deadline', (name) => {
    const script = `
      import { ${name} } from ${JSON.stringify(module)};
      try {
        await ${name}(${JSON.stringify(path.join(dir, 'fifo'))}, { maxBytes: 64, refuse: (problem) => new Error('refused: ' + problem) });
        console.log('read');
      } catch (error) {
        console.log(error.message);
      }`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    expect(child.signal, 'the read hung on the FIFO and was killed').toBeNull();
    expect(child.stdout.trim()).toBe('refused: is a FIFO (named pipe), not a regular file');
  }, 60_000);
});
