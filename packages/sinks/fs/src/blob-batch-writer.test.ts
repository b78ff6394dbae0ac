/**
 * The blob writer threads (real workers, real files): a blob's promise resolves only after a
 * directory fsync that began after its link; the blobs asked for in one turn go in a few
 * batches; failures reach exactly the blobs they concern.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { BLOB_BATCH_MAX, BLOB_BATCH_WORKERS, BlobBatchWriter } from './blob-batch-writer.ts';
import { createReadOnlyFile } from './fs-utils.ts';

vi.setConfig({ testTimeout: 60_000 });

let root: string;
let tmp: string;
let blobs: string;
let writer: BlobBatchWriter | undefined;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'offchannel-blob-writer-'));
  tmp = path.join(root, 'tmp');
  blobs = path.join(root, 'blobs');
  await mkdir(tmp);
  await mkdir(blobs);
  alone = 0;
});
afterEach(async () => {
  await writer?.close();
  writer = undefined;
  await rm(root, { recursive: true, force: true });
});

/** Writes one blob without the workers, counting the calls. */
let alone = 0;
const writeAlone = (target: string, bytes: Uint8Array): Promise<boolean> => {
  alone++;
  return createReadOnlyFile(tmp, target, bytes);
};

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const blob = (index: number): Uint8Array => new TextEncoder().encode(`message ${index} `.repeat(1 + (index % 50)));
const settledYet = async (promise: Promise<unknown>): Promise<boolean> => {
  let settled = false;
  promise.then(() => (settled = true), () => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 50));
  return settled;
};

it('resolves a blob only once a directory fsync begun after its link has finished', async () => {
  const syncs: { dir: string; linked: string[]; release: () => void }[] = [];
  writer = new BlobBatchWriter(tmp, async (dir) => {
    const { promise, resolve } = Promise.withResolvers<undefined>();
    syncs.push({ dir, linked: await readdir(dir), release: () => { resolve(undefined); } });
    await promise;
  }, writeAlone);
  await writer.ready();
  const bytes = blob(1);
  const created = writer.create(path.join(blobs, sha(bytes)), bytes);
  while (syncs.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(syncs[0]?.dir).toBe(blobs);
  expect(syncs[0]?.linked, 'linked before the fsync began').toEqual([sha(bytes)]);
  expect(await settledYet(created), 'not durable before its directory is').toBe(false);
  syncs[0]?.release();
  expect(await created).toBe(true);
  expect(new Uint8Array(await readFile(path.join(blobs, sha(bytes))))).toEqual(bytes);
});

it('writes the blobs asked for in one turn in a few batches, one directory fsync each', async () => {
  const dirs: string[] = [];
  writer = new BlobBatchWriter(tmp, async (dir) => { dirs.push(dir); }, writeAlone);
  await writer.ready();
  const contents = Array.from({ length: 100 }, (_, index) => blob(index));
  const results = await Promise.all(contents.map((bytes) => (writer as BlobBatchWriter).create(path.join(blobs, sha(bytes)), bytes)));
  expect(results.every(Boolean)).toBe(true);
  expect(alone, 'all written by the workers').toBe(0);
  expect(dirs.length).toBeLessThanOrEqual(Math.max(BLOB_BATCH_WORKERS, Math.ceil(100 / BLOB_BATCH_MAX)));
  expect((await readdir(blobs)).sort()).toEqual(contents.map(sha).sort());
  for (const bytes of contents) expect(new Uint8Array(await readFile(path.join(blobs, sha(bytes))))).toEqual(bytes);
  expect(await readdir(tmp)).toEqual([]);
});

it('never makes a blob wait for a thread to start: until one runs, blobs are written alone', async () => {
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone);
  const bytes = blob(42);
  expect(await writer.create(path.join(blobs, sha(bytes)), bytes)).toBe(true);
  expect(alone).toBe(1);
  await writer.ready();
  const next = blob(43);
  expect(await writer.create(path.join(blobs, sha(next)), next)).toBe(true);
  expect(alone, 'a running thread wrote the next one').toBe(1);
});

it('answers false for a name already taken, and leaves that file alone', async () => {
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone);
  await writer.ready();
  const bytes = blob(3);
  await writeFile(path.join(blobs, sha(bytes)), 'other');
  expect(await writer.create(path.join(blobs, sha(bytes)), bytes)).toBe(false);
  expect(await readFile(path.join(blobs, sha(bytes)), 'utf8')).toBe('other');
});

it('a failed directory fsync rejects every blob it would have made durable, with its code', async () => {
  writer = new BlobBatchWriter(tmp, async () => {
    throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
  }, writeAlone);
  await writer.ready();
  const contents = [blob(4), blob(5), blob(6)];
  const results = await Promise.allSettled(contents.map((bytes) => (writer as BlobBatchWriter).create(path.join(blobs, sha(bytes)), bytes)));
  for (const result of results) expect(result).toMatchObject({ status: 'rejected', reason: { code: 'EIO' } });
});

it('a write error reaches its blob alone (a missing directory: ENOENT), the others are stored', async () => {
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone);
  await writer.ready();
  const good = blob(7);
  const lost = blob(8);
  const [stored, failed] = await Promise.allSettled([writer.create(path.join(blobs, sha(good)), good), writer.create(path.join(root, 'missing', sha(lost)), lost)]);
  expect(stored).toEqual({ status: 'fulfilled', value: true });
  expect(failed).toMatchObject({ status: 'rejected', reason: { code: 'ENOENT' } });
});

it('refuses writes once closed', async () => {
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone);
  const bytes = blob(9);
  expect(await writer.create(path.join(blobs, sha(bytes)), bytes)).toBe(true);
  await writer.close();
  await expect(writer.create(path.join(blobs, 'x'), bytes)).rejects.toThrow(/closed/);
});

it('closing settles every blob: the queued ones are refused (CLOSED), the ones on the disk come back stored', async () => {
  const within = <T>(promise: Promise<T>): Promise<T | 'hung'> => Promise.race([promise, new Promise<'hung'>((resolve) => setTimeout(() => { resolve('hung'); }, 10_000))]);
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone);
  await writer.ready();
  // Closed in the turn they were asked for: none reached a worker.
  const queued = Array.from({ length: 40 }, (_, index) => blob(100 + index)).map((bytes) => (writer as BlobBatchWriter).create(path.join(blobs, sha(bytes)), bytes));
  const queuedSettled = Promise.allSettled(queued);
  await writer.close();
  const early = await within(queuedSettled);
  expect(early).not.toBe('hung');
  for (const result of early as PromiseSettledResult<boolean>[]) expect(result).toMatchObject({ status: 'rejected', reason: { code: 'CLOSED' } });
  expect((early as unknown[]).length).toBe(queued.length);
  expect(await readdir(blobs)).toEqual([]);
  // Closed once they were handed to the workers: every one is stored and resolves.
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone);
  await writer.ready();
  const contents = Array.from({ length: 200 }, (_, index) => blob(300 + index));
  const sent = contents.map((bytes) => (writer as BlobBatchWriter).create(path.join(blobs, sha(bytes)), bytes));
  const sentSettled = Promise.allSettled(sent);
  await new Promise((resolve) => setImmediate(resolve));
  await writer.close();
  const late = await within(sentSettled);
  expect(late).not.toBe('hung');
  const stored = (late as PromiseSettledResult<boolean>[]).filter((result) => result.status === 'fulfilled');
  expect(stored.length).toBeGreaterThan(0);
  for (const [index, result] of (late as PromiseSettledResult<boolean>[]).entries()) {
    if (result.status === 'fulfilled') expect(new Uint8Array(await readFile(path.join(blobs, sha(contents[index] as Uint8Array))))).toEqual(contents[index]);
    else expect(result.reason).toMatchObject({ code: 'CLOSED' });
  }
});

it('with no threads, writes every blob alone, the same way', async () => {
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone, 0);
  const contents = [blob(10), blob(11)];
  expect(await Promise.all(contents.map((bytes) => (writer as BlobBatchWriter).create(path.join(blobs, sha(bytes)), bytes)))).toEqual([true, true]);
  expect(alone).toBe(2);
  for (const bytes of contents) expect(new Uint8Array(await readFile(path.join(blobs, sha(bytes))))).toEqual(bytes);
});

it('a worker that dies mid-batch: its blobs (already linked) and every later one are written alone, none lost or hung', async () => {
  const dying = new URL('./__fixtures__/dying-blob-worker.ts', import.meta.url);
  let broken = 0;
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone, 1, dying, () => broken++);
  await writer.ready();
  expect(writer.broken).toBe(false);
  const held = [blob(12), blob(13), blob(14)];
  const results = await Promise.all(held.map((bytes) => (writer as BlobBatchWriter).create(path.join(blobs, sha(bytes)), bytes)));
  // Linked by the worker before it died: found by the single-blob path, for the sink to check and sync.
  expect(results).toEqual([false, false, false]);
  expect(alone).toBe(3);
  for (const bytes of held) expect(new Uint8Array(await readFile(path.join(blobs, sha(bytes))))).toEqual(bytes);
  const later = blob(15);
  expect(await writer.create(path.join(blobs, sha(later)), later)).toBe(true);
  expect(alone).toBe(4);
  // Told once (the sink logs it and bounds these writes as the thread pool's).
  expect(broken).toBe(1);
  expect(writer.broken).toBe(true);
});

it('when one worker dies, a batch another worker is still writing comes back from it, not written twice', async () => {
  const picky = new URL('./__fixtures__/picky-blob-worker.ts', import.meta.url);
  let broken = 0;
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone, 2, picky, () => broken++);
  await writer.ready();
  // One turn, two idle workers: the first 20 go to one (it dies), the last 20 to the other (slow).
  const contents = Array.from({ length: 40 }, (_, index) => blob(500 + index));
  const names = contents.map((bytes, index) => path.join(blobs, `${index < 20 ? 'dead' : 'live'}-${sha(bytes)}`));
  const results = await Promise.all(contents.map((bytes, index) => (writer as BlobBatchWriter).create(names[index] as string, bytes)));
  // The dead worker's batch was linked before it died: found by the single-blob path (false).
  expect(results).toEqual([...Array.from({ length: 20 }, () => false), ...Array.from({ length: 20 }, () => true)]);
  expect(alone).toBe(20);
  expect(broken).toBe(1);
  for (const [index, bytes] of contents.entries()) expect(new Uint8Array(await readFile(names[index] as string))).toEqual(bytes);
});

it('a worker that cannot start: every blob is written alone', async () => {
  writer = new BlobBatchWriter(tmp, async () => undefined, writeAlone, 2, new URL('./__fixtures__/no-such-worker.ts', import.meta.url));
  const contents = [blob(16), blob(17)];
  expect(await Promise.all(contents.map((bytes) => (writer as BlobBatchWriter).create(path.join(blobs, sha(bytes)), bytes)))).toEqual([true, true]);
  expect(alone).toBe(2);
});
