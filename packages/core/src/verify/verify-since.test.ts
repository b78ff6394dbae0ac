/**
 * Incremental verification: an auditor's saved state (the newest checkpoint verified) lets the
 * next audit read only what came after — and anything that contradicts the saved state fails.
 */
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes } from '../json/canonical-json.ts';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { ArchiveRecord } from '../record/record.ts';
import { Recorder } from '../recorder/recorder.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { verifyArchive } from './verify-archive.ts';
import { readVerifiedState, verifiedStateOf } from './verified-state.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const stream = 'demo:alice';
const key = generateEd25519NoteKey('archive.example/offchannel');
const at = new Date('2026-11-21T10:00:00.000Z');

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}`, ...(index % 50 === 0 ? { attachments: [{ bytes: new TextEncoder().encode(`file ${index}`), mime: 'text/plain' }] } : {}) };
}

async function capture(storage: MemoryStorage, from: number, to: number): Promise<void> {
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 250 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (let i = from; i < to; i++) await writer.capture(message(i));
  await recorder.close();
}

/** A memory sink that counts records and blobs read. */
function counting(storage: MemoryStorage): { sink: Sink; reads: { records: number; blobs: number } } {
  const inner = createMemorySink(storage, { readOnly: true });
  const reads = { records: 0, blobs: 0 };
  const sink = Object.create(inner) as Sink;
  Object.assign(sink, {
    async *read(name: string, options?: { readonly fromSeq?: number }) {
      for await (const stored of inner.read(name, options)) {
        reads.records++;
        yield stored;
      }
    },
    getBlob: (hash: string) => {
      reads.blobs++;
      return inner.getBlob(hash);
    },
  });
  return { sink, reads };
}

async function audit(storage: MemoryStorage) {
  const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier], workers: 0 });
  expect(report.failures).toEqual([]);
  return readVerifiedState(verifiedStateOf(report, at));
}

describe('incremental verification (since a saved state)', () => {
  it('reads only the records after the saved checkpoint, and passes', async () => {
    const storage = new MemoryStorage();
    await capture(storage, 0, 1000);
    const saved = await audit(storage);
    expect(saved.get(stream)?.size).toBe(1000);
    await capture(storage, 1000, 1300);
    const { sink, reads } = counting(storage);
    const report = await verifyArchive(sink, { verifiers: [key.verifier], since: saved });
    expect(report.failures).toEqual([]);
    expect(report.warnings).toEqual([]);
    expect(report.streams[0]).toMatchObject({ stream, head: { seq: 1300 }, records: 300 });
    expect(reads.records).toBe(301); // the saved size's own record, then the new ones
    expect(reads.blobs).toBe(6); // only the attachments of records 1001–1300
    // The new state moves forward.
    expect(readVerifiedState(verifiedStateOf(report, at, saved)).get(stream)?.size).toBe(1300);
  });

  it('fails when the stream was rewritten and re-signed with the same key (a fork)', async () => {
    const storage = new MemoryStorage();
    await capture(storage, 0, 500);
    const saved = await audit(storage);
    // Whoever holds the key rewrites record 100 onwards, recomputes the chain, drops the old
    // checkpoints and signs new ones over the forged history.
    const entry = storage.streams.get(stream) as { records: Uint8Array[]; head: { seq: number; hash: string } };
    let prev = '0'.repeat(64);
    entry.records = entry.records.map((bytes, index) => {
      const record = JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord;
      const rewritten = canonicalBytes({ ...record, prev, ...(index >= 99 ? { text: `forged ${index}` } : {}) });
      prev = sha256Hex(rewritten);
      return rewritten;
    });
    entry.head = { seq: 500, hash: prev };
    storage.checkpoints.clear();
    storage.tiles.clear();
    await capture(storage, 500, 600);
    const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier], since: saved });
    expect(report.ok).toBe(false);
    expect(report.failures.some((failure) => failure.severity === 'critical' && failure.stream === stream)).toBe(true);
  });

  it('fails when records the earlier audit verified were removed', async () => {
    const storage = new MemoryStorage();
    await capture(storage, 0, 600);
    const saved = await audit(storage);
    const entry = storage.streams.get(stream) as { records: Uint8Array[]; head: { seq: number; hash: string } };
    entry.records = entry.records.slice(0, 400);
    entry.head = { seq: 400, hash: sha256Hex(entry.records[399] as Uint8Array) };
    for (const name of [...storage.checkpoints.keys()]) if (!/\/(250)\//.test(name)) storage.checkpoints.delete(name);
    const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier], since: saved });
    expect(report.ok).toBe(false);
    expect(report.failures[0]).toMatchObject({ code: 'SINCE_MISMATCH', severity: 'critical', seq: 600 });
    expect(report.failures[0]?.message).toMatch(/missing/);
  });

  it('fails when the record at the saved size was altered', async () => {
    const storage = new MemoryStorage();
    await capture(storage, 0, 300);
    const saved = await audit(storage);
    await capture(storage, 300, 320);
    const entry = storage.streams.get(stream) as { records: Uint8Array[] };
    const record = JSON.parse(Buffer.from(entry.records[299] as Uint8Array).toString('utf8')) as ArchiveRecord;
    entry.records[299] = canonicalBytes({ ...record, text: 'altered' });
    const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier], since: saved });
    expect(report.failures[0]).toMatchObject({ code: 'SINCE_MISMATCH', severity: 'critical', seq: 300 });
  });

  it('reads the whole stream when the tiles are gone, and still checks the saved root', async () => {
    const storage = new MemoryStorage();
    await capture(storage, 0, 300);
    const saved = await audit(storage);
    await capture(storage, 300, 400);
    storage.tiles.clear();
    const { sink, reads } = counting(storage);
    const report = await verifyArchive(sink, { verifiers: [key.verifier], since: saved });
    expect(report.failures).toEqual([]);
    expect(reads.records).toBe(400);
  });

  it('refuses a state file that is not one, naming what to do', () => {
    expect(() => readVerifiedState('{"format":"other"}')).toThrow(/offchannel verify --save/);
    expect(() => readVerifiedState('{"format":"offchannel-verified-state/1","streams":{"../x":{"size":1,"root":"00"}}}')).toThrow(/invalid stream/);
    expect(() => readVerifiedState(`{"format":"offchannel-verified-state/1","streams":{"demo:a":{"size":0,"root":"${'0'.repeat(64)}"}}}`)).toThrow(/size/);
  });
});
