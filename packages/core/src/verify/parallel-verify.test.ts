/**
 * Parallel verification sends workers bounded, line-aligned slices of a segment (not whole
 * segments), in a few buffers that come back, and still reports what the sequential pass does.
 */
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes } from '../json/canonical-json.ts';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { Recorder } from '../recorder/recorder.ts';
import type { Sink } from '../sink/sink.ts';
import { TileBuilder } from '../merkle/tiles.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { SLICE_BYTES, lineSlices } from './parallel-verify.ts';
import { verifyArchive } from './verify-archive.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const encoder = new TextEncoder();

function lines(...texts: string[]): Uint8Array {
  return encoder.encode(texts.map((text) => `${text}\n`).join(''));
}

/** A memory archive of `count` messages from demo:alice with signed checkpoints every `everyRecords`. */
async function recordedArchive(count: number, everyRecords: number, text: (index: number) => string): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: key, everyRecords } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: '@offchannel/test', version: '0.0.0' } });
  for (let index = 0; index < count; index++) {
    await writer.capture({ kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: text(index) });
  }
  await recorder.close();
  return storage;
}

describe('lineSlices', () => {
  it('cuts at newlines, never above the limit, and numbers each slice from its first record', () => {
    const bytes = lines('aaaa', 'bb', 'cccccc', 'd', 'eeeee', 'ff');
    const slices = [...lineSlices(7, bytes, 10)];
    expect(slices.map((slice) => new TextDecoder().decode(slice.bytes))).toEqual(['aaaa\nbb\n', 'cccccc\nd\n', 'eeeee\nff\n']);
    expect(slices.map((slice) => slice.firstSeq)).toEqual([7, 9, 11]);
    for (const slice of slices) expect(slice.bytes.length).toBeLessThanOrEqual(10);
  });

  it('sends a record longer than the limit whole, and a tail without a newline as it is', () => {
    const bytes = encoder.encode('ab\nlonger than ten\ncd\nno newline at the end');
    const slices = [...lineSlices(1, bytes, 10)].map((slice) => [slice.firstSeq, new TextDecoder().decode(slice.bytes)]);
    expect(slices).toEqual([
      [1, 'ab\n'],
      [2, 'longer than ten\n'],
      [3, 'cd\n'],
      [4, 'no newline at the end'],
    ]);
  });

  it('gives nothing for nothing', () => {
    expect([...lineSlices(1, new Uint8Array(0), 10)]).toEqual([]);
  });
});

describe('parallel verification of large segments', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('posts slices of at most SLICE_BYTES to the workers and verifies exactly as one thread does', { timeout: 60_000 }, async () => {
    // 300 records of about 30 KiB in two "segments" of about 4.5 MiB each (over SLICE_BYTES).
    const filler = 'x'.repeat(30_000);
    const storage = await recordedArchive(300, 100, (index) => `${index} ${filler}`);
    const inner = createMemorySink(storage, { readOnly: true });
    const sink = Object.create(inner) as Sink;
    let segmentBytes = 0;
    Object.assign(sink, {
      async *readSegments(stream: string) {
        const records: Uint8Array[] = [];
        for await (const stored of inner.read(stream)) records.push(stored.bytes);
        for (const [firstSeq, part] of [
          [1, records.slice(0, 150)],
          [151, records.slice(150)],
        ] as const) {
          const bytes = Buffer.concat(part.flatMap((line) => [line, Buffer.from('\n')]));
          segmentBytes += bytes.length;
          yield { firstSeq, bytes };
        }
      },
    });
    const posted: number[] = [];
    const original = Object.getOwnPropertyDescriptor(Worker.prototype, 'postMessage')?.value as (this: Worker, message: unknown, transfer?: Parameters<Worker['postMessage']>[1]) => void;
    vi.spyOn(Worker.prototype, 'postMessage').mockImplementation(function (this: Worker, message: unknown, transfer?: Parameters<Worker['postMessage']>[1]) {
      posted.push((message as { bytes: Uint8Array }).bytes.length);
      original.call(this, message, transfer);
    });
    const parallel = await verifyArchive(sink, { verifiers: [key.verifier], workers: 2 });
    const sequential = await verifyArchive(sink, { verifiers: [key.verifier], workers: 0 });
    expect(parallel.ok).toBe(true);
    expect(parallel.streams[0]?.workers, 'verified by the workers').toBe(2);
    expect(parallel.streams[0]?.records).toBe(300);
    expect(posted.length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...posted)).toBeLessThanOrEqual(SLICE_BYTES);
    expect(posted.reduce((sum, size) => sum + size, 0), 'every byte sent once').toBe(segmentBytes);
    const { workers: _workers, ...summary } = parallel.streams[0] ?? {};
    expect(summary).toEqual(sequential.streams[0]);
    expect(parallel.failures).toEqual(sequential.failures);
  });

  it('verifies chunks that a sink hands out in one buffer it reuses for the next chunk', { timeout: 60_000 }, async () => {
    // A sink may yield views of one reused buffer (the fs sink does, to bound memory): each
    // chunk is valid only until the next is asked for, so the pass must copy what it keeps.
    const storage = await recordedArchive(200, 50, (index) => `message ${index} `.repeat(index % 40));
    const inner = createMemorySink(storage, { readOnly: true });
    const sink = Object.create(inner) as Sink;
    Object.assign(sink, {
      async *readSegments(stream: string) {
        const records: Uint8Array[] = [];
        for await (const stored of inner.read(stream)) records.push(stored.bytes);
        const shared = Buffer.alloc(1024 * 1024);
        for (let at = 0; at < records.length; at += 20) {
          const chunk = Buffer.concat(records.slice(at, at + 20).flatMap((line) => [line, Buffer.from('\n')]));
          shared.fill(0x7a); // what is left of the previous chunk is gone
          chunk.copy(shared);
          yield { firstSeq: at + 1, bytes: shared.subarray(0, chunk.length) };
        }
      },
    });
    const parallel = await verifyArchive(sink, { verifiers: [key.verifier], workers: 2 });
    const sequential = await verifyArchive(sink, { verifiers: [key.verifier], workers: 0 });
    expect(parallel.failures).toEqual([]);
    expect(parallel.streams[0]?.workers, 'verified by the workers, not left to the sequential pass').toBe(2);
    const { workers: _workers, ...summary } = parallel.streams[0] ?? {};
    expect(summary).toEqual(sequential.streams[0]);
  });

  it('leaves a line longer than a slice to the sequential pass instead of sending it to a worker', { timeout: 60_000 }, async () => {
    const storage = await recordedArchive(20, 10, (index) => `message ${index}`);
    const inner = createMemorySink(storage, { readOnly: true });
    const sink = Object.create(inner) as Sink;
    Object.assign(sink, {
      async *readSegments(stream: string) {
        const records: Uint8Array[] = [];
        for await (const stored of inner.read(stream)) records.push(stored.bytes);
        yield { firstSeq: 1, bytes: Buffer.concat(records.slice(0, 10).flatMap((line) => [line, Buffer.from('\n')])) };
        // A planted line of 5 MiB where records 11… belong.
        yield { firstSeq: 11, bytes: Buffer.concat([Buffer.alloc(5 * 1024 * 1024, 0x61), Buffer.from('\n')]) };
      },
    });
    const posted: number[] = [];
    const original = Object.getOwnPropertyDescriptor(Worker.prototype, 'postMessage')?.value as (this: Worker, message: unknown, transfer?: Parameters<Worker['postMessage']>[1]) => void;
    vi.spyOn(Worker.prototype, 'postMessage').mockImplementation(function (this: Worker, message: unknown, transfer?: Parameters<Worker['postMessage']>[1]) {
      posted.push((message as { bytes: Uint8Array }).bytes.length);
      original.call(this, message, transfer);
    });
    const report = await verifyArchive(sink, { verifiers: [key.verifier], workers: 2 });
    expect(Math.max(0, ...posted)).toBeLessThanOrEqual(SLICE_BYTES);
    expect(report.streams[0]?.workers, 'verified on one thread').toBeUndefined();
    expect(report.streams[0]?.records).toBe(20);
  });

  it('reads the next slices while it stitches results, and falls back to one thread when a read fails midway', { timeout: 60_000 }, async () => {
    const storage = await recordedArchive(240, 60, (index) => `message ${index} `.repeat(1 + (index % 7)));
    const inner = createMemorySink(storage, { readOnly: true });
    const chunked = (failAfter: number | undefined): Sink => {
      const sink = Object.create(inner) as Sink;
      Object.assign(sink, {
        async *readSegments(stream: string) {
          const records: Uint8Array[] = [];
          for await (const stored of inner.read(stream)) records.push(stored.bytes);
          for (let at = 0; at < records.length; at += 12) {
            if (failAfter !== undefined && at >= failAfter) throw Object.assign(new Error('read failed'), { code: 'EIO' });
            // Slow reads (file I/O): the results of the slices already sent arrive meanwhile.
            await new Promise((resolve) => setTimeout(resolve, 2));
            yield { firstSeq: at + 1, bytes: Buffer.concat(records.slice(at, at + 12).flatMap((line) => [line, Buffer.from('\n')])) };
          }
        },
      });
      return sink;
    };
    const sequential = await verifyArchive(inner, { verifiers: [key.verifier], workers: 0 });
    const parallel = await verifyArchive(chunked(undefined), { verifiers: [key.verifier], workers: 2 });
    expect(parallel.failures).toEqual([]);
    expect(parallel.streams[0]?.workers, 'verified by the workers').toBe(2);
    const { workers: _workers, ...summary } = parallel.streams[0] ?? {};
    expect(summary).toEqual(sequential.streams[0]);
    // A read that fails after some slices were sent and verified: nothing half-done is reported.
    for (const failAfter of [24, 120, 228]) {
      const failed = await verifyArchive(chunked(failAfter), { verifiers: [key.verifier], workers: 2 });
      expect(failed.streams[0]?.workers, `read failing after ${failAfter} records: verified on one thread`).toBeUndefined();
      expect(failed.streams[0]).toEqual(sequential.streams[0]);
      expect(failed.failures).toEqual(sequential.failures);
    }
  });

  it('takes the tiles the workers hashed whole, and still finds a rewritten stream at every signed size', { timeout: 60_000 }, async () => {
    const appendTile = vi.spyOn(TileBuilder.prototype, 'appendTile');
    /** `records`' sink, in chunks of 600 records (whole tiles in each), with `signed`'s checkpoints and tiles. */
    const chunked = (records: MemoryStorage, signed: MemoryStorage): Sink => {
      const inner = createMemorySink(records, { readOnly: true });
      const sink = Object.create(createMemorySink(signed, { readOnly: true })) as Sink;
      Object.assign(sink, {
        read: inner.read.bind(inner),
        async *readSegments(stream: string) {
          const lines: Uint8Array[] = [];
          for await (const stored of inner.read(stream)) lines.push(stored.bytes);
          for (let at = 0; at < lines.length; at += 600) yield { firstSeq: at + 1, bytes: Buffer.concat(lines.slice(at, at + 600).flatMap((line) => [line, Buffer.from('\n')])) };
        },
      });
      return sink;
    };
    // Signed every 512 records (at tile ends: compared after a whole tile) and every 300 (inside tiles: leaf by leaf).
    for (const every of [512, 300]) {
      const storage = await recordedArchive(1100, every, (index) => `message ${index}`);
      // The same messages recorded again: each record differs (capture time), the chain is intact.
      const rewritten = await recordedArchive(1100, every, (index) => `message ${index}`);
      appendTile.mockClear();
      const intact = await verifyArchive(chunked(storage, storage), { verifiers: [key.verifier], workers: 2 });
      const sequential = await verifyArchive(chunked(storage, storage), { verifiers: [key.verifier], workers: 0 });
      expect(intact.failures, `every ${every}`).toEqual([]);
      expect(intact.streams[0]?.workers).toBe(2);
      const { workers: _workers, ...summary } = intact.streams[0] ?? {};
      expect(summary).toEqual(sequential.streams[0]);
      expect(appendTile.mock.calls.length, 'whole tiles taken from the workers').toBeGreaterThan(0);
      const parallel = await verifyArchive(chunked(rewritten, storage), { verifiers: [key.verifier], workers: 2 });
      const alone = await verifyArchive(chunked(rewritten, storage), { verifiers: [key.verifier], workers: 0 });
      expect(parallel.streams[0]?.workers).toBe(2);
      const mismatches = parallel.failures.filter((failure) => failure.code === 'CHECKPOINT_ROOT_MISMATCH').map((failure) => failure.seq);
      expect(mismatches, `every ${every}: each signed size`).toEqual(every === 512 ? [512, 1024, 1100] : [300, 600, 900, 1100]);
      expect(parallel.failures).toEqual(alone.failures);
    }
  });

  it('finds a reused idempotency key from the workers\' key fingerprints, across slices, as one thread does', { timeout: 60_000 }, async () => {
    // A well-linked chain of 40 records whose record 31 reuses record 3's key, in two segments.
    const sink = createMemorySink();
    const records: Uint8Array[] = [];
    let prev = ZERO_HASH;
    for (let seq = 1; seq <= 40; seq++) {
      const record = { v: 1, kind: 'message', stream: 'demo:alice', seq, prev, key: seq === 31 ? 'message:m3' : `message:m${seq}`, channel: 'demo', account: 'alice', capturedAt: '2026-11-21T09:00:00.000Z', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', source: { package: '@offchannel/test', version: '0.0.0' }, native: { id: `m${seq}` }, text: `message ${seq}` };
      const bytes = canonicalBytes(record);
      records.push(bytes);
      prev = sha256Hex(bytes);
    }
    await sink.appendBatch({ stream: 'demo:alice', firstSeq: 1, prev: ZERO_HASH, records });
    const segmented = Object.create(sink) as Sink;
    Object.assign(segmented, {
      async *readSegments() {
        yield { firstSeq: 1, bytes: Buffer.concat(records.slice(0, 20).flatMap((line) => [line, Buffer.from('\n')])) };
        yield { firstSeq: 21, bytes: Buffer.concat(records.slice(20).flatMap((line) => [line, Buffer.from('\n')])) };
      },
    });
    const parallel = await verifyArchive(segmented, { workers: 2 });
    const sequential = await verifyArchive(segmented, { workers: 0 });
    expect(parallel.streams[0]?.workers, 'verified by the workers').toBe(2);
    expect(parallel.failures).toEqual([expect.objectContaining({ stream: 'demo:alice', seq: 31, code: 'DUPLICATE_KEY', message: 'stream demo:alice seq 31: idempotency key already used by seq 3' })]);
    expect(parallel.failures).toEqual(sequential.failures);
  });
});
