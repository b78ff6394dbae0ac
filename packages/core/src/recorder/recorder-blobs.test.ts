/**
 * Blob staging in the recorder: a pipelining connector's captures store their blobs all at once
 * (the sink, not the recorder, bounds how many), finish in any order, and are still recorded in
 * capture order — and a record is appended only after every blob it names is durable.
 */
import { expect, it } from 'vitest';
import { sha256Hex } from '../hash/sha256.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { decodeRecord } from '../record/encode-record.ts';
import type { Sink } from '../sink/sink.ts';
import { createMemorySink } from '../testing/memory-sink.ts';
import { RecordTooLargeError } from '../errors/record-errors.ts';
import { MAX_RECORD_BYTES } from '../record/record.ts';
import { Recorder } from './recorder.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const COUNT = 32;

function message(index: number): CaptureInput & { conversation: { id: string; type: 'direct'; title: string } } {
  return {
    kind: 'message',
    sentAt: '2026-11-21T09:00:00Z',
    conversation: { id: 'chat-1', type: 'direct', title: 'Deal desk' },
    sender: { id: 'bob' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `message ${index}`,
    raw: { bytes: new TextEncoder().encode(`raw ${index}`), format: 'test' },
  };
}

/** A sink whose blob writes wait until released, so a test decides the order they finish in. */
function heldBlobSink() {
  const inner = createMemorySink();
  const held: { sha256: string; release: () => void }[] = [];
  const events: string[] = [];
  let inFlight = 0;
  let mostInFlight = 0;
  const sink: Sink = {
    ...inner,
    guarantees: { ...inner.guarantees, durability: 'fsync' },
    head: (stream) => inner.head(stream),
    read: (stream, options) => inner.read(stream, options),
    streams: () => inner.streams(),
    getBlob: (sha256) => inner.getBlob(sha256),
    statBlob: (sha256) => inner.statBlob(sha256),
    async appendBatch(batch) {
      for (const bytes of batch.records) {
        const record = decodeRecord(bytes).record;
        events.push(`append:${record.native?.id}`);
        // The durability rule: every blob a record names is durable before the record is appended.
        expect(await inner.getBlob(record.raw?.sha256 as string), `blob of ${record.native?.id} durable first`).toBeDefined();
      }
      return inner.appendBatch(batch);
    },
    async putBlob(sha256, bytes) {
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      await new Promise<void>((release) => held.push({ sha256, release }));
      inFlight--;
      const result = await inner.putBlob(sha256, bytes);
      events.push(`blob:${sha256}`);
      return result;
    },
  };
  return { sink, held, events, mostInFlight: () => mostInFlight };
}

it('stores the blobs of captures in flight all at once and records them in capture order, whatever order the blobs finish in', async () => {
  const spy = heldBlobSink();
  const writer = new Recorder({ sink: spy.sink }).writer({ channel: 'demo', account: 'alice', source });
  const captures = Array.from({ length: COUNT }, (_, index) => writer.capture(message(index)));
  await new Promise((resolve) => setTimeout(resolve, 20));
  // Not one blob write after another: every capture's blob is with the sink before any finishes.
  expect(spy.held).toHaveLength(COUNT);
  expect(spy.mostInFlight()).toBe(COUNT);
  // Finish them last first.
  for (const blob of [...spy.held].reverse()) {
    blob.release();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const results = await Promise.all(captures);
  expect(results.map((result) => result.seq)).toEqual(Array.from({ length: COUNT }, (_, index) => index + 1));
  const appended = spy.events.filter((event) => event.startsWith('append:'));
  expect(appended).toEqual(Array.from({ length: COUNT }, (_, index) => `append:m${index}`));
});

it('a capture whose blob write failed is not recorded; the ones after it are, in order', async () => {
  const spy = heldBlobSink();
  const failing = { ...spy.sink, putBlob: async (sha256: string, bytes: Uint8Array) => {
    if (sha256 === sha256Hex(new TextEncoder().encode('raw 2'))) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
    return spy.sink.putBlob(sha256, bytes);
  } } satisfies Sink;
  const writer = new Recorder({ sink: failing }).writer({ channel: 'demo', account: 'alice', source });
  const captures = Array.from({ length: 5 }, (_, index) => writer.capture(message(index)));
  await new Promise((resolve) => setTimeout(resolve, 20));
  for (const blob of spy.held) blob.release();
  const settled = await Promise.allSettled(captures);
  expect(settled.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  expect(spy.events.filter((event) => event.startsWith('append:'))).toEqual(['append:m0', 'append:m1', 'append:m3', 'append:m4']);
});

it('a capture waiting for its blob records what was captured, not what the caller changed afterwards', async () => {
  const spy = heldBlobSink();
  const writer = new Recorder({ sink: spy.sink }).writer({ channel: 'demo', account: 'alice', source });
  const input = message(1);
  const capture = writer.capture(input);
  input.conversation.title = 'changed by the platform library'; // a nested object the template shares
  await new Promise((resolve) => setTimeout(resolve, 20));
  for (const blob of spy.held) blob.release();
  await capture;
  const stored = [];
  for await (const record of spy.sink.read('demo:alice')) stored.push(decodeRecord(record.bytes).record);
  expect(stored[0]?.conversation).toEqual({ id: 'chat-1', type: 'direct', title: 'Deal desk' });
});

it('sequences a record naming blobs from its text serialized once: the same bytes as the record canonicalized whole, whatever look-alike members it carries', async () => {
  const { canonicalize } = await import('../json/canonical-json.ts');
  const { ZERO_HASH } = await import('../hash/sha256.ts');
  const { verifyArchive } = await import('../verify/verify-archive.ts');
  const sink = createMemorySink();
  let now = Date.parse('2026-11-21T09:00:00.000Z');
  const recorder = new Recorder({ sink, allowVolatileSink: true, clock: () => new Date((now += 1234)) });
  const decoys = { capturedAt: '2000-01-01T00:00:00.000Z', prev: ZERO_HASH, seq: String(Number.MAX_SAFE_INTEGER), note: '"seq":9007199254740991' };
  const inputs: CaptureInput[] = [
    message(1),
    { ...message(2), text: `"capturedAt":"2000-01-01T00:00:00.000Z","prev":"${ZERO_HASH}","seq":9007199254740991}` },
    { ...message(3), native: { id: 'm3', ...decoys }, sender: { id: 'bob', name: 'seq' } },
    { ...message(4), text: 'ü€𝄞 '.repeat(400), attachments: [{ bytes: new Uint8Array([1, 2, 3]), mime: 'application/octet-stream', name: 'prev' }] },
  ];
  const results = await Promise.all(inputs.map((input) => recorder.capture('demo:alice', source, input)));
  expect(results.map((result) => result.seq)).toEqual([1, 2, 3, 4]);
  const stored: Uint8Array[] = [];
  for await (const record of sink.read('demo:alice')) stored.push(record.bytes);
  for (const [index, bytes] of stored.entries()) {
    const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
    // The exact canonical text of what was parsed, with the recorder's own seq, prev and time.
    expect(Buffer.from(bytes).toString('utf8'), `record ${index + 1}`).toBe(canonicalize(parsed));
    expect(parsed.seq).toBe(index + 1);
    expect(parsed.prev).toBe(index === 0 ? ZERO_HASH : sha256Hex(stored[index - 1] as Uint8Array));
    expect(parsed.capturedAt).toBe(new Date(Date.parse('2026-11-21T09:00:00.000Z') + 1234 * (index + 1)).toISOString());
  }
  expect((JSON.parse(Buffer.from(stored[2] as Uint8Array).toString('utf8')) as { native: unknown }).native).toEqual({ id: 'm3', ...decoys });
  expect((await verifyArchive(sink)).ok).toBe(true);
  await recorder.close();
});

it('checks the very blob a record names, even if the caller changes its blob ref right after capture()', async () => {
  const sink = createMemorySink();
  const recorder = new Recorder({ sink, allowVolatileSink: true });
  const stored = await recorder.putBlob(new TextEncoder().encode('stored raw bytes'));
  const missing = { sha256: sha256Hex(new TextEncoder().encode('never stored')), size: 12 };
  const ref = { ...missing };
  // The stream's first capture waits for its resync before the blob check: the window.
  const capture = recorder.capture('demo:alice', source, { ...message(1), raw: { blob: ref, format: 'test' } });
  Object.assign(ref, stored);
  await expect(capture).rejects.toMatchObject({ code: 'BLOB_MISSING' });
  const records: unknown[] = [];
  for await (const record of sink.read('demo:alice')) records.push(record);
  expect(records).toEqual([]);
  await recorder.close();
});

it('checks the size of a record naming blobs in UTF-8 bytes, not UTF-16 units: one character past the limit is refused, the largest that fits is recorded', async () => {
  const sink = createMemorySink();
  const writer = new Recorder({ sink, allowVolatileSink: true }).writer({ channel: 'demo', account: 'sizes', source });
  // '€' is one UTF-16 unit and three UTF-8 bytes: these records are ~22,000 units, ~65,500 bytes.
  const withEuros = (id: string, count: number): CaptureInput => {
    const mentions = Array.from({ length: Math.floor(count / 1000) }, () => '€'.repeat(1000));
    mentions.push(`x${'€'.repeat(count % 1000)}`);
    return { ...message(0), native: { id }, mentions };
  };
  const first = await writer.capture(withEuros('m1', 21_000));
  let bytes: Uint8Array = new Uint8Array();
  for await (const stored of sink.read('demo:sizes', { fromSeq: 1 })) if (stored.seq === first.seq) bytes = stored.bytes;
  const length = bytes.at(-1) === 0x0a ? bytes.length - 1 : bytes.length;
  // The check runs before seq is known: it counts the longest seq (16 digits, here 1).
  const checked = length + String(Number.MAX_SAFE_INTEGER).length - String(first.seq).length;
  expect(checked).toBeLessThan(MAX_RECORD_BYTES);
  const fits = 21_000 + Math.floor((MAX_RECORD_BYTES - checked) / 3);
  expect(await writer.capture(withEuros('m2', fits))).toMatchObject({ status: 'recorded', seq: 2 });
  const refused = await writer.capture(withEuros('m3', fits + 1)).catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(RecordTooLargeError);
  expect(refused).toMatchObject({ size: checked + 3 * (fits + 1 - 21_000) });
});
