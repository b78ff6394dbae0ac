import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { CompactRange, treeRoot } from '../merkle/merkle-proofs.ts';
import { TileSource } from '../merkle/tiles.ts';
import { parseCheckpoint } from '../note/checkpoint.ts';
import { type Cosigner, generateCosigner } from '../note/cosignature.ts';
import { type Ed25519NoteKey, generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { openNote, parseNote } from '../note/signed-note.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { Recorder } from '../recorder/recorder.ts';
import { ARCHIVE_LOG, archiveLogName } from '../sink/log-name.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { type RecordingLogger, createRecordingLogger } from '../testing/recording-logger.ts';
import { buildArchiveLogInclusion, verifyArchiveLogInclusion } from '../verify/archive-log-proof.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
import { type ArchiveLogIndex, openArchiveLogIndex } from './archive-log-index.ts';
import { ArchiveLog, readLeaves } from './archive-log.ts';
import { type WitnessedCheckpoint, cosignedFile } from './witness-client.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const TIME = 1_795_000_000;

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

/** Witnesses stand-in for the transport: records what was submitted; `cosign` stores a real cosignature. */
class Submissions {
  readonly seen: WitnessedCheckpoint[] = [];
  submit(checkpoint: WitnessedCheckpoint): void {
    this.seen.push(checkpoint);
  }
}

async function cosign(storage: MemoryStorage, witness: Cosigner, size: number): Promise<void> {
  const sink = createMemorySink(storage);
  const note = new TextDecoder().decode(await sink.getCheckpoint(ARCHIVE_LOG, size, 'note'));
  const { text } = parseNote(note);
  await sink.putCheckpoint(ARCHIVE_LOG, size, cosignedFile(witness.verifier), new TextEncoder().encode(`${note}${witness.cosign(text, TIME)}`));
}

/** Captures `records` records in each of `streams` streams, every stream checkpoint fed to `hook`. */
async function capture(storage: MemoryStorage, key: Ed25519NoteKey, streams: number, records: number, hook?: { submit(checkpoint: WitnessedCheckpoint): void }, first = 0): Promise<void> {
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: records, ...(hook ? { witnesses: hook } : {}) } });
  for (let stream = 0; stream < streams; stream++) {
    const writer = recorder.writer({ channel: 'demo', account: `u${String(stream).padStart(3, '0')}`, source });
    for (let index = 0; index < records; index++) await writer.capture(message(first + index));
  }
  await recorder.close();
}

async function openLog(storage: MemoryStorage, key: Ed25519NoteKey, witnesses?: Submissions): Promise<ArchiveLog> {
  return ArchiveLog.open({ sink: createMemorySink(storage), signer: key, logger: createRecordingLogger(), everyMs: 3_600_000, ...(witnesses ? { witnesses } : {}) });
}

/** Leaf hashes (hex) of every stored stream checkpoint note. */
async function streamLeaves(storage: MemoryStorage): Promise<Set<string>> {
  const sink = createMemorySink(storage);
  const out = new Set<string>();
  for (const stream of await sink.streams()) {
    for (const size of await sink.checkpoints(stream)) out.add(Buffer.from(leafHash((await sink.getCheckpoint(stream, size, 'note')) as Uint8Array)).toString('hex'));
  }
  return out;
}

function clone(storage: MemoryStorage): MemoryStorage {
  const copy = new MemoryStorage();
  for (const [name, entry] of storage.streams) copy.streams.set(name, { records: [...entry.records], head: entry.head });
  for (const kind of ['blobs', 'checkpoints', 'tiles', 'attestations'] as const) for (const [name, bytes] of storage[kind]) copy[kind].set(name, bytes);
  return copy;
}

describe('the archive log', () => {
  it('takes every stream checkpoint as an entry and is checkpointed and submitted as ONE log, origin = the key name', async () => {
    const storage = new MemoryStorage();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const witnesses = new Submissions();
    const archiveLog = await openLog(storage, key, witnesses);
    await capture(storage, key, 40, 3, archiveLog);
    await archiveLog.close();
    // 40 streams, one checkpoint each: one archive checkpoint, one submission.
    expect(witnesses.seen.map((seen) => [seen.stream, seen.size])).toEqual([[ARCHIVE_LOG, 40]]);
    const sink = createMemorySink(storage);
    expect(await sink.checkpoints(ARCHIVE_LOG)).toEqual([40]);
    const note = (await sink.getCheckpoint(ARCHIVE_LOG, 40, 'note')) as Uint8Array;
    const checkpoint = parseCheckpoint(openNote(note, [key.verifier]).text);
    expect(checkpoint.origin).toBe('archive.example/offchannel');
    // The entries are exactly the stream notes (leaf = SHA-256(0x00 ‖ note)), and the tiles reproduce the signed root.
    const leaves = (await readLeaves(40, (tile) => sink.getTile(ARCHIVE_LOG, tile))) as Uint8Array[];
    expect(new Set(leaves.map((leaf) => Buffer.from(leaf).toString('hex')))).toEqual(await streamLeaves(storage));
    expect(sameHash(await treeRoot(new TileSource(40, (tile) => sink.getTile(ARCHIVE_LOG, tile))), checkpoint.root)).toBe(true);
    // A consistency proof for the witness comes from the stored tiles.
    expect(await witnesses.seen[0]?.proof(40)).toEqual([]);
    expect(await sink.streams()).not.toContain(ARCHIVE_LOG);
  });

  it('after a crash, stream checkpoints missing from the archive log are appended, in one deterministic order', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    const first = await openLog(storage, key);
    await capture(storage, key, 3, 2, first);
    await first.checkpoint();
    // The process dies: these checkpoints are signed and stored, their entries were only in memory.
    const crashed = await openLog(storage, key);
    await capture(storage, key, 5, 2, crashed, 100);
    expect(crashed.size).toBeGreaterThan(3);
    const a = clone(storage);
    const b = clone(storage);
    const [one, two] = [await openLog(a, key), await openLog(b, key)];
    // 5 streams × (2 + 2 records → one checkpoint at 4) minus what was included: nothing is lost.
    expect(one.size).toBe((await streamLeaves(storage)).size);
    await one.checkpoint();
    await two.checkpoint();
    const root = async (storage: MemoryStorage, size: number) => createMemorySink(storage).getCheckpoint(ARCHIVE_LOG, size, 'note');
    expect(parseNote((await root(a, one.size)) as Uint8Array).text).toBe(parseNote((await root(b, two.size)) as Uint8Array).text);
    // Sorted by stream name, then size, after the three included before the crash.
    const sink = createMemorySink(a);
    const leaves = (await readLeaves(one.size, (tile) => sink.getTile(ARCHIVE_LOG, tile))) as Uint8Array[];
    const expected: string[] = [];
    for (const stream of await sink.streams()) {
      for (const size of await sink.checkpoints(stream)) {
        const leaf = Buffer.from(leafHash((await sink.getCheckpoint(stream, size, 'note')) as Uint8Array)).toString('hex');
        if (!leaves.slice(0, 3).some((included) => Buffer.from(included).toString('hex') === leaf)) expected.push(leaf);
      }
    }
    expect(leaves.slice(3).map((leaf) => Buffer.from(leaf).toString('hex'))).toEqual(expected);
    // Reopened once more: everything is included, nothing is appended twice.
    expect((await openLog(a, key)).size).toBe(one.size);
  });

  it('a crash between writing a full tile and signing: the stored tile fixes the order of its entries', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    // 300 streams, one checkpoint each, fed in reverse name order: not the order a restart would choose.
    const streams = Array.from({ length: 300 }, (_, index) => `u${String(299 - index).padStart(3, '0')}`);
    const archiveLog = await openLog(storage, key);
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 1, witnesses: archiveLog } });
    for (const account of streams) await recorder.writer({ channel: 'demo', account, source }).capture(message(1));
    await recorder.close();
    expect(archiveLog.size).toBe(300);
    await archiveLog.checkpoint();
    // Simulate the crash: the full tile of entries 1–256 and the partial tile were written, the note was not.
    for (const name of [...storage.checkpoints.keys()]) if (name.startsWith(`${ARCHIVE_LOG}/`)) storage.checkpoints.delete(name);
    for (const name of [...storage.tiles.keys()]) if (name.startsWith(`${ARCHIVE_LOG}/`) && name.includes('.p/')) storage.tiles.delete(name);
    const reopened = await openLog(storage, key);
    expect(reopened.size).toBe(300);
    await reopened.checkpoint();
    expect(reopened.refused).toBeUndefined();
    expect(await createMemorySink(storage).checkpoints(ARCHIVE_LOG)).toEqual([300]);
  });

  it('a crash between writing a partial tile and signing: the stored partial tile fixes the order (no conflict on the next sign)', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    const archiveLog = await openLog(storage, key);
    const record = async (accounts: string[]): Promise<void> => {
      const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 1, witnesses: archiveLog } });
      for (const account of accounts) await recorder.writer({ channel: 'demo', account, source }).capture(message(1));
      await recorder.close();
    };
    // Three signed, then three more fed in reverse name order: not the order a restart would choose.
    await record(['a', 'b', 'c']);
    await archiveLog.checkpoint();
    expect(archiveLog.signedSize).toBe(3);
    await record(['z', 'y', 'x']);
    await archiveLog.checkpoint();
    // Simulate the crash: the partial tile of width 6 was written, the note at 6 was not.
    storage.checkpoints.delete(`${ARCHIVE_LOG}/6.note`);
    expect(await createMemorySink(storage).checkpoints(ARCHIVE_LOG)).toEqual([3]);
    const reopened = await openLog(storage, key);
    expect(reopened.size).toBe(6);
    await reopened.checkpoint();
    expect(reopened.refused).toBeUndefined();
    expect(reopened.signedSize).toBe(6);
    expect(await createMemorySink(storage).checkpoints(ARCHIVE_LOG)).toEqual([3, 6]);
  });

  it('on start, ignores an archive checkpoint no key of ours signed, and refuses one our key signed that its tiles contradict', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    const first = await openLog(storage, key);
    await capture(storage, key, 2, 2, first);
    await first.close();
    const { signNote } = await import('../note/signed-note.ts');
    const { formatCheckpoint } = await import('../note/checkpoint.ts');
    const other = generateEd25519NoteKey('archive.example/offchannel');
    const planted = signNote(formatCheckpoint({ origin: key.name, size: 9000, root: new Uint8Array(32) }), [other]);
    await createMemorySink(storage).putCheckpoint(ARCHIVE_LOG, 9000, 'note', new TextEncoder().encode(planted));
    const reopened = await openLog(storage, key);
    expect([reopened.refused, reopened.size, reopened.signedSize]).toEqual([undefined, 2, 2]);
    // Signed by our key at a size whose tiles do not exist: the host will not sign past it.
    await createMemorySink(storage).putCheckpoint(ARCHIVE_LOG, 9001, 'note', new TextEncoder().encode(signNote(formatCheckpoint({ origin: key.name, size: 9001, root: new Uint8Array(32) }), [key])));
    expect((await openLog(storage, key)).refused).toMatch(/does not verify with this key, or its tiles do not reproduce its root/);
  });

  it('shards: each capture process has its own archive log, never another\'s streams; verify checks them all', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const witness = generateCosigner('w1.witness.example');
    const storage = new MemoryStorage();
    const shards = [1, 2].map((index) => ({ log: archiveLogName({ index, count: 2 }), owns: (stream: string) => Number(stream.slice(-1)) % 2 === index - 1 }));
    for (const { log, owns } of shards) {
      const archiveLog = await ArchiveLog.open({ sink: createMemorySink(storage), signer: key, logger: createRecordingLogger(), everyMs: 3_600_000, log, owns });
      const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 2, witnesses: archiveLog } });
      for (let stream = 0; stream < 6; stream++) {
        if (!owns(`demo:u00${stream}`)) continue;
        const writer = recorder.writer({ channel: 'demo', account: `u00${stream}`, source });
        for (let index = 0; index < 2; index++) await writer.capture(message(index));
      }
      await recorder.close();
      await archiveLog.close();
      expect(archiveLog.origin).toBe(`archive.example/offchannel/${log}`);
      expect(archiveLog.size).toBe(3);
      // A restart of this shard appends nothing of the other shard's streams.
      expect((await ArchiveLog.open({ sink: createMemorySink(storage), signer: key, logger: createRecordingLogger(), everyMs: 3_600_000, log, owns })).size).toBe(3);
    }
    const sink = createMemorySink(storage, { readOnly: true });
    expect(await sink.archiveLogs?.()).toEqual(['archive-log.s1of2', 'archive-log.s2of2']);
    const cosignLog = async (log: string): Promise<void> => {
      const note = new TextDecoder().decode(await sink.getCheckpoint(log, 3, 'note'));
      await createMemorySink(storage).putCheckpoint(log, 3, cosignedFile(witness.verifier), new TextEncoder().encode(`${note}${witness.cosign(parseNote(note).text, TIME)}`));
    };
    await cosignLog('archive-log.s1of2');
    const half = await verifyArchive(sink, { verifiers: [key.verifier], witnesses: [witness.verifier], quorum: 1 });
    // The second shard's log is not witnessed: its streams' checkpoints are not either.
    expect(half.failures.filter((failure) => failure.code === 'ARCHIVE_LOG_INCLUSION_MISSING').map((failure) => failure.stream)).toEqual(['demo:u001', 'demo:u003', 'demo:u005']);
    await cosignLog('archive-log.s2of2');
    const report = await verifyArchive(sink, { verifiers: [key.verifier], witnesses: [witness.verifier], quorum: 1 });
    expect(report.failures).toEqual([]);
    expect(report.archiveLogs?.map((log) => [log.log, log.witnessedSize])).toEqual([['archive-log.s1of2', 3], ['archive-log.s2of2', 3]]);
  });

  describe('verification under a witness policy', () => {
    async function witnessedArchive() {
      const key = generateEd25519NoteKey('archive.example/offchannel');
      const witness = generateCosigner('w1.witness.example');
      const storage = new MemoryStorage();
      const archiveLog = await openLog(storage, key);
      await capture(storage, key, 3, 4, archiveLog);
      await archiveLog.close();
      await cosign(storage, witness, archiveLog.size);
      return { key, witness, storage, size: archiveLog.size };
    }
    const policy = (key: Ed25519NoteKey, witness: Cosigner) => ({ verifiers: [key.verifier], witnesses: [witness.verifier], quorum: 1 });

    it('passes when each stream\'s newest checkpoint is included in an archive checkpoint with the quorum', async () => {
      const { key, witness, storage, size } = await witnessedArchive();
      const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), policy(key, witness));
      expect(report.failures).toEqual([]);
      expect(report.archiveLogs).toEqual([{ log: ARCHIVE_LOG, size, witnessedSize: size, witnesses: ['w1.witness.example'] }]);
      // Without the archive log's cosignature the same archive fails: the inclusion is what witnessed it.
      storage.checkpoints.delete(`${ARCHIVE_LOG}/${size}.${cosignedFile(witness.verifier)}`);
      const unwitnessed = await verifyArchive(createMemorySink(storage, { readOnly: true }), policy(key, witness));
      expect(unwitnessed.failures.map((failure) => failure.code)).toEqual(expect.arrayContaining(['ARCHIVE_LOG_QUORUM', 'ARCHIVE_LOG_INCLUSION_MISSING', 'UNWITNESSED_RECORDS']));
    });

    it('fails when a stream\'s newest checkpoint is deleted and its records rewritten', async () => {
      const { key, witness, storage } = await witnessedArchive();
      // demo:u001's newest (only) checkpoint goes, and the records after the last remaining one (all) are rewritten.
      storage.checkpoints.delete('demo:u001/4.note');
      storage.streams.delete('demo:u001');
      for (const name of [...storage.tiles.keys()]) if (name.startsWith('demo:u001/')) storage.tiles.delete(name);
      const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, logger: createRecordingLogger() });
      const writer = recorder.writer({ channel: 'demo', account: 'u001', source });
      for (let index = 0; index < 4; index++) await writer.capture(message(1000 + index));
      await recorder.close();
      const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), policy(key, witness));
      expect(report.ok).toBe(false);
      expect(report.failures.map((failure) => [failure.code, failure.stream])).toEqual(expect.arrayContaining([['ARCHIVE_LOG_ENTRY_MISSING', ARCHIVE_LOG], ['UNWITNESSED_RECORDS', 'demo:u001']]));
      // `--key` alone has nothing to go on here.
      const keyOnly = await verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier] });
      expect(keyOnly.failures.map((failure) => failure.code)).not.toContain('ARCHIVE_LOG_ENTRY_MISSING');
    });

    it('fails when a stream checkpoint is signed after the last archive checkpoint (inclusion missing)', async () => {
      const { key, witness, storage } = await witnessedArchive();
      await capture(storage, key, 1, 4, undefined, 500);
      const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), policy(key, witness));
      expect(report.failures.map((failure) => [failure.code, failure.stream])).toEqual([['ARCHIVE_LOG_INCLUSION_MISSING', 'demo:u000'], ['UNWITNESSED_RECORDS', 'demo:u000']]);
    });

    it('proves a stream checkpoint\'s inclusion in the cosigned archive checkpoint, from the proof alone', async () => {
      const { key, storage, size } = await witnessedArchive();
      const sink = createMemorySink(storage, { readOnly: true });
      const inclusion = await buildArchiveLogInclusion(sink, 'demo:u002', 4);
      if (!inclusion) throw new Error('no inclusion');
      const streamNote = new TextDecoder().decode(await sink.getCheckpoint('demo:u002', 4, 'note'));
      const verified = verifyArchiveLogInclusion(JSON.parse(JSON.stringify(inclusion)), streamNote, [key.verifier]);
      expect([verified.checkpoint.size, verified.log]).toEqual([size, ARCHIVE_LOG]);
      // The cosignature travels with the archive checkpoint in the proof.
      expect(verified.note).toContain('\u2014 w1.witness.example ');
      const refused = (change: object, note = streamNote): string => {
        try {
          verifyArchiveLogInclusion({ ...inclusion, ...change }, note, [key.verifier]);
        } catch (error) {
          return (error as { code: string }).code;
        }
        return 'accepted';
      };
      expect(refused({ index: (inclusion.index + 1) % size })).toBe('PROOF_INVALID');
      expect(refused({ inclusion: [...inclusion.inclusion].reverse() })).toBe(inclusion.inclusion.length > 1 ? 'PROOF_INVALID' : 'accepted');
      expect(refused({}, new TextDecoder().decode(await sink.getCheckpoint('demo:u000', 4, 'note')))).toBe('PROOF_INVALID');
      expect(refused({ log: '../x' })).toBe('PROOF_MALFORMED');
      expect(refused({ index: size })).toBe('PROOF_MALFORMED');
      expect(refused({ extra: 1 })).toBe('PROOF_MALFORMED');
      // Signed by another key: not this archive's log.
      expect(() => verifyArchiveLogInclusion(inclusion, streamNote, [generateEd25519NoteKey('archive.example/offchannel').verifier])).toThrow(/no signature from a trusted key/);
    });

    it('fails when the archive log is forked or altered', async () => {
      const { key, witness, storage, size } = await witnessedArchive();
      // An older archive checkpoint at size 2 whose root is not the prefix of the witnessed tree (same key: a fork).
      const sink = createMemorySink(storage);
      const forked = new CompactRange();
      forked.append(leafHash(new TextEncoder().encode('another history')));
      forked.append(leafHash(new TextEncoder().encode('of the archive log')));
      const { signNote } = await import('../note/signed-note.ts');
      const { formatCheckpoint } = await import('../note/checkpoint.ts');
      await sink.putCheckpoint(ARCHIVE_LOG, 2, 'note', new TextEncoder().encode(signNote(formatCheckpoint({ origin: key.name, size: 2, root: forked.root() }), [key])));
      const fork = await verifyArchive(createMemorySink(storage, { readOnly: true }), policy(key, witness));
      expect(fork.failures.map((failure) => [failure.code, failure.seq, failure.severity])).toEqual([['ARCHIVE_LOG_INCONSISTENT', 2, 'critical']]);
      // A tile altered after signing: the newest checkpoint's entries no longer reproduce its root.
      const altered = clone(storage);
      altered.checkpoints.delete(`${ARCHIVE_LOG}/2.note`);
      const tileName = [...altered.tiles.keys()].find((name) => name.startsWith(`${ARCHIVE_LOG}/0/`)) as string;
      const bytes = Uint8Array.from(altered.tiles.get(tileName) as Uint8Array);
      bytes[0] = (bytes[0] ?? 0) ^ 1;
      altered.tiles.set(tileName, bytes);
      const report = await verifyArchive(createMemorySink(altered, { readOnly: true }), policy(key, witness));
      expect(report.failures.map((failure) => failure.code)).toEqual(expect.arrayContaining(['ARCHIVE_LOG_INCONSISTENT', 'ARCHIVE_LOG_ENTRY_MISSING']));
      expect(size).toBe(3);
    });

    it('reads each of the archive log\'s tiles once: what reproduces the signed roots is what the entries are checked on', async () => {
      const key = generateEd25519NoteKey('archive.example/offchannel');
      const witness = generateCosigner('w1.witness.example');
      const storage = new MemoryStorage();
      const archiveLog = await openLog(storage, key);
      // 300 streams, each checkpointed: a full level-0 tile of 256 entries and a partial one of 44.
      await capture(storage, key, 300, 1, archiveLog);
      await archiveLog.close();
      await cosign(storage, witness, archiveLog.size);
      expect(archiveLog.size).toBe(300);
      const reads = new Map<string, number>();
      let changed = 0;
      // Counts the archive log's tile reads; any read after the first answers with another leaf (a
      // hostile store or mount): a second read would show up as a failure, not only in the count.
      const counting = new Proxy(createMemorySink(storage, { readOnly: true }), {
        get(target, property) {
          if (property === 'getTile') {
            return async (stream: string, tile: Parameters<Sink['getTile']>[1]) => {
              const bytes = await target.getTile(stream, tile);
              if (stream !== ARCHIVE_LOG || !bytes) return bytes;
              const name = `${tile.level}/${tile.index}/${tile.width}`;
              reads.set(name, (reads.get(name) ?? 0) + 1);
              if ((reads.get(name) ?? 0) === 1) return bytes;
              changed++;
              const swapped = Uint8Array.from(bytes);
              swapped[0] = (swapped[0] ?? 0) ^ 1;
              return swapped;
            };
          }
          const value: unknown = Reflect.get(target, property);
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
      const report = await verifyArchive(counting, policy(key, witness));
      expect(Object.fromEntries(reads)).toEqual({ '0/0/256': 1, '0/1/44': 1 });
      expect(changed).toBe(0);
      expect(report.failures).toEqual([]);
      expect(report.archiveLogs).toEqual([{ log: ARCHIVE_LOG, size: 300, witnessedSize: 300, witnesses: ['w1.witness.example'] }]);
    });

    it('counts as witnessed only the entries below the newest consistent checkpoint with the quorum', async () => {
      const { key, witness, storage, size } = await witnessedArchive();
      // Three more streams checkpointed and archive-checkpointed after the cosigned one, not cosigned.
      const archiveLog = await openLog(storage, key);
      await capture(storage, key, 3, 4, archiveLog, 500);
      await archiveLog.close();
      expect(archiveLog.size).toBe(size + 3);
      const report = await verifyArchive(createMemorySink(storage, { readOnly: true }), policy(key, witness));
      expect(report.archiveLogs).toEqual([{ log: ARCHIVE_LOG, size: size + 3, witnessedSize: size, witnesses: ['w1.witness.example'] }]);
      // The newer stream checkpoints are included only in the uncosigned archive checkpoint.
      expect(report.failures.map((failure) => failure.code)).toEqual(expect.arrayContaining(['ARCHIVE_LOG_QUORUM', 'ARCHIVE_LOG_INCLUSION_MISSING']));
      expect(report.failures.filter((failure) => failure.code === 'ARCHIVE_LOG_INCLUSION_MISSING').map((failure) => failure.stream).sort()).toEqual(['demo:u000', 'demo:u001', 'demo:u002']);
    });
  });
});

describe('the archive log\'s start-up cost and its index', () => {
  const dirs: string[] = [];
  const indexes: ArchiveLogIndex[] = [];
  const closeIndexes = (): void => {
    for (const index of indexes.splice(0)) index.close();
  };
  afterEach(() => {
    closeIndexes();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const indexFile = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'archive-log-index-'));
    dirs.push(dir);
    return path.join(dir, 'archive-log-index.sqlite');
  };

  /** A sink counting the archive log's tile reads. */
  function counting(storage: MemoryStorage): { sink: Sink; reads: () => number } {
    const sink = createMemorySink(storage);
    let reads = 0;
    const wrapped = new Proxy(sink, {
      get(target, property, receiver) {
        if (property === 'getTile') {
          return (log: string, ...rest: Parameters<Sink['getTile']> extends [string, ...infer R] ? R : never) => {
            if (log === ARCHIVE_LOG) reads++;
            return target.getTile(log, ...rest);
          };
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    return { sink: wrapped, reads: () => reads };
  }

  async function open(storage: MemoryStorage, key: Ed25519NoteKey, file: string | undefined, logger: RecordingLogger = createRecordingLogger(), sink: Sink = createMemorySink(storage)): Promise<ArchiveLog> {
    const index = file === undefined ? undefined : openArchiveLogIndex({ file });
    if (index) indexes.push(index);
    return ArchiveLog.open({ sink, signer: key, logger, everyMs: 3_600_000, ...(index ? { index } : {}) });
  }

  /** `entries` streams of one record and one checkpoint each: `entries` archive log entries, signed, the index beside. */
  async function history(entries: number): Promise<{ storage: MemoryStorage; key: Ed25519NoteKey; file: string }> {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    const file = indexFile();
    const index = openArchiveLogIndex({ file });
    const archiveLog = await ArchiveLog.open({ sink: createMemorySink(storage), signer: key, logger: createRecordingLogger(), everyMs: 3_600_000, index });
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 1, witnesses: archiveLog } });
    for (let stream = 0; stream < entries; stream++) await recorder.writer({ channel: 'demo', account: `u${String(stream).padStart(4, '0')}`, source }).capture(message(stream));
    await recorder.close();
    await archiveLog.close();
    index.close();
    expect(archiveLog.size).toBe(entries);
    return { storage, key, file };
  }

  const leavesOf = async (storage: MemoryStorage, size: number): Promise<string[]> => {
    const sink = createMemorySink(storage);
    return ((await readLeaves(size, (tile) => sink.getTile(ARCHIVE_LOG, tile))) as Uint8Array[]).map((leaf) => Buffer.from(leaf).toString('hex'));
  };

  it('with its index, a restart reads only the right edge: the tile reads do not grow with the entries', async () => {
    const reads: number[] = [];
    for (const entries of [300, 3000]) {
      const { storage, key, file } = await history(entries);
      const { sink, reads: count } = counting(storage);
      const logger = createRecordingLogger();
      const reopened = await open(storage, key, file, logger, sink);
      expect([reopened.size, reopened.signedSize, reopened.refused]).toEqual([entries, entries, undefined]);
      expect(logger.lines.filter((line) => line.level === 'warn')).toEqual([]);
      reads.push(count());
      // Without the index, every level-0 tile is read (the fallback for library users).
      const { sink: scanned, reads: scans } = counting(storage);
      expect((await open(storage, key, undefined, createRecordingLogger(), scanned)).size).toBe(entries);
      expect(scans()).toBeGreaterThanOrEqual(Math.ceil(entries / 256));
    }
    const [small, large] = reads as [number, number];
    expect(large).toBeLessThanOrEqual(small + 2);
    expect(large).toBeLessThan(Math.ceil(3000 / 256));
  }, 60_000);

  it('a crash between stream checkpoints and the archive checkpoint: each is appended again exactly once', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    const file = indexFile();
    const index = openArchiveLogIndex({ file });
    const first = await ArchiveLog.open({ sink: createMemorySink(storage), signer: key, logger: createRecordingLogger(), everyMs: 3_600_000, index });
    await capture(storage, key, 3, 2, first);
    await first.checkpoint();
    // The process dies after these stream checkpoints were stored, before an archive checkpoint includes them.
    await capture(storage, key, 5, 2, first, 100);
    index.close();
    const logger = createRecordingLogger();
    const reopened = await open(storage, key, file, logger);
    expect(logger.lines.filter((line) => line.level === 'warn')).toEqual([]);
    const all = await streamLeaves(storage);
    expect(reopened.size).toBe(all.size);
    await reopened.checkpoint();
    const leaves = await leavesOf(storage, reopened.size);
    expect(new Set(leaves)).toEqual(all);
    expect(new Set(leaves).size).toBe(leaves.length);
    // The index moved with the archive checkpoint: the next start appends nothing.
    expect((await open(storage, key, file)).size).toBe(reopened.size);
  });

  it('an index deleted, behind or disagreeing is rebuilt from the archive once, with the same result', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    const file = indexFile();
    const first = await open(storage, key, file);
    await capture(storage, key, 3, 2, first);
    await first.close();
    closeIndexes();
    const stale = `${file}.stale`;
    copyFileSync(file, stale);
    const second = await open(storage, key, file);
    expect(second.size).toBe(3);
    await capture(storage, key, 3, 2, second, 100);
    await second.close();
    // Signed stream checkpoints the archive log has not included yet (a crash): the rebuild must find them too.
    await capture(storage, key, 2, 2, undefined, 200);
    const expected = (await streamLeaves(storage)).size;
    closeIndexes();
    expect(second.size).toBe(6);
    const rebuilt = async (prepare: () => void): Promise<{ size: number; warned: boolean; note: string }> => {
      const copy = clone(storage);
      closeIndexes();
      prepare();
      const logger = createRecordingLogger();
      const archiveLog = await open(copy, key, file, logger);
      await archiveLog.checkpoint();
      const warned = logger.lines.some((line) => line.level === 'warn' && /rebuilding it from all entries/.test(line.message ?? ''));
      // Once rebuilt, the index is trusted at the next start.
      const again = createRecordingLogger();
      expect((await open(copy, key, file, again)).size).toBe(archiveLog.size);
      expect(again.lines.filter((line) => line.level === 'warn')).toEqual([]);
      return { size: archiveLog.size, warned, note: parseNote((await createMemorySink(copy).getCheckpoint(ARCHIVE_LOG, archiveLog.size, 'note')) as Uint8Array).text };
    };
    const current = `${file}.current`;
    copyFileSync(file, current);
    const trusted = await rebuilt(() => {
      copyFileSync(current, file);
    });
    expect([trusted.size, trusted.warned]).toEqual([expected, false]);
    const deleted = await rebuilt(() => {
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });
    });
    const behind = await rebuilt(() => {
      for (const suffix of ['-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });
      copyFileSync(stale, file);
    });
    const disagreeing = await rebuilt(() => {
      copyFileSync(current, file);
      const index = openArchiveLogIndex({ file });
      // The right size, another root: not this archive's index.
      index.record(ARCHIVE_LOG, { size: 6, root: '00'.repeat(32) }, new Map([['demo:u000', 99]]));
      index.close();
    });
    for (const result of [deleted, behind, disagreeing]) expect(result).toEqual({ ...trusted, warned: true });
  });

  it('a stream checkpoint submitted twice, or an older one after a newer, is one entry', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const storage = new MemoryStorage();
    const archiveLog = await openLog(storage, key);
    const seen: WitnessedCheckpoint[] = [];
    const twice = {
      submit(checkpoint: WitnessedCheckpoint): void {
        archiveLog.submit(checkpoint);
        archiveLog.submit(checkpoint);
        for (const earlier of seen) archiveLog.submit(earlier);
        seen.push(checkpoint);
      },
    };
    await capture(storage, key, 2, 3, twice);
    await capture(storage, key, 2, 3, twice, 100);
    expect(archiveLog.size).toBe(4);
    await archiveLog.close();
    expect(new Set(await leavesOf(storage, 4))).toEqual(await streamLeaves(storage));
  });
});
