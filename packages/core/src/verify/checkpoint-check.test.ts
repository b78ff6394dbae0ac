import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes } from '../json/canonical-json.ts';
import { formatCheckpoint } from '../note/checkpoint.ts';
import { type Ed25519NoteKey, generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { signNote } from '../note/signed-note.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { ArchiveRecord } from '../record/record.ts';
import { Recorder } from '../recorder/recorder.ts';
import type { CheckpointOptions } from '../recorder/stream-checkpointer.ts';
import type { TileId } from '../merkle/tiles.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { type OpensslTsa, startOpensslTsa } from '../timestamp/__fixtures__/openssl-tsa.ts';
import { createTsaClient } from '../timestamp/tsa-client.ts';
import { type VerifyOptions, verifyArchive } from './verify-archive.ts';

const stream = 'demo:alice';
const source = { package: '@offchannel/test', version: '0' };
const encoder = new TextEncoder();

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

async function archive(key: Ed25519NoteKey, count: number, options: Partial<CheckpointOptions> = {}, storage = new MemoryStorage()): Promise<MemoryStorage> {
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 10, ...options } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (let index = 0; index < count; index++) await writer.capture(message(index));
  await recorder.close();
  return storage;
}

function verify(storage: MemoryStorage, key: Ed25519NoteKey, options: Partial<VerifyOptions> = {}) {
  return verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier], ...options });
}

/** Rewrites the stream with `change` applied and every hash and prev recomputed consistently. */
function rewrite(storage: MemoryStorage, change: (record: ArchiveRecord) => ArchiveRecord): void {
  const entry = storage.streams.get(stream) as { records: Uint8Array[]; head: { seq: number; hash: string } };
  let prev = ZERO_HASH;
  entry.records = entry.records.map((bytes) => {
    const rewritten = canonicalBytes({ ...change(JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord), prev });
    prev = sha256Hex(rewritten);
    return rewritten;
  });
  entry.head = { seq: entry.records.length, hash: prev };
}

describe('verifyArchive with verifier keys', () => {
  const key = generateEd25519NoteKey('archive.example/offchannel');

  it('passes an intact, checkpointed archive and summarizes its checkpoints', async () => {
    const storage = await archive(key, 25);
    const report = await verify(storage, key);
    expect(report.failures).toEqual([]);
    expect(report.warnings).toEqual([]);
    expect(report.streams[0]?.checkpoints?.map((checkpoint) => [checkpoint.size, checkpoint.signedBy, checkpoint.source])).toEqual([
      [10, key.name, 'archive'],
      [20, key.name, 'archive'],
      [25, key.name, 'archive'],
    ]);
  });

  it('catches the whole-stream rewrite that the chain alone cannot see', async () => {
    const storage = await archive(key, 25);
    rewrite(storage, (record) => (record.seq === 7 ? { ...record, text: 'a different, harmless story' } : record));
    expect((await verifyArchive(createMemorySink(storage))).ok).toBe(true); // the chain is perfectly consistent
    const report = await verify(storage, key);
    expect(report.ok).toBe(false);
    expect(report.failures[0]).toMatchObject({ stream, seq: 10, code: 'CHECKPOINT_ROOT_MISMATCH', severity: 'critical' });
  });

  it('catches removal of the newest records', async () => {
    const storage = await archive(key, 25);
    const entry = storage.streams.get(stream) as { records: Uint8Array[]; head: { seq: number; hash: string } };
    entry.records = entry.records.slice(0, 22);
    entry.head = { seq: 22, hash: sha256Hex(entry.records[21] as Uint8Array) };
    const report = await verify(storage, key);
    expect(report.failures).toContainEqual(expect.objectContaining({ stream, code: 'CHECKPOINT_BEYOND_STREAM', seq: 23, severity: 'critical' }));
  });

  it('reports two signed roots for one size as equivocation', async () => {
    const storage = await archive(key, 20);
    const forked = signNote(formatCheckpoint({ origin: `${key.name}/${stream}`, size: 20, root: new Uint8Array(32).fill(1) }), [key]);
    const report = await verify(storage, key, { extraCheckpoints: [encoder.encode(forked)] });
    expect(report.failures).toContainEqual(expect.objectContaining({ stream, seq: 20, code: 'EQUIVOCATION', severity: 'critical' }));
  });

  it('rejects a checkpoint forged with another key, and one whose trusted signature was altered', async () => {
    const storage = await archive(key, 10);
    const forger = generateEd25519NoteKey(key.name);
    const note = (size: number, root: Uint8Array, signer: Ed25519NoteKey) => encoder.encode(signNote(formatCheckpoint({ origin: `${key.name}/${stream}`, size, root }), [signer]));
    storage.checkpoints.set(`${stream}/10.note`, note(10, new Uint8Array(32), forger));
    let report = await verify(storage, key);
    expect(report.failures).toContainEqual(expect.objectContaining({ code: 'CHECKPOINT_UNTRUSTED', seq: 10 }));
    expect(report.failures).toContainEqual(expect.objectContaining({ code: 'NO_CHECKPOINT' }));
    const genuine = Buffer.from(note(10, new Uint8Array(32).fill(3), key)).toString('utf8');
    const [text, signatureLine] = [genuine.slice(0, genuine.lastIndexOf('\n\n') + 2), genuine.slice(genuine.lastIndexOf('\n\n') + 2)];
    const [dash, name, encoded] = signatureLine.trim().split(' ') as [string, string, string];
    const signature = Buffer.from(encoded, 'base64');
    signature[10] = (signature[10] as number) ^ 0x01; // inside the Ed25519 signature, after the key id
    storage.checkpoints.set(`${stream}/10.note`, encoder.encode(`${text}${dash} ${name} ${signature.toString('base64')}\n`));
    report = await verify(storage, key);
    expect(report.failures).toContainEqual(expect.objectContaining({ code: 'CHECKPOINT_FORGED', seq: 10, severity: 'critical' }));
  });

  it('ignores an unknown extra signature on a checkpoint, as the spec requires', async () => {
    const storage = await archive(key, 10);
    const stored = Buffer.from(storage.checkpoints.get(`${stream}/10.note`) as Uint8Array).toString('utf8');
    const witness = generateEd25519NoteKey('witness.example');
    const cosigned = signNote(stored.slice(0, stored.lastIndexOf('\n\n') + 1), [key, witness]);
    storage.checkpoints.set(`${stream}/10.note`, encoder.encode(`${cosigned}— unknown.example ${Buffer.from('0123456789abcdefghij').toString('base64')}\n`));
    expect((await verify(storage, key)).failures).toEqual([]);
  });

  it('fails a stream with records but no checkpoint, and warns about records after the last one', async () => {
    const storage = new MemoryStorage();
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true });
    await recorder.writer({ channel: 'demo', account: 'alice', source }).capture(message(1));
    await recorder.close();
    expect((await verify(storage, key)).failures[0]).toMatchObject({ code: 'NO_CHECKPOINT', stream });
    const later = await archive(key, 12, { everyRecords: 5 }, new MemoryStorage());
    const withoutClose = new Recorder({ sink: createMemorySink(later), allowVolatileSink: true });
    await withoutClose.writer({ channel: 'demo', account: 'alice', source }).capture(message(99));
    const report = await verify(later, key);
    expect(report.ok).toBe(true);
    expect(report.warnings).toEqual([expect.objectContaining({ code: 'NOT_CHECKPOINTED', seq: 13 })]);
  });

  it('rejects a checkpoint of another stream filed under this one', async () => {
    const storage = await archive(key, 10);
    const other = encoder.encode(signNote(formatCheckpoint({ origin: `${key.name}/demo:bob`, size: 10, root: new Uint8Array(32) }), [key]));
    storage.checkpoints.set(`${stream}/10.note`, other);
    expect((await verify(storage, key)).failures).toContainEqual(expect.objectContaining({ code: 'CHECKPOINT_ORIGIN', seq: 10, severity: 'critical' }));
  });

  it('reports Merkle tiles that do not reproduce a signed root', async () => {
    const storage = await archive(key, 10);
    for (const [name, bytes] of storage.tiles) storage.tiles.set(name, new Uint8Array(bytes.length).fill(5));
    expect((await verify(storage, key)).failures).toContainEqual(expect.objectContaining({ code: 'TILE_MISMATCH', seq: 10 }));
  });

  it('compares every stored full tile with the records, not only the top ones', async () => {
    const storage = await archive(key, 600, { everyRecords: 600 });
    const name = `${stream}/0/000`;
    const genuine = storage.tiles.get(name) as Uint8Array;
    expect(genuine.length).toBe(256 * 32);
    // One leaf hash changed in the first level-0 tile: roots from higher tiles still match.
    const altered = Uint8Array.from(genuine);
    (altered as Uint8Array)[5 * 32] = (altered[5 * 32] as number) ^ 1;
    storage.tiles.set(name, altered);
    const mismatch = await verify(storage, key);
    expect(mismatch.failures).toEqual([expect.objectContaining({ code: 'TILE_MISMATCH', seq: 1 })]);
    storage.tiles.delete(name);
    const missing = await verify(storage, key);
    expect(missing.ok).toBe(true);
    expect(missing.warnings.map((warning) => warning.code)).toEqual(['TILES_MISSING']);
    expect(missing.warnings[0]?.message).toMatch(/1 of the 2 full Merkle tiles/);
  });

  it('reads the stored tiles while the records are still being read, and still reports every altered or missing one in order', async () => {
    const storage = await archive(key, 1300, { everyRecords: 600 });
    for (const name of [`${stream}/0/001`, `${stream}/0/003`]) {
      const altered = Uint8Array.from(storage.tiles.get(name) as Uint8Array);
      altered[7] = (altered[7] as number) ^ 1;
      storage.tiles.set(name, altered);
    }
    storage.tiles.delete(`${stream}/0/002`);
    const inner = createMemorySink(storage, { readOnly: true });
    let read = 0;
    const readAtTile: number[] = [];
    const sink = Object.create(inner) as Sink;
    Object.assign(sink, {
      async *read(name: string, options?: Parameters<Sink['read']>[1]) {
        for await (const stored of inner.read(name, options)) {
          read++;
          yield stored;
        }
      },
      getTile(name: string, tile: TileId) {
        if (tile.level === 0) readAtTile.push(read);
        return inner.getTile(name, tile);
      },
    });
    const report = await verifyArchive(sink, { verifiers: [key.verifier], workers: 0 });
    expect(readAtTile[0], 'the first tile read before the last record').toBeLessThan(1300);
    expect(report.failures.map((failure) => [failure.code, failure.seq])).toEqual([
      ['TILE_MISMATCH', 257],
      ['TILE_MISMATCH', 769],
    ]);
    const full = report.warnings.filter((warning) => warning.message.includes('full Merkle tiles'));
    expect(full.map((warning) => warning.code)).toEqual(['TILES_MISSING']);
    expect(full[0]?.message).toMatch(/1 of the 5 full Merkle tiles/);
  });

  it('verifies a stream whose records are all gone but whose checkpoints remain', async () => {
    const storage = await archive(key, 20);
    storage.streams.delete(stream);
    const report = await verify(storage, key);
    expect(report.ok).toBe(false);
    expect(report.failures).toContainEqual(expect.objectContaining({ code: 'CHECKPOINT_BEYOND_STREAM', severity: 'critical', stream }));
  });
});

describe('verifyArchive with RFC 3161 anchors', () => {
  const key = generateEd25519NoteKey('archive.example/offchannel');
  let tsa: OpensslTsa;
  beforeAll(async () => {
    tsa = await startOpensslTsa();
  });
  afterAll(async () => {
    await tsa.close();
  });

  it('verifies timestamp tokens, trusts them only with the TSA certificate, and rejects altered ones', async () => {
    const certificate = new X509Certificate(tsa.certificatePem);
    const storage = await archive(key, 20, { timestamp: createTsaClient({ url: tsa.url, trusted: [certificate] }) });
    const trusted = await verify(storage, key, { tsaCertificates: [certificate] });
    expect(trusted.failures).toEqual([]);
    expect(trusted.warnings).toEqual([]);
    expect(trusted.streams[0]?.checkpoints?.every((checkpoint) => checkpoint.timestamp?.trusted === true)).toBe(true);
    const untrusted = await verify(storage, key);
    expect(untrusted.ok).toBe(true);
    expect(untrusted.warnings.map((warning) => warning.code)).toEqual(['TIMESTAMP_UNTRUSTED', 'TIMESTAMP_UNTRUSTED']);
    // With a trusted TSA, a removed token is reported (without one, tokens are optional).
    const token = storage.checkpoints.get(`${stream}/10.rfc3161`) as Uint8Array;
    storage.checkpoints.delete(`${stream}/10.rfc3161`);
    expect((await verify(storage, key, { tsaCertificates: [certificate] })).warnings).toEqual([expect.objectContaining({ code: 'TIMESTAMP_MISSING', seq: 10 })]);
    expect((await verify(storage, key)).warnings.map((warning) => warning.code)).toEqual(['TIMESTAMP_UNTRUSTED']);
    storage.checkpoints.set(`${stream}/10.rfc3161`, token);
    // A token moved to another checkpoint no longer matches that note.
    storage.checkpoints.set(`${stream}/20.rfc3161`, storage.checkpoints.get(`${stream}/10.rfc3161`) as Uint8Array);
    expect((await verify(storage, key, { tsaCertificates: [certificate] })).failures).toContainEqual(expect.objectContaining({ code: 'TIMESTAMP_INVALID', seq: 20 }));
  });
});
