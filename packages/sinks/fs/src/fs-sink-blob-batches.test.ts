/**
 * The fs sink writes small blobs in batches on its writer threads: a backlog's burst of blob
 * writes costs the main thread no per-blob file-system calls (each was a thread-pool round trip),
 * and every blob is still stored, read-only, durable and readable as before. Large blobs are
 * written one by one on the thread pool, as before.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as Fs from 'node:fs';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { openFsSink } from './fs-sink.ts';

vi.setConfig({ testTimeout: 60_000 });

/** Files the main thread opened in the archive's tmp/ (where every blob is staged). */
const staged = vi.hoisted(() => ({ opens: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof Fs>();
  const open = ((file: string, ...rest: unknown[]) => {
    if (file.includes(`${path.sep}tmp${path.sep}`)) staged.opens++;
    (real.open as (...args: unknown[]) => void)(file, ...rest);
  }) as typeof real.open;
  const fs = { ...real, open };
  return { ...fs, default: fs };
});

let dir: string;
beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-blob-batches-')), 'archive');
  staged.opens = 0;
});
afterEach(async () => {
  await rm(path.dirname(dir), { recursive: true, force: true });
});

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

it('stores a burst of small blobs with no per-blob file-system call on the main thread', async () => {
  const sink = await openFsSink({ dir });
  await sink.prepareBlobWriters();
  staged.opens = 0; // the archive marker, staged at creation
  const contents = Array.from({ length: 300 }, (_, index) => new Uint8Array(randomBytes(200 + index * 7)));
  const results = await Promise.all(contents.map((bytes) => sink.putBlob(sha(bytes), bytes)));
  expect(results.every((result) => result.created)).toBe(true);
  expect(staged.opens, 'blobs staged by the main thread').toBe(0);
  for (const bytes of contents) {
    expect(await sink.getBlob(sha(bytes))).toEqual(bytes);
    expect((await stat(path.join(dir, 'blobs', 'sha256', sha(bytes)))).mode & 0o777).toBe(0o444);
  }
  // Stored again: known durable, nothing written; a new sink finds each file and checks it.
  expect((await sink.putBlob(sha(contents[0] as Uint8Array), contents[0] as Uint8Array)).created).toBe(false);
  await sink.close();
  const again = await openFsSink({ dir });
  expect((await again.putBlob(sha(contents[1] as Uint8Array), contents[1] as Uint8Array)).created).toBe(false);
  await again.close();
  expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
});

it('never makes a first blob wait for a writer thread to start: it is written alone meanwhile', async () => {
  const sink = await openFsSink({ dir });
  staged.opens = 0; // the archive marker, staged at creation
  const bytes = new Uint8Array(randomBytes(500));
  expect((await sink.putBlob(sha(bytes), bytes)).created).toBe(true);
  expect(staged.opens, 'staged by the main thread: no thread was running yet').toBe(1);
  expect(await sink.getBlob(sha(bytes))).toEqual(bytes);
  await sink.close();
});

it('writes a large blob alone on the thread pool, as before', async () => {
  const sink = await openFsSink({ dir });
  staged.opens = 0; // the archive marker, staged at creation
  const bytes = new Uint8Array(randomBytes(300 * 1024));
  expect((await sink.putBlob(sha(bytes), bytes)).created).toBe(true);
  expect(staged.opens).toBe(1);
  expect(await sink.getBlob(sha(bytes))).toEqual(bytes);
  await sink.close();
});
