import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes } from '../json/canonical-json.ts';
import { leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { MerkleLevels, consistencyProof, treeRoot } from '../merkle/merkle-proofs.ts';
import { TileSource } from '../merkle/tiles.ts';
import { verifyConsistency } from '../merkle/verify-proofs.ts';
import { parseCheckpoint } from '../note/checkpoint.ts';
import { type Ed25519NoteKey, generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { openNote, signNote } from '../note/signed-note.ts';
import { formatCheckpoint } from '../note/checkpoint.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { ArchiveRecord } from '../record/record.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import type { Sink } from '../sink/sink.ts';
import type { StateStore } from '../state/secret-store.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
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

  it('checks a checkpoint signed by a previous key (previousVerifiers) on its content, and carries on with the new key', async () => {
    const storage = new MemoryStorage();
    const old = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: old, everyRecords: 3 });
    for (let index = 0; index < 3; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    const rotated = generateEd25519NoteKey('archive.example/offchannel-2027');
    const second = recorder(storage, { signer: rotated, previousVerifiers: [old.verifier], everyRecords: 2 });
    for (let index = 3; index < 5; index++) await second.writer.capture(message(index));
    await second.recorder.close();
    expect((await checkpoints(storage, old, rotated)).map((entry) => entry.size)).toEqual([3, 5]);
    expect(second.recorder.checkpointStates()[0]?.refused).toBeUndefined();
  });

  it('ignores a stored checkpoint signed by an unknown key instead of trusting its content', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: key, everyRecords: 3 });
    for (let index = 0; index < 3; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    // An attacker files a note of their own, with a root that matches nothing.
    const intruder = generateEd25519NoteKey('archive.example/offchannel');
    const forged = new TextEncoder().encode(signNote(formatCheckpoint({ origin: `archive.example/offchannel/${stream}`, size: 3, root: new Uint8Array(32) }), [intruder]));
    storage.checkpoints.clear();
    await createMemorySink(storage).putCheckpoint(stream, 3, 'note', forged);
    const second = recorder(storage, { signer: key, everyRecords: 1 });
    await second.writer.capture(message(3));
    const [state] = await second.recorder.checkpoint();
    expect(state).toMatchObject({ signedSize: 4 });
    expect(state?.refused).toBeUndefined();
    expect(second.logger.lines.some((line) => line.level === 'warn' && /signed by no key this recorder knows/.test(line.message ?? ''))).toBe(true);
    await second.recorder.close();
  });

  it('feeds each record to the checkpointer once when a resync read fails part-way', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: key, everyRecords: 1000 });
    for (let index = 0; index < 20; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    let failures = 1;
    const sink = faulty(createMemorySink(storage), {
      read: (seq) => seq === 6 && failures-- > 0,
    });
    const second = new Recorder({ sink, allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 1000 } });
    const writer = second.writer({ channel: 'demo', account: 'alice', source });
    await expect(writer.capture(message(20))).rejects.toThrow(/read failed/);
    expect((await writer.capture(message(20))).status).toBe('recorded');
    const [state] = await second.checkpoint();
    expect(state).toMatchObject({ size: 21, signedSize: 21 });
    await second.close();
    const report = await verifyArchive(createMemorySink(storage), { verifiers: [key.verifier] });
    expect(report.failures).toEqual([]);
  });

  it('signs nothing while the stored records are still being read back at startup', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const first = recorder(storage, { signer: key, everyRecords: 60 });
    for (let index = 0; index < 60; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    rewrite(storage, 5);
    // Reading back is slow; the timer fires many times meanwhile.
    const sink = faulty(createMemorySink(storage), { readDelayMs: 2 });
    const second = new Recorder({ sink, allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 5, everyMs: 1 } });
    const writer = second.writer({ channel: 'demo', account: 'alice', source });
    await writer.capture(message(100));
    const [state] = await second.checkpoint();
    expect(state?.refused).toMatch(/no longer hash to the root/);
    expect(await createMemorySink(storage).checkpoints(stream)).toEqual([60]);
    await second.close();
  });

  it('with a memory, refuses a stream whose newest checkpoints were deleted to hide a rewrite', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const memory = memoryStore();
    const first = recorder(storage, { signer: key, everyRecords: 10, memory });
    for (let index = 0; index < 30; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    expect(await memory.getJson(stream)).toMatchObject({ size: 30 });
    // Rewrite from record 15 on and delete the notes that cover it.
    rewrite(storage, 15);
    for (const size of [20, 30]) storage.checkpoints.delete(`${stream}/${size}.note`);
    expect(await createMemorySink(storage).checkpoints(stream)).toEqual([10]);
    // The archive alone looks fine up to checkpoint 10 …
    expect((await verifyArchive(createMemorySink(storage), { verifiers: [key.verifier] })).ok).toBe(true);
    // … but this host remembers signing size 30 and refuses to sign the rewritten history.
    const second = recorder(storage, { signer: key, everyRecords: 1, memory });
    await second.writer.capture(message(31));
    const [state] = await second.recorder.checkpoint();
    expect(state?.refused).toMatch(/signed a checkpoint at size 30, but the newest checkpoint in the archive is at size 10/);
    expect(await createMemorySink(storage).checkpoints(stream)).toEqual([10]);
    await second.recorder.close();
    // Without the memory the same restart would have signed it: the memory is what stops it.
    const third = recorder(storage, { signer: key, everyRecords: 1 });
    await third.writer.capture(message(32));
    expect((await third.recorder.checkpoint())[0]?.refused).toBeUndefined();
    await third.recorder.close();
  });

  it('with a memory, refuses when the remembered checkpoint was replaced, and continues when it is intact', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const memory = memoryStore();
    const first = recorder(storage, { signer: key, everyRecords: 5, memory });
    for (let index = 0; index < 5; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    const intact = recorder(storage, { signer: key, everyRecords: 5, memory });
    for (let index = 5; index < 10; index++) await intact.writer.capture(message(index));
    await intact.recorder.close();
    expect(intact.recorder.checkpointStates()[0]).toMatchObject({ signedSize: 10 });
    expect(await memory.getJson(stream)).toMatchObject({ size: 10 });
    await memory.setJson(stream, { size: 10, root: 'ab'.repeat(32) });
    const replaced = recorder(storage, { signer: key, everyRecords: 1, memory });
    await replaced.writer.capture(message(10));
    expect((await replaced.recorder.checkpoint())[0]?.refused).toMatch(/the checkpoint this host signed at size 10 is different in the archive/);
    // Refused, the Merkle state is not restored from tiles: the whole stream is read at every
    // start (from the archive of record for a pruned spool in capture), and the start says so.
    expect(replaced.logger.lines.some((line) => line.level === 'warn' && /read from its first record at every start/.test(line.message ?? ''))).toBe(true);
    expect(intact.logger.lines.some((line) => /read from its first record at every start/.test(line.message ?? ''))).toBe(false);
    await replaced.recorder.close();
  });

  it('retries a failed signing on schedule even when no record arrives', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    let failures = 1;
    const sink = faulty(createMemorySink(storage), { putCheckpoint: () => failures-- > 0 });
    const rec = new Recorder({ sink, allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 1000, everyMs: 30 } });
    const writer = rec.writer({ channel: 'demo', account: 'alice', source });
    // Issued together, the 50 records are one group commit: no timer can sign a smaller tree
    // first, however busy the machine is.
    await Promise.all(Array.from({ length: 50 }, (_, index) => writer.capture(message(index))));
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && (await createMemorySink(storage).checkpoints(stream)).length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(failures).toBeLessThan(0);
    expect(await createMemorySink(storage).checkpoints(stream)).toEqual([50]);
    await rec.close();
  });

  it('keeps full tiles whose write failed until a later checkpoint writes them', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    let failing = true;
    const sink = faulty(createMemorySink(storage), { putTile: () => failing });
    const rec = new Recorder({ sink, allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 100_000 } });
    const writer = rec.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 300; index++) await writer.capture(message(index));
    expect((await rec.checkpoint())[0]?.lastError).toMatch(/tiles could not be written/);
    // The retry fails too: the tile must still be kept for the next one.
    await writer.capture(message(300));
    expect((await rec.checkpoint())[0]?.lastError).toMatch(/tiles could not be written/);
    failing = false;
    await writer.capture(message(301));
    expect((await rec.checkpoint())[0]).toMatchObject({ signedSize: 302 });
    await rec.close();
    expect(await createMemorySink(storage).getTile(stream, { level: 0, index: 0, width: 256 })).toBeDefined();
  });
});

interface Faults {
  /** Fail reading the record with this seq. */
  readonly read?: (seq: number) => boolean;
  readonly readDelayMs?: number;
  readonly putCheckpoint?: () => boolean;
  readonly putTile?: () => boolean;
}

/** The sink, with injected failures and delays. */
function faulty(sink: Sink, faults: Faults): Sink {
  return {
    ...sink,
    head: (name) => sink.head(name),
    appendBatch: (batch) => sink.appendBatch(batch),
    streams: () => sink.streams(),
    putBlob: (hash, bytes) => sink.putBlob(hash, bytes),
    getBlob: (hash) => sink.getBlob(hash),
    statBlob: (hash) => sink.statBlob(hash),
    getCheckpoint: (name, size, file) => sink.getCheckpoint(name, size, file),
    checkpoints: (name) => sink.checkpoints(name),
    getTile: (name, tile) => sink.getTile(name, tile),
    close: () => sink.close(),
    async *read(name, options) {
      for await (const stored of sink.read(name, options)) {
        if (faults.readDelayMs) await new Promise((resolve) => setTimeout(resolve, faults.readDelayMs));
        if (faults.read?.(stored.seq)) throw new Error('read failed (injected)');
        yield stored;
      }
    },
    putCheckpoint: (name, size, file, bytes) => (faults.putCheckpoint?.() ? Promise.reject(new Error('checkpoint write failed (injected)')) : sink.putCheckpoint(name, size, file, bytes)),
    putTile: (name, tile, bytes) => (faults.putTile?.() ? Promise.reject(new Error('tile write failed (injected)')) : sink.putTile(name, tile, bytes)),
  };
}

/** Rewrites the stream from record `from` on with a consistently recomputed chain. */
function rewrite(storage: MemoryStorage, from: number): void {
  const entry = storage.streams.get(stream) as { records: Uint8Array[]; head: { seq: number; hash: string } };
  let prev = '0'.repeat(64);
  entry.records = entry.records.map((bytes, index) => {
    const record = JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord;
    const rewritten = canonicalBytes({ ...record, prev, ...(index + 1 >= from ? { text: `rewritten ${index}` } : {}) });
    prev = sha256Hex(rewritten);
    return rewritten;
  });
  entry.head = { seq: entry.records.length, hash: prev };
}

/** A state store kept in memory (the recorder only needs getJson/setJson). */
function memoryStore(): StateStore {
  const values = new Map<string, string>();
  const store: StateStore = {
    get: async (name) => (values.has(name) ? new TextEncoder().encode(values.get(name)) : undefined),
    set: async (name, value) => void values.set(name, new TextDecoder().decode(value)),
    getJson: async <T,>(name: string) => (values.has(name) ? (JSON.parse(values.get(name) as string) as T) : undefined),
    setJson: async (name, value) => void values.set(name, JSON.stringify(value)),
    delete: async (name) => void values.delete(name),
    list: async () => [...values.keys()].sort(),
    scope: () => store,
    table: () => {
      throw new Error('the recorder uses no state tables');
    },
  };
  return store;
}
