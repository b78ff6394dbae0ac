import { beforeEach, describe, expect, it } from 'vitest';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes } from '../json/canonical-json.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { ArchiveRecord } from '../record/record.ts';
import { Recorder } from '../recorder/recorder.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { verifyArchive } from './verify-archive.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const stream = 'demo:alice';
const photo = new Uint8Array(64).fill(3);

function input(index: number): CaptureInput {
  return {
    kind: 'message',
    sentAt: '2026-11-21T09:00:00.000Z',
    conversation: { id: 'chat', type: 'direct' },
    sender: { id: 'bob' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `text ${index}`,
    ...(index === 5 ? { attachments: [{ bytes: photo, mime: 'image/png' }] } : {}),
  };
}

let storage: MemoryStorage;
let lines: Uint8Array[];

beforeEach(async () => {
  storage = new MemoryStorage();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (let index = 1; index <= 10; index++) await writer.capture(input(index));
  await writer.capture({ kind: 'system', key: 'other', system: { event: 'capture-started' } });
  await recorder.writer({ channel: 'demo', account: 'bob', source }).capture(input(1));
  lines = (storage.streams.get(stream) as { records: Uint8Array[] }).records;
});

async function verify() {
  return verifyArchive(createMemorySink(storage, { readOnly: true }));
}

function parse(bytes: Uint8Array): ArchiveRecord {
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord;
}

describe('verifyArchive', () => {
  it('passes an intact archive and summarizes it', async () => {
    const report = await verify();
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.streams.map((summary) => [summary.stream, summary.records, summary.head.seq])).toEqual([
      ['demo:alice', 11, 11],
      ['demo:bob', 1, 1],
    ]);
    expect(report.blobsChecked).toBe(1);
  });

  it('names the record whose content was altered', async () => {
    lines[3] = canonicalBytes({ ...parse(lines[3] as Uint8Array), text: 'rewritten' });
    const report = await verify();
    expect(report.ok).toBe(false);
    expect(report.failures[0]).toMatchObject({ stream, seq: 4, code: 'PREV_MISMATCH' });
  });

  it('names the record whose prev was altered', async () => {
    lines[3] = canonicalBytes({ ...parse(lines[3] as Uint8Array), prev: 'a'.repeat(64) });
    expect((await verify()).failures[0]).toMatchObject({ stream, seq: 4, code: 'PREV_MISMATCH' });
  });

  it('names a record altered into bytes that are not canonical', async () => {
    const bytes = Uint8Array.from(lines[6] as Uint8Array);
    bytes[bytes.length - 1] = 0x20;
    lines[6] = bytes;
    expect((await verify()).failures[0]).toMatchObject({ stream, seq: 7, code: 'NON_CANONICAL_JSON' });
  });

  it('names a deleted record', async () => {
    lines.splice(4, 1);
    expect((await verify()).failures[0]).toMatchObject({ stream, seq: 5, code: 'SEQ_GAP' });
  });

  it('names swapped records', async () => {
    [lines[2], lines[3]] = [lines[3] as Uint8Array, lines[2] as Uint8Array];
    expect((await verify()).failures[0]).toMatchObject({ stream, seq: 3, code: 'SEQ_GAP' });
  });

  it('names a repeated record', async () => {
    lines.splice(3, 0, lines[2] as Uint8Array);
    expect((await verify()).failures[0]).toMatchObject({ stream, seq: 4, code: 'SEQ_ORDER' });
  });

  it('names an altered last record only through the chain of what follows (a limit checkpoints close)', async () => {
    lines[10] = canonicalBytes({ ...parse(lines[10] as Uint8Array), key: 'changed' });
    expect((await verify()).ok).toBe(true);
  });

  it('names the record whose blob is missing or altered', async () => {
    const attachment = parse(lines[4] as Uint8Array).attachments?.[0];
    if (attachment?.status !== 'stored') throw new Error('fixture has no stored attachment');
    storage.blobs.set(attachment.sha256, new Uint8Array(64).fill(4));
    expect((await verify()).failures[0]).toMatchObject({ stream, seq: 5, code: 'BLOB_HASH_MISMATCH' });
    storage.blobs.delete(attachment.sha256);
    expect((await verify()).failures[0]).toMatchObject({ stream, seq: 5, code: 'BLOB_MISSING' });
    const quick = await verifyArchive(createMemorySink(storage), { blobContent: false });
    expect(quick.failures[0]).toMatchObject({ seq: 5, code: 'BLOB_MISSING' });
  });

  it('names a record placed in the wrong stream', async () => {
    const bobLines = (storage.streams.get('demo:bob') as { records: Uint8Array[] }).records;
    bobLines[0] = canonicalBytes({ ...parse(bobLines[0] as Uint8Array), stream: 'demo:carol', account: 'carol' });
    const report = await verify();
    expect(report.failures).toContainEqual(expect.objectContaining({ stream: 'demo:bob', seq: 1, code: 'WRONG_STREAM' }));
  });

  it('names a record that reuses an idempotency key, even in a well-linked chain', async () => {
    const sink = createMemorySink();
    const first = { ...parse(lines[0] as Uint8Array) };
    const firstBytes = canonicalBytes(first);
    const second = { ...parse(lines[1] as Uint8Array), key: first.key, prev: sha256Hex(firstBytes) };
    await sink.appendBatch({ stream, firstSeq: 1, prev: ZERO_HASH, records: [firstBytes, canonicalBytes(second)] });
    expect((await verifyArchive(sink)).failures).toEqual([expect.objectContaining({ stream, seq: 2, code: 'DUPLICATE_KEY' })]);
  });

  it('reports progress and can limit itself to some streams', async () => {
    const seen: number[] = [];
    const report = await verifyArchive(createMemorySink(storage), { streams: ['demo:bob'], onProgress: ({ seq }) => seen.push(seq) });
    expect(report.streams.map((summary) => summary.stream)).toEqual(['demo:bob']);
    expect(seen).toEqual([1]);
  });
});

describe('selected streams', () => {
  it('fails for a named stream the archive does not hold, and still verifies the others named', async () => {
    const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), { streams: ['demo:carol', stream] });
    expect(report.ok).toBe(false);
    expect(report.failures).toEqual([expect.objectContaining({ code: 'STREAM_MISSING', stream: 'demo:carol' })]);
    expect(report.streams.find((summary) => summary.stream === stream)).toMatchObject({ ok: true, records: 11 });
  });

  it('passes when every named stream is held and intact', async () => {
    const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), { streams: ['demo:bob'] });
    expect(report).toMatchObject({ ok: true, failures: [] });
  });
});
