/**
 * Start-up cost does not grow with history: with a persistent key index and signed checkpoints,
 * a recorder reopening a stream reads only the records after what the index holds and after
 * the newest checkpoint — and dedup, checkpoint continuity and rewrite detection stay exact.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
import { type KeyIndex, memoryKeyIndex, openKeyIndex } from './key-index.ts';
import { Recorder } from './recorder.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const stream = 'demo:alice';
const key = generateEd25519NoteKey('archive.example/offchannel');

function message(index: number, text = `message ${index}`): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text };
}

/** A memory sink that counts the records and tiles it hands out. */
function counting(storage: MemoryStorage): { sink: Sink; reads: { records: number; tiles: number } } {
  const inner = createMemorySink(storage);
  const reads = { records: 0, tiles: 0 };
  const sink: Sink = Object.create(inner) as Sink;
  Object.assign(sink, {
    async *read(name: string, options?: { readonly fromSeq?: number }) {
      for await (const stored of inner.read(name, options)) {
        reads.records++;
        yield stored;
      }
    },
    getTile: (name: string, tile: Parameters<Sink['getTile']>[1]) => {
      reads.tiles++;
      return inner.getTile(name, tile);
    },
  });
  return { sink, reads };
}

async function fill(storage: MemoryStorage, index: KeyIndex, from: number, to: number, checkpoints = true): Promise<void> {
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, keyIndex: index, ...(checkpoints ? { checkpoints: { signer: key, everyRecords: 1000 } } : {}) });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  const pending = [];
  for (let i = from; i < to; i++) pending.push(writer.capture(message(i)));
  await Promise.all(pending);
  await recorder.close();
}

function reopen(storage: MemoryStorage, index: KeyIndex) {
  const { sink, reads } = counting(storage);
  const logger = createRecordingLogger();
  const recorder = new Recorder({ sink, allowVolatileSink: true, keyIndex: index, logger, checkpoints: { signer: key, everyRecords: 1000 } });
  return { recorder, reads, logger, writer: recorder.writer({ channel: 'demo', account: 'alice', source }) };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-startup-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Recorder start-up with a persistent key index', { timeout: 60_000 }, () => {
  it('reads no old record at start, yet dedups a replay of the very first message', async () => {
    const storage = new MemoryStorage();
    const file = path.join(dir, 'keys.sqlite');
    let index = openKeyIndex({ file });
    await fill(storage, index, 0, 5000);
    index.close();

    index = openKeyIndex({ file });
    const { recorder, reads, writer } = reopen(storage, index);
    expect(await writer.capture(message(0))).toMatchObject({ status: 'duplicate', seq: 1 });
    expect(await writer.capture(message(4999))).toMatchObject({ status: 'duplicate', seq: 5000 });
    expect(await writer.capture(message(5000))).toMatchObject({ status: 'recorded', seq: 5001 });
    // One record read back (the signed leaf at the checkpoint's size), a handful of tiles.
    expect(reads.records).toBeLessThanOrEqual(1);
    expect(reads.tiles).toBeLessThan(10);
    const [state] = await recorder.checkpoint();
    expect(state).toMatchObject({ size: 5001, signedSize: 5001 });
    await recorder.close();
    index.close();
    const report = await verifyArchive(createMemorySink(storage), { verifiers: [key.verifier] });
    expect(report.failures).toEqual([]);
    expect(report.warnings).toEqual([]);
  });

  it('catches up an index that is behind the archive by reading only the records it lacks', async () => {
    const storage = new MemoryStorage();
    const file = path.join(dir, 'keys.sqlite');
    let index = openKeyIndex({ file });
    await fill(storage, index, 0, 3000);
    index.close();
    // Another host (or a run without the index) appended 2,000 more and signed them.
    await fill(storage, memoryKeyIndex(), 3000, 5000);

    index = openKeyIndex({ file });
    const { recorder, reads, writer } = reopen(storage, index);
    expect(await writer.capture(message(4000))).toMatchObject({ status: 'duplicate', seq: 4001 });
    expect(await writer.capture(message(10))).toMatchObject({ status: 'duplicate', seq: 11 });
    expect(reads.records).toBeLessThanOrEqual(2002);
    expect(reads.records).toBeGreaterThanOrEqual(2000);
    expect(index.head(stream).seq).toBe(5000);
    await recorder.close();
    index.close();
  });

  it('rebuilds an index that disagrees with the archive (another archive, same stream name)', async () => {
    const archiveA = new MemoryStorage();
    const archiveB = new MemoryStorage();
    const file = path.join(dir, 'keys.sqlite');
    let index = openKeyIndex({ file });
    await fill(archiveA, index, 0, 300);
    index.close();
    await fill(archiveB, memoryKeyIndex(), 1000, 1500);

    index = openKeyIndex({ file });
    const { recorder, writer, logger } = reopen(archiveB, index);
    // In A only: a new record in B. In B: a duplicate.
    expect(await writer.capture(message(5))).toMatchObject({ status: 'recorded', seq: 501 });
    expect(await writer.capture(message(1200))).toMatchObject({ status: 'duplicate', seq: 201 });
    expect(logger.lines.some((line) => line.level === 'warn' && /key index disagrees/.test(line.message ?? ""))).toBe(true);
    await recorder.close();
    index.close();
  });

  it('rebuilds an index that is ahead of the archive (restored from an older copy)', async () => {
    const storage = new MemoryStorage();
    const index = memoryKeyIndex();
    index.add(stream, [{ key: 'ghost', seq: 1 }], { seq: 900, hash: 'f'.repeat(64) });
    await fill(storage, memoryKeyIndex(), 0, 100);
    const { recorder, writer } = reopen(storage, index);
    expect(await writer.capture(message(50))).toMatchObject({ status: 'duplicate', seq: 51 });
    expect(index.get(stream, 'ghost')).toBeUndefined();
    await recorder.close();
  });

  it('falls back to reading the stream when the stored tiles are missing, and still signs', async () => {
    const storage = new MemoryStorage();
    const index = memoryKeyIndex();
    await fill(storage, index, 0, 700);
    storage.tiles.clear();
    const { recorder, writer, reads, logger } = reopen(storage, index);
    expect(await writer.capture(message(700))).toMatchObject({ status: 'recorded', seq: 701 });
    expect(reads.records).toBe(700);
    expect(logger.lines.some((line) => /not restored from the stored tiles/.test(line.message ?? ""))).toBe(true);
    const [state] = await recorder.checkpoint();
    expect(state).toMatchObject({ size: 701, signedSize: 701 });
    await recorder.close();
  });

  it('dedups against keys the index took in while look-ups of the same turns were open, batch after batch', async () => {
    // Small batches, so most keys are durable (in the index, out of memory) while others are
    // still being captured; every capture looks its key up in the index's shared read transaction.
    const storage = new MemoryStorage();
    const index = openKeyIndex({ file: path.join(dir, 'keys.sqlite') });
    const logger = createRecordingLogger();
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, keyIndex: index, logger, maxBatchRecords: 16 });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    const first = await Promise.all(Array.from({ length: 300 }, (_, i) => writer.capture(message(i))));
    expect(first.map((result) => result.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    // Each capture launched as the previous one settles: replays of old keys (by then in the
    // index only), interleaved with new keys whose batches become durable meanwhile.
    const replayed: { status: string; seq: number }[] = [];
    for (let i = 0; i < 300; i++) {
      const [old, fresh] = await Promise.all([writer.capture(message(i)), writer.capture(message(300 + i))]);
      replayed.push(old, fresh);
      if (i % 50 === 0) expect(await writer.capture(message(300 + i))).toMatchObject({ status: 'duplicate', seq: fresh.seq });
    }
    expect(replayed.filter((_, n) => n % 2 === 0).map(({ status, seq }) => ({ status, seq }))).toEqual(Array.from({ length: 300 }, (_, i) => ({ status: 'duplicate', seq: i + 1 })));
    expect(replayed.filter((_, n) => n % 2 === 1).map((result) => result.seq)).toEqual(Array.from({ length: 300 }, (_, i) => 301 + i));
    await recorder.close();
    // Every batch's keys went into the index (none left in memory after a failed update).
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
    expect(index.head(stream).seq).toBe(600);
    for (let i = 0; i < 600; i++) expect(index.get(stream, `message:{"id":"m${i}"}`)).toBe(i + 1);
    index.close();
  });
});
