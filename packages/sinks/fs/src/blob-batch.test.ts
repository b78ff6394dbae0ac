/**
 * A batch of blob files written with synchronous calls (what the blob writer threads run):
 * every file's data is synced before it is linked under its name, an existing file is never
 * replaced, one blob's failure is its own, and nothing is left staged.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as Fs from 'node:fs';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { type BlobBatchRequest, writeBlobBatch } from './blob-batch.ts';

/** Every synchronous call the batch makes, in order: `<call> <basename>` (or the descriptor's file). */
const calls = vi.hoisted(() => ({ log: [] as string[], failSyncOf: undefined as string | undefined }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof Fs>();
  const names = new Map<number, string>();
  const base = (file: unknown): string => String(file).split('/').at(-1) as string;
  const wrapped = {
    ...real,
    openSync: ((file: string, flags: number, mode: number) => {
      const fd = real.openSync(file, flags, mode);
      names.set(fd, base(file));
      calls.log.push(`open ${base(file)}`);
      return fd;
    }) as typeof real.openSync,
    writeSync: ((fd: number, ...rest: unknown[]) => {
      calls.log.push(`write ${names.get(fd)}`);
      return (real.writeSync as (...args: unknown[]) => number)(fd, ...rest);
    }) as typeof real.writeSync,
    fdatasyncSync: (fd: number) => {
      calls.log.push(`fdatasync ${names.get(fd)}`);
      if (calls.failSyncOf !== undefined && names.get(fd)?.startsWith(calls.failSyncOf)) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
      real.fdatasyncSync(fd);
    },
    closeSync: (fd: number) => {
      calls.log.push(`close ${names.get(fd)}`);
      real.closeSync(fd);
    },
    linkSync: (from: string, to: string) => {
      calls.log.push(`link ${base(from)} ${base(to)}`);
      real.linkSync(from, to);
    },
    unlinkSync: (file: string) => {
      calls.log.push(`unlink ${base(file)}`);
      real.unlinkSync(file);
    },
  };
  return { ...wrapped, default: wrapped };
});

let root: string;
let tmp: string;
let blobs: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'offchannel-blob-batch-'));
  tmp = path.join(root, 'tmp');
  blobs = path.join(root, 'blobs');
  await mkdir(tmp);
  await mkdir(blobs);
  calls.log = [];
  calls.failSyncOf = undefined;
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function request(contents: Uint8Array[], dir = blobs): BlobBatchRequest {
  const ends: number[] = [];
  let size = 0;
  for (const bytes of contents) ends.push((size += bytes.length));
  const packed = new Uint8Array(size);
  contents.forEach((bytes, index) => {
    packed.set(bytes, index === 0 ? 0 : ends[index - 1]);
  });
  return { id: 7, tmpDir: tmp, prefix: 'test', targets: contents.map((bytes) => path.join(dir, sha(bytes))), ends, bytes: packed };
}

it('writes every blob read-only under its name, syncing its data before linking it, and leaves nothing staged', async () => {
  const contents = Array.from({ length: 40 }, (_, index) => new TextEncoder().encode(`blob ${index} `.repeat(index + 1)));
  const result = writeBlobBatch(request(contents));
  expect(result).toEqual({ id: 7, outcomes: contents.map(() => 'linked') });
  for (const bytes of contents) {
    const file = path.join(blobs, sha(bytes));
    expect(new Uint8Array(await readFile(file))).toEqual(bytes);
    expect((await stat(file)).mode & 0o777).toBe(0o444);
  }
  expect(await readdir(tmp)).toEqual([]);
  for (const bytes of contents) {
    const name = sha(bytes);
    const at = (call: string): number => calls.log.findIndex((entry) => entry.startsWith(`${call} ${name}.`));
    expect(at('write')).toBeGreaterThan(at('open'));
    expect(at('fdatasync'), `${name} synced after its write`).toBeGreaterThan(at('write'));
    expect(at('link'), `${name} linked only once its data is durable`).toBeGreaterThan(at('fdatasync'));
    expect(at('unlink')).toBeGreaterThan(at('link'));
  }
});

it('never replaces a file that has the name: it is reported, left as it was, and its staged copy removed', async () => {
  const contents = [new TextEncoder().encode('first'), new TextEncoder().encode('second'), new TextEncoder().encode('third')];
  const taken = path.join(blobs, sha(contents[1] as Uint8Array));
  await writeFile(taken, 'something else');
  const result = writeBlobBatch(request(contents));
  expect(result.outcomes).toEqual(['linked', 'exists', 'linked']);
  expect(await readFile(taken, 'utf8')).toBe('something else');
  expect(await readdir(tmp)).toEqual([]);
});

it("one blob's failed sync fails that blob alone, which is never linked", async () => {
  const contents = [new TextEncoder().encode('a'), new TextEncoder().encode('b'), new TextEncoder().encode('c')];
  calls.failSyncOf = sha(contents[1] as Uint8Array);
  const result = writeBlobBatch(request(contents));
  expect(result.outcomes[0]).toBe('linked');
  expect(result.outcomes[1]).toMatchObject({ code: 'EIO' });
  expect(result.outcomes[2]).toBe('linked');
  expect((await readdir(blobs)).sort()).toEqual([sha(contents[0] as Uint8Array), sha(contents[2] as Uint8Array)].sort());
  expect(await readdir(tmp)).toEqual([]);
});

it('a blob whose directory is missing fails with the error code, and its staged file is removed', async () => {
  const contents = [new TextEncoder().encode('lost')];
  const result = writeBlobBatch(request(contents, path.join(root, 'missing')));
  expect(result.outcomes[0]).toMatchObject({ code: 'ENOENT' });
  expect(await readdir(tmp)).toEqual([]);
});

it('takes the next staged name when one is taken (a file left by a crash), never writing into it', async () => {
  const contents = [new TextEncoder().encode('x')];
  const first = writeBlobBatch(request([new TextEncoder().encode('warm-up')]));
  expect(first.outcomes).toEqual(['linked']);
  // The counter is per thread: plant files at the next two staged names.
  const next = Number.parseInt((calls.log.find((entry) => entry.startsWith('open '))?.split('.test')[1] ?? '0'), 36) + 1;
  for (const n of [next, next + 1]) await writeFile(path.join(tmp, `${sha(contents[0] as Uint8Array)}.test${n.toString(36)}`), 'planted');
  const result = writeBlobBatch(request(contents));
  expect(result.outcomes).toEqual(['linked']);
  expect(await readFile(path.join(blobs, sha(contents[0] as Uint8Array)), 'utf8')).toBe('x');
  expect((await readdir(tmp)).length).toBe(2); // the planted files, untouched (a start sweeps them)
});
