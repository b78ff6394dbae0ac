/**
 * How the fs sink makes an append durable, and what the recorder does when that fails part-way
 * through a run with thousands of captures in flight.
 *
 * The active segment is opened with O_DSYNC (write and sync in one operation, so the disk works
 * on a batch while the main thread acknowledges the previous one). These tests check the flag
 * on the real descriptor (Linux's /proc/self/fdinfo), and that a failed durable write mid-run
 * rejects exactly the batch it belongs to and everything chained behind it, never an earlier
 * one, and leaves nothing unacknowledged in the archive.
 */
import { constants } from 'node:fs';
import { mkdtemp, readFile, readdir, readlink, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CaptureInput, type CaptureResult, Recorder, ZERO_HASH, verifyArchive } from '@offchannel/core';
import { batchAfter } from '@offchannel/core/testing';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { openFsSink } from './fs-sink.ts';
import type * as FsUtils from './fs-utils.ts';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

/** `failOnCall`: the n-th segment write from now fails with EIO (after writing half its bytes). */
const faults = vi.hoisted(() => ({ failOnCall: 0, calls: 0 }));

vi.mock('./fs-utils.ts', async (importOriginal) => {
  const real = await importOriginal<typeof FsUtils>();
  return {
    ...real,
    writeFully: async (handle: Parameters<typeof real.writeFully>[0], bytes: Uint8Array, position: number) => {
      faults.calls++;
      if (faults.calls === faults.failOnCall) {
        // A torn write: part of the batch reaches the file, then the device reports an error.
        await real.writeFully(handle, bytes.subarray(0, bytes.length >> 1), position);
        throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
      }
      return real.writeFully(handle, bytes, position);
    },
  };
});

let dir: string;
const stream = 'demo:alice';
const source = { package: 'test', version: '0' } as const;
beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-durable-')), 'archive');
  faults.failOnCall = 0;
  faults.calls = 0;
});
afterEach(async () => {
  await rm(path.dirname(dir), { recursive: true, force: true });
});

function message(index: number): CaptureInput {
  return {
    kind: 'message',
    key: `message:${index}`,
    sentAt: '2026-11-21T10:00:00Z',
    conversation: { id: `c${index % 7}`, type: 'direct' },
    sender: { id: 'b' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `message ${index} `.repeat(20),
  };
}

/** The open flags of this process's descriptors on `file` (Linux only). */
async function openFlags(file: string): Promise<number[]> {
  const flags: number[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== file) continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '');
    const match = /^flags:\s+([0-7]+)$/m.exec(info);
    if (match) flags.push(Number.parseInt(match[1] as string, 8));
  }
  return flags;
}

it.runIf(process.platform === 'linux')('writes the active segment through an O_DSYNC descriptor, new and after recovery', async () => {
  let sink = await openFsSink({ dir });
  const head = await sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 3));
  const streamDir = await realpath(path.join(dir, 'streams', stream));
  const segments = (await readdir(streamDir)).filter((name) => name.endsWith('.jsonl'));
  expect(segments).toHaveLength(1);
  // /proc names the file with symbolic links (such as a temp dir's) resolved.
  const segment = path.join(streamDir, segments[0] as string);
  const created = await openFlags(segment);
  expect(created).toHaveLength(1);
  expect((created[0] as number) & constants.O_DSYNC, 'a new segment is opened O_DSYNC').toBe(constants.O_DSYNC);
  await sink.close();

  sink = await openFsSink({ dir });
  await sink.appendBatch(batchAfter(stream, head, 2)); // reopens and recovers the active segment
  const recovered = await openFlags(segment);
  expect(recovered).toHaveLength(1);
  expect((recovered[0] as number) & constants.O_DSYNC, 'a recovered segment is reopened O_DSYNC').toBe(constants.O_DSYNC);
  await sink.close();
});

it('a durable write that fails mid-run rejects its batch and everything behind it, never an earlier one', async () => {
  const sink = await openFsSink({ dir });
  // Small batches, so thousands in flight make many group commits; the 4th one fails.
  const recorder = new Recorder({ sink, maxBatchBytes: 16 * 1024 });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  await writer.capture(message(0));
  faults.calls = 0;
  faults.failOnCall = 4;
  const TOTAL = 2000;
  const settled = await Promise.allSettled(Array.from({ length: TOTAL }, (_, index) => writer.capture(message(index + 1))));
  expect(faults.calls, 'the injected failure was hit').toBeGreaterThanOrEqual(4);

  const recorded = settled.flatMap((outcome, index) => (outcome.status === 'fulfilled' ? [{ index: index + 1, result: outcome.value }] : []));
  const firstRejected = settled.findIndex((outcome) => outcome.status === 'rejected');
  expect(firstRejected, 'some captures were rejected').toBeGreaterThan(0);
  // Capture order is chain order: everything before the failed batch is durable, nothing after
  // it was (it chains on the failed batch).
  expect(recorded.length).toBe(firstRejected);
  recorded.forEach(({ index, result }) => {
    expect(result).toMatchObject({ status: 'recorded', seq: index + 1 });
  });
  for (const outcome of settled.slice(firstRejected)) expect(outcome).toMatchObject({ status: 'rejected', reason: { code: 'EIO' } });

  // The stream goes on: the rejected captures, captured again, are recorded after the others.
  const retried: CaptureResult[] = await Promise.all(Array.from({ length: TOTAL - firstRejected }, (_, offset) => writer.capture(message(firstRejected + 1 + offset))));
  expect(retried.every((result) => result.status === 'recorded')).toBe(true);
  await recorder.close();
  await sink.close();

  // Nothing of the torn batch is in the archive: exactly captures 0..TOTAL, once each, in order.
  const reader = await openFsSink({ dir, readOnly: true });
  const keys: string[] = [];
  for await (const stored of reader.read(stream)) keys.push((JSON.parse(Buffer.from(stored.bytes).toString('utf8')) as { key: string }).key);
  expect(keys).toEqual(Array.from({ length: TOTAL + 1 }, (_, index) => `message:${index}`));
  const report = await verifyArchive(reader);
  expect(report.failures).toEqual([]);
  await reader.close();
});

it('uses O_DSYNC only on Linux: on macOS fdatasync is F_FULLFSYNC and O_DSYNC is weaker', async () => {
  const { syncWriteFlag } = await import('./fs-utils.ts');
  expect(syncWriteFlag('linux')).toBe(constants.O_DSYNC);
  expect(constants.O_DSYNC).toBeGreaterThan(0);
  for (const platform of ['darwin', 'win32', 'freebsd'] as const) expect(syncWriteFlag(platform)).toBe(0);
});
