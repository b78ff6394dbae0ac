/**
 * The blob write path's file-system calls, observed on real files: the directory fsyncs that
 * blobs linked at once share (group commit), what a failed one does to the calls it served, and
 * what a staged file left in tmp/ by another writer or a failed write does to a new blob.
 * Directory opens and fsyncs are counted (and held or failed on demand) by wrapping the real
 * `open` of `node:fs/promises`; staging opens by wrapping the real `open` of `node:fs`.
 */
import type * as Fs from 'node:fs';
import type * as FsPromises from 'node:fs/promises';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { sha256Hex } from '@offchannel/core';
import { openFsSink } from './fs-sink.ts';
import { createReadOnlyFile, syncDirectory } from './fs-utils.ts';

const probe = vi.hoisted(() => ({
  directoryOpens: 0,
  directorySyncs: 0,
  /** Awaited by each directory fsync before it runs. */
  beforeSync: undefined as (() => Promise<void>) | undefined,
  /** The directory fsync with this number (from 1) fails with EIO, after the real one ran. */
  failSync: 0,
  /** The next fsync of this directory fails with EIO, after the real one ran. */
  failNextSyncOf: undefined as string | undefined,
  /** Directory fsyncs per directory. */
  syncsOf: new Map<string, number>(),
  /** Before the next staging open: plant a file at the name it is about to create. */
  plantAtStaging: undefined as string | undefined,
  /** The next staged write fails with ENOSPC. */
  failWrite: false,
}));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof FsPromises>();
  const { constants } = await import('node:fs');
  const open: typeof real.open = async (file, flags, mode) => {
    const handle = await real.open(file, flags, mode);
    if (typeof flags !== 'number' || (flags & constants.O_DIRECTORY) === 0) return handle;
    probe.directoryOpens++;
    const sync = handle.sync.bind(handle);
    handle.sync = async () => {
      const number = ++probe.directorySyncs;
      probe.syncsOf.set(String(file), (probe.syncsOf.get(String(file)) ?? 0) + 1);
      await probe.beforeSync?.();
      await sync();
      const failNext = probe.failNextSyncOf === String(file);
      if (failNext) probe.failNextSyncOf = undefined;
      if (number === probe.failSync || failNext) {
        throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
      }
    };
    return handle;
  };
  return { ...real, open, default: { ...real, open } };
});

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof Fs>();
  const open = ((file: string, flags: number, mode: number, done: (error: NodeJS.ErrnoException | null, fd: number) => void) => {
    if (probe.plantAtStaging !== undefined) {
      real.writeFileSync(file, probe.plantAtStaging);
      probe.plantAtStaging = undefined;
    }
    real.open(file, flags, mode, done);
  }) as typeof real.open;
  const write = ((...args: Parameters<typeof real.write>) => {
    if (!probe.failWrite) {
      real.write(...args);
      return;
    }
    probe.failWrite = false;
    const done = args.at(-1) as (error: NodeJS.ErrnoException) => void;
    queueMicrotask(() => { done(Object.assign(new Error('injected ENOSPC'), { code: 'ENOSPC' })); });
  }) as typeof real.write;
  const fs = { ...real, open, write };
  return { ...fs, default: fs };
});

let work: string;
beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-fs-utils-'));
  Object.assign(probe, { directoryOpens: 0, directorySyncs: 0, beforeSync: undefined, failSync: 0, failNextSyncOf: undefined, syncsOf: new Map(), plantAtStaging: undefined, failWrite: false });
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Holds every directory fsync until `release()`; `started` resolves when one is waiting. */
function holdSyncs(): { readonly started: () => Promise<void>; readonly release: () => void } {
  let gate = Promise.withResolvers<undefined>();
  let entered = Promise.withResolvers<undefined>();
  probe.beforeSync = async () => {
    entered.resolve(undefined);
    await gate.promise;
  };
  return {
    started: () => entered.promise,
    release: () => {
      const opened = gate;
      gate = Promise.withResolvers<undefined>();
      entered = Promise.withResolvers<undefined>();
      opened.resolve(undefined);
    },
  };
}

const settled = async (promise: Promise<unknown>): Promise<boolean> => {
  let done = false;
  void promise.then(() => (done = true), () => (done = true));
  for (let tick = 0; tick < 20; tick++) await new Promise((resolve) => setImmediate(resolve));
  return done;
};

it('calls made while a directory fsync runs share the next one, which starts after it; the directory stays open between them', async () => {
  const syncs = holdSyncs();
  const first = syncDirectory(work);
  await syncs.started();
  // Made while the first fsync runs: it must not serve them (their entries may be newer).
  const later = [syncDirectory(work), syncDirectory(work), syncDirectory(work)];
  syncs.release();
  await first;
  await syncs.started();
  expect(probe.directorySyncs, 'one more fsync started, for all three').toBe(2);
  expect(await settled(Promise.race(later)), 'not served by the fsync that began before them').toBe(false);
  syncs.release();
  await Promise.all(later);
  expect(probe.directorySyncs).toBe(2);
  expect(probe.directoryOpens, 'one open for the burst, not one per fsync').toBe(1);
});

it('a failed directory fsync rejects every call it served; the next call opens the directory afresh', async () => {
  const syncs = holdSyncs();
  const first = syncDirectory(work);
  await syncs.started();
  const served = [syncDirectory(work), syncDirectory(work)];
  probe.failSync = 2; // the fsync serving `served` fails
  syncs.release();
  await first;
  await syncs.started();
  const after = syncDirectory(work); // made while the failing fsync runs: served by a later one
  syncs.release();
  for (const call of served) await expect(call).rejects.toMatchObject({ code: 'EIO' });
  await syncs.started();
  syncs.release();
  await expect(after).resolves.toBeUndefined();
  expect(probe.directorySyncs).toBe(3);
  expect(probe.directoryOpens, 'not synced through the descriptor whose fsync failed').toBe(2);
});

it('64 blobs stored at once resolve after directory fsyncs far fewer than the blobs, each after its link', async () => {
  const tmp = path.join(work, 'tmp');
  const blobs = path.join(work, 'blobs');
  await mkdir(tmp);
  await mkdir(blobs);
  const names = Array.from({ length: 64 }, (_, index) => String(index).padStart(64, '0'));
  const created = await Promise.all(names.map((name) => createReadOnlyFile(tmp, path.join(blobs, name), new TextEncoder().encode(`blob ${name}`))));
  expect(created.every(Boolean)).toBe(true);
  expect(probe.directorySyncs).toBeGreaterThanOrEqual(1);
  expect(probe.directorySyncs).toBeLessThan(64);
  expect(probe.directoryOpens).toBeLessThanOrEqual(probe.directorySyncs);
  expect((await readdir(blobs)).sort()).toEqual(names);
  expect(await readdir(tmp), 'no staged name left').toEqual([]);
  for (const name of names) expect(await readFile(path.join(blobs, name), 'utf8')).toBe(`blob ${name}`);
});

it('a file already at the staged name (O_EXCL) is left alone, and the blob is staged under another name', async () => {
  const tmp = path.join(work, 'tmp');
  await mkdir(tmp);
  probe.plantAtStaging = 'left by another writer';
  const target = path.join(work, 'blob');
  expect(await createReadOnlyFile(tmp, target, new TextEncoder().encode('the blob'))).toBe(true);
  expect(probe.plantAtStaging, 'the planted file was there before the staging open').toBeUndefined();
  expect(await readFile(target, 'utf8')).toBe('the blob');
  const left = await readdir(tmp);
  expect(left).toHaveLength(1);
  expect(await readFile(path.join(tmp, left[0]!), 'utf8'), 'never written over').toBe('left by another writer');
});

it('a staged write that fails leaves neither a blob nor a staged file behind', async () => {
  const tmp = path.join(work, 'tmp');
  await mkdir(tmp);
  probe.failWrite = true;
  const target = path.join(work, 'blob');
  await expect(createReadOnlyFile(tmp, target, new TextEncoder().encode('the blob'))).rejects.toMatchObject({ code: 'ENOSPC' });
  expect(probe.failWrite, 'the injected failure was hit').toBe(false);
  expect(await readdir(work)).toEqual(['tmp']);
  expect(await readdir(tmp)).toEqual([]);
  // The same blob then stores normally.
  expect(await createReadOnlyFile(tmp, target, new TextEncoder().encode('the blob'))).toBe(true);
});

it('blobs whose shared directory fsync failed are not known durable: storing one again syncs it, unlike a blob stored durably', async () => {
  const sink = await openFsSink({ dir: path.join(work, 'archive') });
  const blobsDir = path.join(work, 'archive', 'blobs', 'sha256');
  const blobs = Array.from({ length: 16 }, (_, index) => new TextEncoder().encode(`raw bytes ${index}`));
  probe.failNextSyncOf = blobsDir;
  const results = await Promise.allSettled(blobs.map(async (bytes) => sink.putBlob(sha256Hex(bytes), bytes)));
  expect(probe.failNextSyncOf, 'the injected failure was hit').toBeUndefined();
  const failed = blobs.filter((_, index) => results[index]!.status === 'rejected');
  const stored = blobs.filter((_, index) => results[index]!.status === 'fulfilled');
  expect(failed.length, 'the failed fsync served at least one blob').toBeGreaterThan(0);
  for (const result of results) if (result.status === 'rejected') expect(result.reason).toMatchObject({ code: 'EIO' });
  // A blob the failed fsync served is on disk but not known durable: a retry checks it and syncs
  // its directory again before it resolves (the record naming it may be appended only then).
  for (const bytes of failed) {
    const before = probe.syncsOf.get(blobsDir) ?? 0;
    await expect(sink.putBlob(sha256Hex(bytes), bytes)).resolves.toEqual({ created: false });
    expect(probe.syncsOf.get(blobsDir), 'the retry synced the directory').toBeGreaterThan(before);
  }
  // A blob stored durably is known so: storing it again costs no fsync.
  const before = probe.syncsOf.get(blobsDir) ?? 0;
  for (const bytes of stored) await expect(sink.putBlob(sha256Hex(bytes), bytes)).resolves.toEqual({ created: false });
  expect(probe.syncsOf.get(blobsDir) ?? 0).toBe(before);
  for (const bytes of blobs) expect(await sink.getBlob(sha256Hex(bytes))).toEqual(bytes);
  await sink.close();
  expect(await readdir(path.join(work, 'archive', 'tmp')), 'no staged name left').toEqual([]);
});
