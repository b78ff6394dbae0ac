/**
 * A key index update that fails (disk full, I/O error) must never let the index's head move
 * past the keys it lacks: the start-up check (head seq and hash) would pass, and the keys of
 * the failed batch would be missing after a restart — a replayed message captured twice.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OffchannelError } from '../errors/offchannel-error.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { type KeyIndex, openKeyIndex } from './key-index.ts';
import { Recorder } from './recorder.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const stream = 'demo:alice';

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

const keyOf = (index: number): string => `message:{"id":"m${index}"}`;

/** A real SQLite key index whose `add` fails while `failing()` says so (as a full disk would). */
function flaky(file: string, failing: () => boolean): { index: KeyIndex; attempts: number[] } {
  const inner = openKeyIndex({ file });
  const attempts: number[] = [];
  const index: KeyIndex = {
    head: (name) => inner.head(name),
    get: (name, key) => inner.get(name, key),
    add(name, keys, head) {
      attempts.push(keys.length);
      if (failing()) throw new OffchannelError('KEY_INDEX_UNAVAILABLE', 'database or disk is full');
      inner.add(name, keys, head);
    },
    reset: (name) => { inner.reset(name); },
    close: () => { inner.close(); },
  };
  return { index, attempts };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-index-failure-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Captures messages 0…`count - 1`, one batch each; the index's update fails during the batches in `failed`. */
async function capture(storage: MemoryStorage, file: string, count: number, failed: ReadonlySet<number>) {
  let batch = 0;
  const { index, attempts } = flaky(file, () => failed.has(batch));
  const logger = createRecordingLogger();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, keyIndex: index, logger });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (batch = 0; batch < count; batch++) expect(await writer.capture(message(batch))).toMatchObject({ status: 'recorded', seq: batch + 1 });
  // Before a restart the keys of a failed update are still found (in memory).
  for (let i = 0; i < count; i++) expect(await writer.capture(message(i))).toMatchObject({ status: 'duplicate', seq: i + 1 });
  await recorder.close();
  index.close();
  return { attempts, logger };
}

/** Restarts on the same index file and replays every message: each must be a duplicate. */
async function replayAfterRestart(storage: MemoryStorage, file: string, count: number): Promise<void> {
  const index = openKeyIndex({ file });
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, keyIndex: index });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (let i = 0; i < count; i++) expect(await writer.capture(message(i))).toMatchObject({ status: 'duplicate', seq: i + 1 });
  expect(await writer.capture(message(count))).toMatchObject({ status: 'recorded', seq: count + 1 });
  await recorder.close();
  expect(index.head(stream).seq).toBe(count + 1);
  for (let i = 0; i <= count; i++) expect(index.get(stream, keyOf(i))).toBe(i + 1);
  index.close();
}

describe('Recorder with a key index whose update fails', { timeout: 60_000 }, () => {
  it('writes a failed batch\'s keys with the next update, so a restart still finds them', async () => {
    const storage = new MemoryStorage();
    const file = path.join(dir, 'keys.sqlite');
    const { attempts, logger } = await capture(storage, file, 3, new Set([0]));
    // The second update carried the first batch's key with its own.
    expect(attempts).toEqual([1, 2, 1]);
    expect(logger.lines.filter((line) => line.level === 'error')).toHaveLength(1);
    const index = openKeyIndex({ file });
    expect(index.head(stream).seq).toBe(3);
    expect(index.get(stream, keyOf(0))).toBe(1);
    index.close();
    await replayAfterRestart(storage, file, 3);
  });

  it('never moves the head past keys it lacks while the index keeps failing (retried at each doubling)', async () => {
    const storage = new MemoryStorage();
    const file = path.join(dir, 'keys.sqlite');
    // Batch 0 gets in; batch 1 fails and is retried with batches 2 and 4 (2 and 4 waiting, both
    // fail) and batch 8 (8 waiting, the index works again): its records go in with 1–7's.
    const { attempts } = await capture(storage, file, 10, new Set([1, 2, 3, 4, 5, 6]));
    expect(attempts).toEqual([1, 1, 2, 4, 8, 1]);
    await replayAfterRestart(storage, file, 10);
  });

  it('leaves the head before the first missing key when the index never recovers; the restart reads the rest back', async () => {
    const storage = new MemoryStorage();
    const file = path.join(dir, 'keys.sqlite');
    await capture(storage, file, 6, new Set([2, 3, 4, 5]));
    const index = openKeyIndex({ file });
    expect(index.head(stream).seq).toBe(2);
    expect(index.get(stream, keyOf(2))).toBeUndefined();
    index.close();
    await replayAfterRestart(storage, file, 6);
  });
});
