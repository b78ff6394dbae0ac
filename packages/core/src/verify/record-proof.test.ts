import { describe, expect, it } from 'vitest';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { Recorder } from '../recorder/recorder.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { type RecordProof, buildRecordProof, verifyRecordProof } from './record-proof.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const stream = 'demo:alice';

async function archive(count: number): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 100 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 't', version: '0' } });
  for (let index = 1; index <= count; index++) {
    const input: CaptureInput = { kind: 'message', sentAt: '2026-11-21T09:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
    await writer.capture(input);
  }
  await recorder.close();
  return storage;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

describe('record proofs', () => {
  it('proves any record against the newest checkpoint, from tiles, and verifies with only the key', async () => {
    const storage = await archive(777);
    const sink = createMemorySink(storage);
    for (const seq of [1, 2, 256, 257, 500, 777]) {
      const proof = JSON.parse(JSON.stringify(await buildRecordProof(sink, stream, seq))) as RecordProof;
      expect(proof.treeSize).toBe(777);
      const verified = verifyRecordProof(proof, [key.verifier]);
      expect(verified.record.seq).toBe(seq);
      expect(verified.record.text).toBe(`message ${seq}`);
      expect(verified.signedBy).toEqual([key.name]);
    }
    const older = await buildRecordProof(sink, stream, 50, { size: 100 });
    expect(verifyRecordProof(older, [key.verifier]).checkpoint.size).toBe(100);
  });

  it('falls back to the records when tiles are missing', async () => {
    const storage = await archive(300);
    storage.tiles.clear();
    const proof = await buildRecordProof(createMemorySink(storage), stream, 123);
    expect(verifyRecordProof(proof, [key.verifier]).record.seq).toBe(123);
  });

  it('falls back to the records when a stored tile is wrong', async () => {
    const storage = await archive(600);
    const name = `${stream}/0/000`;
    const altered = Uint8Array.from(storage.tiles.get(name) as Uint8Array);
    altered[7 * 32] = (altered[7 * 32] as number) ^ 0xff;
    storage.tiles.set(name, altered);
    const proof = await buildRecordProof(createMemorySink(storage), stream, 6);
    expect(verifyRecordProof(proof, [key.verifier]).record.seq).toBe(6);
  });

  it('rejects a proof whose record, path, checkpoint or claims were altered', async () => {
    const storage = await archive(200);
    const proof = await buildRecordProof(createMemorySink(storage), stream, 42);
    const other = generateEd25519NoteKey(key.name);
    expect(code(() => verifyRecordProof({ ...proof, record: proof.record.replace('message 42', 'message 43') }, [key.verifier]))).toBe('PROOF_INVALID');
    expect(code(() => verifyRecordProof({ ...proof, inclusion: [...proof.inclusion].reverse() }, [key.verifier]))).toBe('PROOF_INVALID');
    expect(code(() => verifyRecordProof({ ...proof, seq: 43 }, [key.verifier]))).toBe('PROOF_INVALID');
    expect(code(() => verifyRecordProof({ ...proof, treeSize: 201 }, [key.verifier]))).toBe('PROOF_INVALID');
    expect(code(() => verifyRecordProof({ ...proof, stream: 'demo:bob' }, [key.verifier]))).toBe('PROOF_INVALID');
    expect(code(() => verifyRecordProof(proof, [other.verifier]))).toBe('NOTE_UNVERIFIED');
    expect(code(() => verifyRecordProof({ ...proof, checkpoint: proof.checkpoint.replace('\n200\n', '\n201\n') }, [key.verifier]))).toBe('NOTE_BAD_SIGNATURE');
  });

  it.each([
    ['null', null],
    ['an array', []],
    ['a wrong format', { format: 'x' }],
    ['an extra field', { extra: 1 }],
    ['a hostile stream', { stream: '../../x:y' }],
    ['a zero seq', { seq: 0 }],
    ['a huge record', { record: 'x'.repeat(70_000) }],
    ['a short hash', { inclusion: ['AAAA'] }],
    ['too many hashes', { inclusion: Array.from({ length: 65 }, () => Buffer.alloc(32).toString('base64')) }],
    ['a non-string checkpoint', { checkpoint: 5 }],
  ])('rejects a malformed proof: %s', async (_name, change) => {
    const proof = await buildRecordProof(createMemorySink(await archive(5)), stream, 3);
    const candidate = change === null || Array.isArray(change) ? change : { ...proof, ...change };
    expect(code(() => verifyRecordProof(candidate, [key.verifier]))).toBe('PROOF_MALFORMED');
  });

  it('explains what is missing when no checkpoint covers the record', async () => {
    const storage = new MemoryStorage();
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true });
    await recorder.writer({ channel: 'demo', account: 'alice', source: { package: 't', version: '0' } }).capture({ kind: 'system', key: 'k', system: { event: 'x' } });
    await expect(buildRecordProof(createMemorySink(storage), stream, 1)).rejects.toThrow(/has no checkpoint/);
    await expect(buildRecordProof(createMemorySink(await archive(5)), stream, 9)).rejects.toThrow(/not covered by the newest checkpoint/);
  });
});
