/**
 * A segment-hash worker stuck in a read (here: a worker blocked in a real read of a FIFO, as a
 * stuck network file system would block the real one's read) never hangs a seal or a close: the digest rejects with
 * SEGMENT_HASH_TIMEOUT (the seal then hashes the file itself), a discard resolves, and the
 * process hashes every later segment on its own thread. Its own file: it gives up on the
 * process's worker for good.
 */
import { constants, openSync, closeSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { OffchannelError } from '@offchannel/core';
import { mkfifo, settleOrHang } from '@offchannel/core/testing';
import { afterEach, expect, it, vi } from 'vitest';
import { workerSegmentHash } from './segment-hasher.ts';

vi.setConfig({ testTimeout: 60_000 });

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it.skipIf(process.platform === 'win32')('a worker stuck in a read: the digest rejects with SEGMENT_HASH_TIMEOUT, a discard resolves, later segments hash locally', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-segment-hash-timeout-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'segment-fifo');
  mkfifo(fifo);
  // Read and write: opening does not block, and a read of the empty FIFO blocks the worker's thread.
  const stuck = openSync(fifo, constants.O_RDWR);
  const bytes = Buffer.from('sixteen bytes!!!');
  cleanups.push(() => {
    writeSync(stuck, bytes); // lets the blocked read return, so the worker can end
    closeSync(stuck);
  });
  const other = await open(path.join(dir, 'segment'), 'w+');
  cleanups.push(() => other.close());
  await other.write(bytes, 0, bytes.length, 0);

  const options = { timeoutMs: 1_000, workerFile: new URL('./__fixtures__/stuck-segment-hash-worker.ts', import.meta.url) };
  const blocked = workerSegmentHash(() => createHash('sha256'), stuck, options);
  blocked.update(bytes, 0);
  const queued = workerSegmentHash(() => createHash('sha256'), other.fd, options);
  queued.update(bytes, 0); // behind the blocked read on the same worker
  const discarded = queued.discard();
  const digested = blocked.digest();
  const refused = await settleOrHang(fifo, digested);
  expect(OffchannelError.hasCode(refused, 'SEGMENT_HASH_TIMEOUT')).toBe(true);
  expect((refused as Error).message).toMatch(/did not answer within 1000 ms.*check the archive's file system, then restart the process/);
  expect(await settleOrHang(fifo, discarded)).toEqual({ value: undefined });

  // No new worker in this process: the next segment's hash is kept here, and is right.
  const next = workerSegmentHash(() => createHash('sha256'), other.fd, options);
  next.update(bytes, 0);
  expect(await settleOrHang(fifo, next.digest())).toEqual({ value: createHash('sha256').update(bytes).digest('hex') });
});
