import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes } from '../json/canonical-json.ts';
import { leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { MerkleLevels, consistencyProof, treeRoot } from '../merkle/merkle-proofs.ts';
import { TileSource } from '../merkle/tiles.ts';
import { verifyConsistency } from '../merkle/verify-proofs.ts';
import { parseCheckpoint } from '../note/checkpoint.ts';
import { type Ed25519NoteKey, generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { openNote } from '../note/signed-note.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { ArchiveRecord } from '../record/record.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { Recorder } from './recorder.ts';
import type { CheckpointOptions } from './stream-checkpointer.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const stream = 'demo:alice';

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

function recorder(storage: MemoryStorage, checkpoints: CheckpointOptions) {
  const logger = createRecordingLogger();
  const instance = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints, logger });
  return { recorder: instance, writer: instance.writer({ channel: 'demo', account: 'alice', source }), logger };
}

async function checkpoints(storage: MemoryStorage, ...keys: Ed25519NoteKey[]) {
  const sink = createMemorySink(storage);
  const out = [];
  for (const size of await sink.checkpoints(stream)) {
    const note = (await sink.getCheckpoint(stream, size, 'note')) as Uint8Array;
    out.push({ size, note, checkpoint: parseCheckpoint(openNote(note, keys.map((key) => key.verifier)).text) });
  }
  return out;
}

async function leaves(storage: MemoryStorage): Promise<MerkleLevels> {
  const levels = new MerkleLevels();
  for await (const stored of createMemorySink(storage).read(stream)) levels.append(leafHash(stored.bytes));
  return levels;
}

describe('Recorder checkpoints', () => {
  it('signs a checkpoint every N records and on close, each consistent with the last', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const { recorder: rec, writer } = recorder(storage, { signer: key, everyRecords: 10 });
    for (let index = 0; index < 25; index++) await writer.capture(message(index));
    await rec.close();
    const signed = await checkpoints(storage, key);
    expect(signed.map((entry) => entry.size)).toEqual([10, 20, 25]);
    const levels = await leaves(storage);
    for (const { size, checkpoint } of signed) {
      expect(checkpoint.origin).toBe(`archive.example/offchannel/${stream}`);
      expect(checkpoint.size).toBe(size);
      expect(sameHash(checkpoint.root, await treeRoot(levels, size)), `root at ${size}`).toBe(true);
    }
    for (let index = 1; index < signed.length; index++) {
      const [a, b] = [signed[index - 1]?.checkpoint, signed[index]?.checkpoint] as [ReturnType<typeof parseCheckpoint>, ReturnType<typeof parseCheckpoint>];
      expect(verifyConsistency(a.size, b.size, a.root, b.root, await consistencyProof(levels, a.size, b.size))).toBe(true);
    }
    // The stored tiles reproduce every checkpoint: a proof needs only them.
    const tiles = new TileSource(25, (tile) => createMemorySink(storage).getTile(stream, tile));
    expect(sameHash(await treeRoot(tiles), (signed.at(-1)?.checkpoint as { root: Uint8Array }).root)).toBe(true);
    expect(rec.checkpointStates()).toEqual([{ stream, size: 25, signedSize: 25 }]);
  });

  it('signs on a timer while records arrive slowly', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const { recorder: rec, writer } = recorder(storage, { signer: key, everyRecords: 1000, everyMs: 40 });
    await writer.capture(message(1));
    await new Promise((resolve) => setTimeout(resolve, 150));
    await writer.capture(message(2));
    expect((await createMemorySink(storage).checkpoints(stream)).length).toBeGreaterThanOrEqual(1);
    await rec.close();
    expect((await checkpoints(storage, key)).at(-1)?.size).toBe(2);
  });

  it('continues the log across restarts, and signs nothing when nothing was added', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: key, everyRecords: 5 });
    for (let index = 0; index < 7; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    const second = recorder(storage, { signer: key, everyRecords: 5 });
    for (let index = 7; index < 12; index++) await second.writer.capture(message(index));
    await second.recorder.close();
    const third = recorder(storage, { signer: key, everyRecords: 5 });
    expect((await third.writer.capture(message(3))).status).toBe('duplicate');
    await third.recorder.close();
    expect((await checkpoints(storage, key)).map((entry) => entry.size)).toEqual([5, 7, 12]);
  });

  it('refuses to sign after the stream was rewritten behind its checkpoint, and keeps capturing', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: key, everyRecords: 5 });
    for (let index = 0; index < 5; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    // Rewrite the stream with a consistently recomputed chain.
    const entry = storage.streams.get(stream) as { records: Uint8Array[]; head: { seq: number; hash: string } };
    let prev = '0'.repeat(64);
    entry.records = entry.records.map((bytes, index) => {
      const record = JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord;
      const rewritten = canonicalBytes({ ...record, prev, ...(index === 2 ? { text: 'a different story' } : {}) });
      prev = sha256Hex(rewritten);
      return rewritten;
    });
    entry.head = { seq: 5, hash: prev };
    const second = recorder(storage, { signer: key, everyRecords: 1 });
    expect((await second.writer.capture(message(99))).status).toBe('recorded');
    const [state] = await second.recorder.checkpoint();
    expect(state?.refused).toMatch(/no longer hash to the root of the checkpoint signed at that size/);
    expect((await createMemorySink(storage).checkpoints(stream))).toEqual([5]);
    expect(second.logger.lines.some((line) => line.level === 'error')).toBe(true);
    await second.recorder.close();
  });

  it('refuses to sign when records the last checkpoint covers were removed', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: key, everyRecords: 4 });
    for (let index = 0; index < 4; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    const entry = storage.streams.get(stream) as { records: Uint8Array[]; head: { seq: number; hash: string } };
    entry.records = entry.records.slice(0, 2);
    entry.head = { seq: 2, hash: sha256Hex(entry.records[1] as Uint8Array) };
    const second = recorder(storage, { signer: key, everyRecords: 1 });
    await second.writer.capture(message(50));
    const [state] = await second.recorder.checkpoint();
    expect(state?.refused).toMatch(/signed at size 4 but the stream has only 2 records/);
    await second.recorder.close();
  });

  it('stores an RFC 3161 token beside each checkpoint when a timestamp function is given, and survives its failure', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const stamped: Uint8Array[] = [];
    let fail = false;
    const { recorder: rec, writer } = recorder(storage, {
      signer: key,
      everyRecords: 3,
      timestamp: async (note) => {
        if (fail) throw Object.assign(new Error('TSA down'), { code: 'ECONNREFUSED' });
        stamped.push(note);
        return Uint8Array.from([0x30, 0x03, 0x02, 0x01, stamped.length]);
      },
    });
    for (let index = 0; index < 3; index++) await writer.capture(message(index));
    await rec.checkpoint();
    fail = true;
    for (let index = 3; index < 6; index++) await writer.capture(message(index));
    const states = await rec.checkpoint();
    expect(states[0]?.lastError).toMatch(/TSA down/);
    await rec.close();
    const sink = createMemorySink(storage);
    expect(await sink.checkpoints(stream)).toEqual([3, 6]);
    expect(Buffer.from(stamped[0] as Uint8Array).equals(Buffer.from((await sink.getCheckpoint(stream, 3, 'note')) as Uint8Array))).toBe(true);
    expect(await sink.getCheckpoint(stream, 3, 'rfc3161')).toEqual(Uint8Array.from([0x30, 0x03, 0x02, 0x01, 1]));
    expect(await sink.getCheckpoint(stream, 6, 'rfc3161')).toBeUndefined();
  });

  it('checks a checkpoint signed by an earlier key on its content, and carries on with the new key', async () => {
    const storage = new MemoryStorage();
    const old = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: old, everyRecords: 3 });
    for (let index = 0; index < 3; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    const rotated = generateEd25519NoteKey('archive.example/offchannel-2027');
    const second = recorder(storage, { signer: rotated, everyRecords: 2 });
    for (let index = 3; index < 5; index++) await second.writer.capture(message(index));
    await second.recorder.close();
    expect((await checkpoints(storage, old, rotated)).map((entry) => entry.size)).toEqual([3, 5]);
    expect(second.recorder.checkpointStates()[0]?.refused).toBeUndefined();
  });
});
