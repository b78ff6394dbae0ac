import { describe, expect, it } from 'vitest';
import { InvalidRecordError, InvalidStreamNameError, RecordTooLargeError } from '../errors/record-errors.ts';
import { SinkUnsuitableError } from '../errors/sink-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import { canonicalize } from '../json/canonical-json.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { decodeRecord } from '../record/encode-record.ts';
import { TEXT_INLINE_MAX_BYTES } from '../record/record.ts';
import type { AppendBatch, Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
import { type KeyIndex, memoryKeyIndex } from './key-index.ts';
import { Recorder } from './recorder.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const target = { channel: 'demo', account: 'alice', source };

function message(index: number, extra: Partial<CaptureInput> = {}): CaptureInput {
  return {
    kind: 'message',
    sentAt: new Date(Date.UTC(2026, 10, 21, 9, 0, index % 60)),
    conversation: { id: 'chat-1', type: 'direct' },
    sender: { id: 'bob' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `message ${index}`,
    ...extra,
  };
}

/** A sink wrapper that logs calls and can fail the next appends. */
function spySink(inner: Sink = createMemorySink()) {
  const calls: string[] = [];
  const batches: AppendBatch[] = [];
  let failAppends = 0;
  const sink: Sink = {
    specVersion: inner.specVersion,
    kind: 'spy',
    readOnly: false,
    guarantees: { ...inner.guarantees, durability: 'fsync' },
    head: (stream) => inner.head(stream),
    read: (stream, options) => inner.read(stream, options),
    streams: () => inner.streams(),
    async appendBatch(batch) {
      calls.push(`append:${batch.firstSeq}+${batch.records.length}`);
      batches.push(batch);
      if (failAppends > 0) {
        failAppends--;
        throw Object.assign(new Error('disk on fire'), { code: 'EIO' });
      }
      return inner.appendBatch(batch);
    },
    async putBlob(sha256, bytes) {
      calls.push(`blob:${sha256.slice(0, 8)}`);
      return inner.putBlob(sha256, bytes);
    },
    getBlob: (sha256) => inner.getBlob(sha256),
    statBlob: (sha256) => inner.statBlob(sha256),
    putCheckpoint: (stream, size, file, bytes) => inner.putCheckpoint(stream, size, file, bytes),
    getCheckpoint: (stream, size, file) => inner.getCheckpoint(stream, size, file),
    checkpoints: (stream) => inner.checkpoints(stream),
    putTile: (stream, tile, bytes) => inner.putTile(stream, tile, bytes),
    getTile: (stream, tile) => inner.getTile(stream, tile),
    close: () => inner.close(),
  };
  return {
    sink,
    calls,
    batches,
    failNext(count: number) {
      failAppends = count;
    },
  };
}

async function records(sink: Sink, stream = 'demo:alice') {
  const out = [];
  for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
  return out;
}

describe('Recorder', () => {
  it('sequences, chains and group-commits concurrent captures', async () => {
    const spy = spySink();
    const writer = new Recorder({ sink: spy.sink }).writer(target);
    const results = await Promise.all(Array.from({ length: 500 }, (_, index) => writer.capture(message(index))));
    expect(results.map((result) => result.seq)).toEqual(Array.from({ length: 500 }, (_, index) => index + 1));
    expect(results.every((result) => result.status === 'recorded')).toBe(true);
    expect(spy.batches.length).toBeLessThanOrEqual(3);
    const stored = await records(spy.sink);
    expect(stored.map((record) => record.seq)).toEqual(results.map((result) => result.seq));
    expect(stored[0]).toMatchObject({ v: 1, stream: 'demo:alice', channel: 'demo', account: 'alice', key: 'message:{"id":"m0"}', source });
    const report = await verifyArchive(spy.sink);
    expect(report.ok).toBe(true);
    expect(report.streams[0]?.head.seq).toBe(500);
  });

  it.each([
    // Mixed sizes and scripts (UTF-8 longer than UTF-16), and one record alone above maxBatchBytes.
    { maxBatchRecords: 7, maxBatchBytes: 4096, texts: Array.from({ length: 60 }, (_, index) => (index === 30 ? 'ä'.repeat(3000) : `${'Grüße 世界 🌍 '.repeat(index % 9)}#${index}`)) },
    // Batches that outgrow their first buffer (16 KiB) up to maxBatchBytes.
    { maxBatchRecords: 4096, maxBatchBytes: 100_000, texts: Array.from({ length: 400 }, (_, index) => `${'€ and 5y at 4.12 '.repeat(1 + (index % 40))}#${index}`) },
  ])('hands each batch over as stored lines, every record a view of them, within the batch limits ($maxBatchBytes bytes)', async ({ maxBatchRecords, maxBatchBytes, texts }) => {
    const spy = spySink();
    const writer = new Recorder({ sink: spy.sink, maxBatchRecords, maxBatchBytes }).writer(target);
    const results = await Promise.all(texts.map((text, index) => writer.capture(message(index, { text }))));
    expect(results.map((result) => result.seq)).toEqual(texts.map((_, index) => index + 1));
    let seq = 1;
    for (const batch of spy.batches) {
      const lines = batch.lines as Uint8Array;
      expect(lines).toBeInstanceOf(Uint8Array);
      expect(batch.firstSeq).toBe(seq);
      expect(batch.records.length).toBeLessThanOrEqual(maxBatchRecords);
      if (batch.records.length > 1) expect(lines.length).toBeLessThanOrEqual(maxBatchBytes);
      expect(Buffer.from(lines).equals(Buffer.concat(batch.records.flatMap((record) => [record, Buffer.from('\n')])))).toBe(true);
      let offset = 0;
      for (const record of batch.records) {
        expect(record.buffer).toBe(lines.buffer);
        expect(record.byteOffset).toBe(lines.byteOffset + offset);
        offset += record.length + 1;
      }
      seq += batch.records.length;
    }
    const longest = Math.max(...spy.batches.map((batch) => (batch.lines as Uint8Array).length));
    if (maxBatchBytes < 10_000) expect(spy.batches.some((batch) => batch.records.length === 1 && (batch.lines as Uint8Array).length > maxBatchBytes)).toBe(true);
    else expect(longest).toBeGreaterThan(64 * 1024);
    const stored = await records(spy.sink);
    expect(stored.map((record) => record.text)).toEqual(texts);
    expect((await verifyArchive(spy.sink)).ok).toBe(true);
  });

  it('answers a replay of a record still in flight only once the record is durable, and counts each outcome once', async () => {
    const spy = spySink();
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const gated: Sink = { ...spy.sink, appendBatch: async (batch) => gate.then(() => spy.sink.appendBatch(batch)) };
    const recorder = new Recorder({ sink: gated });
    const writer = recorder.writer(target);
    const settled: string[] = [];
    const first = writer.capture(message(1)).then((result) => (settled.push(`first:${result.status}`), result));
    const again = writer.capture(message(1)).then((result) => (settled.push(`again:${result.status}`), result));
    const lookup = writer.lookup('message:{"id":"m1"}').then((seq) => (settled.push(`lookup:${String(seq)}`), seq));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toEqual([]);
    open();
    expect(await lookup).toBe(1);
    expect(await again).toMatchObject({ status: 'duplicate', seq: 1 });
    expect(await first).toMatchObject({ status: 'recorded', seq: 1 });
    expect(settled.slice(0, 2)).toEqual(['first:recorded', 'again:duplicate']);
    // A replay whose original's append fails fails with it (nothing was acknowledged); counted once.
    spy.failNext(1);
    const failing = [writer.capture(message(2)), writer.capture(message(2)), writer.capture(message(3))];
    const outcomes = await Promise.allSettled(failing);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(recorder.stats).toEqual({ recorded: 1, duplicates: 1, failed: 2 });
    expect(await writer.capture(message(2))).toMatchObject({ status: 'recorded', seq: 2 });
    expect(recorder.stats).toEqual({ recorded: 2, duplicates: 1, failed: 2 });
  });

  it('resolves each capture with the hash of its stored record', async () => {
    const spy = spySink();
    const writer = new Recorder({ sink: spy.sink }).writer(target);
    const result = await writer.capture(message(1));
    const stored = spy.batches[0]?.records[0] as Uint8Array;
    expect(result).toEqual({ status: 'recorded', stream: 'demo:alice', key: 'message:{"id":"m1"}', seq: 1, hash: sha256Hex(stored) });
  });

  it('records a replayed event once — sequentially, concurrently and after a restart', async () => {
    const storage = new MemoryStorage();
    const first = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true }).writer(target);
    const original = await first.capture(message(1));
    expect(await first.capture(message(1, { text: 'redelivered with other content' }))).toEqual({ status: 'duplicate', stream: 'demo:alice', key: original.key, seq: 1 });
    const concurrent = await Promise.all([first.capture(message(2)), first.capture(message(2)), first.capture(message(2))]);
    expect(concurrent.map((result) => result.status)).toEqual(['recorded', 'duplicate', 'duplicate']);
    expect(new Set(concurrent.map((result) => result.seq))).toEqual(new Set([2]));

    const restarted = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true }).writer(target);
    expect((await restarted.capture(message(1))).status).toBe('duplicate');
    expect(await restarted.lookup('message:{"id":"m2"}')).toBe(2);
    expect(await restarted.capture(message(3))).toMatchObject({ status: 'recorded', seq: 3 });
    expect((await records(createMemorySink(storage))).map((record) => record.key)).toEqual(['message:{"id":"m1"}', 'message:{"id":"m2"}', 'message:{"id":"m3"}']);
  });

  it('stores every blob before the record that names it', async () => {
    const spy = spySink();
    const writer = new Recorder({ sink: spy.sink }).writer(target);
    const photo = new Uint8Array(5000).fill(7);
    const raw = new TextEncoder().encode('{"platform":"bytes"}');
    const result = await writer.capture(message(1, { attachments: [{ bytes: photo, mime: 'image/jpeg', name: 'photo.jpg' }, { status: 'unavailable', reason: 'view-once' }], raw: { bytes: raw, format: 'demo.json' } }));
    const appendIndex = spy.calls.findIndex((call) => call.startsWith('append'));
    expect(spy.calls.slice(0, appendIndex).sort()).toEqual([`blob:${sha256Hex(photo).slice(0, 8)}`, `blob:${sha256Hex(raw).slice(0, 8)}`].sort());
    const [record] = await records(spy.sink);
    expect(record?.attachments).toEqual([
      { status: 'stored', sha256: sha256Hex(photo), size: 5000, mime: 'image/jpeg', name: 'photo.jpg' },
      { status: 'unavailable', reason: 'view-once' },
    ]);
    expect(record?.raw).toEqual({ sha256: sha256Hex(raw), size: raw.length, format: 'demo.json' });
    expect(result.status).toBe('recorded');
    expect((await verifyArchive(spy.sink)).ok).toBe(true);
  });

  it('moves long text into a blob and keeps it verifiable', async () => {
    const spy = spySink();
    const writer = new Recorder({ sink: spy.sink }).writer(target);
    const text = '€'.repeat(TEXT_INLINE_MAX_BYTES / 3 + 10);
    await writer.capture(message(1, { text }));
    const [record] = await records(spy.sink);
    expect(record?.text).toBeUndefined();
    const bytes = await spy.sink.getBlob(record?.textBlob?.sha256 ?? '');
    expect(Buffer.from(bytes ?? []).toString('utf8')).toBe(text);
    const short = '€'.repeat(100);
    await writer.capture(message(2, { text: short }));
    expect((await records(spy.sink))[1]?.text).toBe(short);
  });

  it('rejects invalid and oversize input with typed errors and writes nothing', async () => {
    const spy = spySink();
    const writer = new Recorder({ sink: spy.sink }).writer(target);
    await expect(writer.capture({ ...message(1), sender: { id: '' } })).rejects.toMatchObject({ code: 'INVALID_RECORD', field: 'record.sender.id' });
    await expect(writer.capture({ ...message(1), seq: 5 } as CaptureInput)).rejects.toBeInstanceOf(InvalidRecordError);
    await expect(writer.capture({ ...message(1), kind: 'nonsense' } as unknown as CaptureInput)).rejects.toMatchObject({ field: 'record.kind' });
    await expect(writer.capture(null as unknown as CaptureInput)).rejects.toBeInstanceOf(InvalidRecordError);
    const huge = { ...message(1), conversation: { id: 'c', type: 'group' as const, title: 'x'.repeat(1000) }, mentions: Array.from({ length: 1000 }, (_, index) => `${'m'.repeat(100)}${index}`) };
    await expect(writer.capture(huge)).rejects.toBeInstanceOf(RecordTooLargeError);
    await expect(writer.capture({ ...huge, attachments: [{ bytes: new Uint8Array(10), mime: 'a/b' }] })).rejects.toBeInstanceOf(RecordTooLargeError);
    expect(spy.calls).toEqual([]);
    expect(await writer.capture(message(1))).toMatchObject({ seq: 1 });
  });

  it('refuses hostile stream names and non-JSON values before anything is written', async () => {
    const spy = spySink();
    const recorder = new Recorder({ sink: spy.sink });
    for (const [channel, account] of [['demo', '../../etc'], ['demo', 'a/b'], ['../x', 'alice'], ['demo', '.hidden'], ['DEMO', 'alice'], ['demo', 'a\u0000b']]) {
      expect(() => recorder.writer({ channel: channel as string, account: account as string, source })).toThrow(InvalidStreamNameError);
    }
    await expect(recorder.capture('demo:../x', source, message(1))).rejects.toBeInstanceOf(InvalidStreamNameError);
    const writer = recorder.writer(target);
    await expect(writer.capture(message(1, { meta: { amount: 12.5 } }))).rejects.toMatchObject({ field: 'record.meta.amount' });
    await expect(writer.capture(message(1, { text: 'lone \ud800 surrogate' }))).rejects.toMatchObject({ field: 'record.text' });
    await expect(writer.capture(message(1, { meta: { big: 2 ** 60 } }))).rejects.toMatchObject({ field: 'record.meta.big' });
    expect(spy.calls).toEqual([]);
  });

  it('rejects captures whose batch failed, then resynchronizes without gaps', async () => {
    const spy = spySink();
    const logger = createRecordingLogger();
    const writer = new Recorder({ sink: spy.sink, logger }).writer(target);
    await writer.capture(message(0));
    spy.failNext(1);
    const failed = await Promise.allSettled([writer.capture(message(1)), writer.capture(message(2)), writer.capture(message(1))]);
    expect(failed.map((result) => result.status)).toEqual(['rejected', 'rejected', 'rejected']);
    // The failed keys are not remembered: capturing them again records them.
    const retried = await Promise.all([writer.capture(message(1)), writer.capture(message(2))]);
    expect(retried.map((result) => [result.status, result.seq])).toEqual([
      ['recorded', 2],
      ['recorded', 3],
    ]);
    expect((await verifyArchive(spy.sink)).ok).toBe(true);
    expect(logger.lines.some((line) => line.level === 'error' && line.message?.includes('append failed'))).toBe(true);
  });

  it('picks up records another recorder appended (resync after conflict)', async () => {
    const storage = new MemoryStorage();
    const a = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true }).writer(target);
    const b = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true }).writer(target);
    await a.capture(message(1));
    await b.capture(message(2)); // b reads the head written by a
    await expect(a.capture(message(3))).rejects.toMatchObject({ code: 'SINK_CONFLICT' });
    expect(await a.capture(message(2))).toMatchObject({ status: 'duplicate', seq: 2 });
    expect(await a.capture(message(3))).toMatchObject({ status: 'recorded', seq: 3 });
    expect((await verifyArchive(createMemorySink(storage))).ok).toBe(true);
  });

  it('records what was validated even if the caller mutates its objects while the capture waits', async () => {
    const spy = spySink();
    const writer = new Recorder({ sink: spy.sink }).writer(target);
    const input = message(1, { sender: { id: 'bob', name: 'Bob' }, meta: { tag: 'original' } });
    const pending = writer.capture(input); // the first capture waits for the stream head: slow path
    (input.sender as { id: string }).id = 'x'.repeat(5000);
    (input.meta as Record<string, unknown>).tag = { nested: true };
    (input.conversation as unknown as Record<string, unknown>).bogus = 1;
    await pending;
    const [record] = await records(spy.sink);
    expect(record?.sender).toEqual({ id: 'bob', name: 'Bob' });
    expect(record?.meta).toEqual({ tag: 'original' });
    expect((await verifyArchive(spy.sink)).ok).toBe(true);
  });

  it('checks that an attachment given as already stored names a blob the sink has', async () => {
    const writer = new Recorder({ sink: spySink().sink }).writer(target);
    const missing = { status: 'stored', sha256: sha256Hex(new Uint8Array([7])), size: 1, mime: 'image/png' } as const;
    await expect(writer.capture(message(1, { attachments: [missing as unknown as { status: 'unavailable'; reason: string }] }))).rejects.toMatchObject({ code: 'BLOB_MISSING' });
  });

  it('stamps each record with its own clock reading, within a millisecond and across them', async () => {
    const sink = createMemorySink();
    const base = Date.UTC(2026, 10, 21, 9, 30, 0, 0);
    // Two captures in each millisecond, then the clock steps: every record has its own time.
    const times = [base, base, base + 1, base + 1, base + 1000, base + 1000 + 0.5, base + 86_400_000];
    let call = 0;
    const recorder = new Recorder({ sink, allowVolatileSink: true, clock: () => new Date(times[Math.min(call++, times.length - 1)] as number) });
    const writer = recorder.writer(target);
    for (let index = 0; index < times.length; index++) await writer.capture(message(index));
    const stored = await records(sink);
    expect(stored.map((record) => record.capturedAt)).toEqual(times.map((time) => new Date(time).toISOString()));
    // An invalid date is refused as before (RangeError), never replaced by the last good time.
    const broken = new Recorder({ sink: createMemorySink(), allowVolatileSink: true, clock: () => new Date(Number.NaN) });
    await expect(broken.writer(target).capture(message(99))).rejects.toThrow(RangeError);
  });

  it('serializes records of changing shapes exactly as canonicalize does', async () => {
    const sink = createMemorySink();
    const recorder = new Recorder({ sink, allowVolatileSink: true });
    const writer = recorder.writer(target);
    // The same fields in other orders, and fields that come and go: the stored bytes are canonical.
    await writer.capture(message(1));
    await writer.capture({ text: 'b', native: { id: 'x2' }, sentAt: '2026-11-21T09:00:00Z', direction: 'outbound', sender: { id: 'bob' }, conversation: { type: 'direct', id: 'chat-1' }, kind: 'message' });
    await writer.capture({ ...message(3), replyTo: { id: 'm1' }, forwarded: true });
    await writer.capture(message(4));
    for await (const stored of sink.read('demo:alice')) {
      expect(new TextDecoder().decode(stored.bytes)).toBe(canonicalize(JSON.parse(new TextDecoder().decode(stored.bytes))));
    }
    expect((await verifyArchive(sink)).ok).toBe(true);
  });

  it('refuses nonsensical batch limits', () => {
    for (const maxBatchRecords of [0, -1, Number.NaN, 1.5, 200_000]) expect(() => new Recorder({ sink: spySink().sink, maxBatchRecords })).toThrow(RangeError);
    expect(() => new Recorder({ sink: spySink().sink, maxBatchBytes: 0 })).toThrow(RangeError);
  });

  it('refuses unsuitable sinks', () => {
    const memory = createMemorySink();
    expect(() => new Recorder({ sink: memory })).toThrow(SinkUnsuitableError);
    expect(() => new Recorder({ sink: { ...spySink().sink, specVersion: 2 as 1 } })).toThrow(/spec 2/);
    expect(() => new Recorder({ sink: spySink().sink, requireRetention: 'compliance-lock' })).toThrow(/compliance-lock/);
    expect(() => new Recorder({ sink: createMemorySink(new MemoryStorage(), { readOnly: true }), allowVolatileSink: true })).toThrow(/read-only/);
  });

  it('refuses a blob ref that is not in the sink', async () => {
    const writer = new Recorder({ sink: spySink().sink }).writer(target);
    const missing = { sha256: sha256Hex(new Uint8Array([9])), size: 1 };
    await expect(writer.capture(message(1, { raw: { blob: missing, format: 'x' } }))).rejects.toMatchObject({ code: 'BLOB_MISSING' });
    const stored = await writer.putBlob(new Uint8Array([9]));
    expect(await writer.capture(message(1, { raw: { blob: stored, format: 'x' } }))).toMatchObject({ status: 'recorded' });
  });

  it('close() waits for captures in flight and refuses new ones', async () => {
    const spy = spySink();
    const recorder = new Recorder({ sink: spy.sink });
    const writer = recorder.writer(target);
    const inflight = Array.from({ length: 50 }, (_, index) => writer.capture(message(index, { raw: { bytes: new Uint8Array([index]), format: 'x' } })));
    await recorder.close();
    expect(spy.batches.reduce((sum, batch) => sum + batch.records.length, 0)).toBe(50);
    expect((await Promise.all(inflight)).length).toBe(50);
    await expect(writer.capture(message(99))).rejects.toMatchObject({ code: 'CLOSED' });
    expect(recorder.stats).toEqual({ recorded: 50, duplicates: 0, failed: 0 });
  });

  it('never logs message text, even when captures fail', async () => {
    const spy = spySink();
    const logger = createRecordingLogger();
    const writer = new Recorder({ sink: spy.sink, logger }).writer(target);
    const secret = 'SECRET-MERGER-TERMS-4711';
    await writer.capture(message(1, { text: secret }));
    spy.failNext(1);
    await expect(writer.capture(message(2, { text: secret }))).rejects.toThrow();
    await expect(writer.capture(message(3, { text: secret, sender: { id: '' } }))).rejects.toThrow();
    await writer.capture(message(4, { text: secret }));
    expect(logger.lines.length).toBeGreaterThan(0);
    expect(logger.text()).not.toContain(secret);
  });
});

describe('capture order', () => {
  it('sequences records in the order they were captured even when an earlier blob takes longer to store', async () => {
    const inner = createMemorySink();
    const slow = new Set<string>();
    const sink = new Proxy(inner, {
      get(target, property) {
        if (property === 'putBlob') {
          return async (sha256: string, bytes: Uint8Array) => {
            if (slow.has(sha256)) await new Promise((resolve) => setTimeout(resolve, 50));
            return target.putBlob(sha256, bytes);
          };
        }
        const value: unknown = Reflect.get(target, property);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const recorder = new Recorder({ sink, allowVolatileSink: true });
    const writer = recorder.writer(target);
    const big = new Uint8Array(64).fill(1);
    slow.add(sha256Hex(big));
    const results = await Promise.all([
      writer.capture(message(1, { raw: { bytes: big, format: 'test.raw' } })),
      writer.capture(message(2, { raw: { bytes: new Uint8Array([2]), format: 'test.raw' } })),
      writer.capture(message(3)),
    ]);
    expect(results.map((result) => result.seq)).toEqual([1, 2, 3]);
    const texts: (string | undefined)[] = [];
    for await (const stored of inner.read('demo:alice')) texts.push(decodeRecord(stored.bytes).record.text);
    expect(texts).toEqual(['message 1', 'message 2', 'message 3']);
    await recorder.close();
  });
});

describe('group commit pipeline', () => {
  it('starts writing the next batch before indexing the keys of the one that became durable', async () => {
    const spy = spySink();
    const memory = memoryKeyIndex();
    /** Per `add`, how many appends had been started by then. */
    const appendsAtIndex: number[] = [];
    const keyIndex: KeyIndex = {
      ...memory,
      add(stream, keys, head) {
        appendsAtIndex.push(spy.batches.length);
        memory.add(stream, keys, head);
      },
    };
    const writer = new Recorder({ sink: spy.sink, keyIndex, maxBatchRecords: 2 }).writer(target);
    const results = await Promise.all(Array.from({ length: 6 }, (_, index) => writer.capture(message(index))));
    expect(results.map((result) => result.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(spy.calls).toEqual(['append:1+2', 'append:3+2', 'append:5+2']);
    // Batch 1's keys are indexed after batch 2's write started, batch 2's after batch 3's.
    expect(appendsAtIndex).toEqual([2, 3, 3]);
    // Still exactly as strong: every key is indexed once its record is durable.
    expect(results.map((result) => memory.get('demo:alice', result.key))).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

describe('memory key index', () => {
  it('holds only durable keys while records are in flight, and another recorder resumes from it without re-reading', async () => {
    const storage = new MemoryStorage();
    const keyIndex = memoryKeyIndex();
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const inner = spySink(createMemorySink(storage)).sink;
    const gated: Sink = { ...inner, appendBatch: async (batch) => gate.then(() => inner.appendBatch(batch)) };
    const first = new Recorder({ sink: gated, keyIndex, allowVolatileSink: true });
    const writer = first.writer(target);
    const captures = [writer.capture(message(1)), writer.capture(message(2))];
    await new Promise((resolve) => setTimeout(resolve, 20));
    // In flight: the index answers nothing and its head has not moved; a replay waits.
    expect(keyIndex.get('demo:alice', 'message:{"id":"m1"}')).toBeUndefined();
    expect(keyIndex.head('demo:alice').seq).toBe(0);
    const replay = writer.capture(message(1));
    open();
    expect((await Promise.all(captures)).map((result) => result.seq)).toEqual([1, 2]);
    expect(await replay).toMatchObject({ status: 'duplicate', seq: 1 });
    expect(keyIndex.get('demo:alice', 'message:{"id":"m2"}')).toBe(2);
    expect(keyIndex.head('demo:alice')).toEqual({ seq: 2, hash: (await inner.head('demo:alice')).hash });
    await first.close();

    let reads = 0;
    const counted: Sink = { ...inner, read: (stream, options) => (reads++, inner.read(stream, options)) };
    const second = new Recorder({ sink: counted, keyIndex, allowVolatileSink: true }).writer(target);
    expect(await second.capture(message(2))).toMatchObject({ status: 'duplicate', seq: 2 });
    expect(await second.capture(message(3))).toMatchObject({ status: 'recorded', seq: 3 });
    expect(reads).toBe(0);
    // An index that disagrees with the archive is rebuilt in place: dedup stays exact.
    keyIndex.reset('demo:alice');
    keyIndex.add('demo:alice', [{ key: 'message:{"id":"m9"}', seq: 3 }], { seq: 3, hash: '0'.repeat(63) + '1' });
    const third = new Recorder({ sink: inner, keyIndex, allowVolatileSink: true }).writer(target);
    expect(await third.capture(message(9))).toMatchObject({ status: 'recorded', seq: 4 });
    expect(await third.capture(message(1))).toMatchObject({ status: 'duplicate', seq: 1 });
    expect((await verifyArchive(inner)).ok).toBe(true);
  });
});
