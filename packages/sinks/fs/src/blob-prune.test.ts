/**
 * Blob pruning of a spool: a blob goes only when every target holds it, no record still in the
 * spool (any stream) names it, and it is old enough; captures storing or naming the same blob
 * while a pass runs never leave a record naming a blob the spool lacks; another writer process
 * on the spool stops the pass.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BlobsPrunedEvent, Forwarder, Recorder, type Sink, blobNamesIn, generateEd25519NoteKey, sha256Hex, verifyArchive } from '@offchannel/core';
import { MemoryStorage, createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArchiveLayout } from './archive-layout.ts';
import { BlobPruneGuard, SpoolPresence } from './blob-prune.ts';
import { type FsSink, openFsSink } from './fs-sink.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const source = { package: 't', version: '0' };
const FAR_FUTURE = new Date('2100-01-01T00:00:00Z');
const clock = () => new Date('2026-11-21T10:00:00Z');
let work: string;

beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-blob-prune-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

function message(account: string, index: number, attachments: Uint8Array[]) {
  return {
    kind: 'message' as const,
    sentAt: '2026-11-21T10:00:00Z',
    conversation: { id: 'c1', type: 'direct' as const },
    sender: { id: 'peer' },
    direction: 'inbound' as const,
    native: { id: `${account}-${index}` },
    text: `message ${index} `.repeat(6),
    attachments: attachments.map((bytes) => ({ bytes, mime: 'application/octet-stream' })),
  };
}

const bytesOf = (text: string) => new TextEncoder().encode(text);

async function blobNames(dir: string): Promise<Set<string>> {
  return new Set(await readdir(path.join(dir, 'blobs', 'sha256')));
}

/** Every blob each record still in the spool names (of every stream). */
async function namedInSpool(spool: Sink): Promise<Map<string, string>> {
  const named = new Map<string, string>();
  for (const stream of await spool.streams()) {
    const from = ((await spool.pruned?.(stream))?.seq ?? 0) + 1;
    for await (const stored of spool.read(stream, { fromSeq: from })) for (const sha256 of blobNamesIn(stored.bytes)) named.set(sha256, `${stream}#${stored.seq}`);
  }
  return named;
}

/** Verify passes (`signed`: against the key; a live stream's tail is not checkpointed yet). */
async function verifyOk(sink: Sink, signed = true): Promise<void> {
  const report = await verifyArchive(sink, signed ? { verifiers: [key.verifier], workers: 0 } : { workers: 0 });
  expect(report.failures).toEqual([]);
}

describe('FsSink.pruneBlobs through the forwarder', () => {
  it('drops blobs named only by pruned records and held by every target; keeps blobs a kept record of any stream names, young ones, and ones a target lacks', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'spool');
    const spool = await openFsSink({ dir, segmentBytes: 8_000 });
    const storage = new MemoryStorage();
    const target = createMemorySink(storage);
    const recorder = new Recorder({ sink: spool, checkpoints: { signer: key, everyRecords: 40 }, clock });
    const alice = recorder.writer({ channel: 'demo', account: 'alice', source });
    const bob = recorder.writer({ channel: 'demo', account: 'bob', source });
    const shared = bytesOf('a contract both custodians received');
    for (let index = 0; index < 300; index++) await alice.capture(message('alice', index, [bytesOf(`alice attachment ${index}`), ...(index === 3 ? [shared] : [])]));
    // bob's only record names the shared blob: it is never pruned (one segment, the active one).
    await bob.capture(message('bob', 0, [shared]));
    await recorder.close();
    // Stored by a capture that failed before its record was written: no record names it, and
    // the target never received it.
    const orphan = bytesOf('an orphan the target never got');
    await spool.putBlob(sha256Hex(orphan), orphan);

    const events: BlobsPrunedEvent[] = [];
    const forwarder = new Forwarder({ spool, targets: [{ name: 't', sink: target }], pollMs: 60_000, prune: { minAgeMs: 0, now: () => FAR_FUTURE }, onBlobsPruned: (event) => events.push(event) });
    forwarder.start();
    await forwarder.drain({ timeoutMs: 30_000 });
    const before = await blobNames(dir);
    await forwarder.prune();
    await forwarder.stop();
    const after = await blobNames(dir);
    const through = (await spool.pruned('demo:alice'))?.seq ?? 0;
    expect(through).toBeGreaterThan(100);

    const named = await namedInSpool(spool);
    // Condition b: every blob a kept record names is still there.
    for (const sha256 of named.keys()) expect(after.has(sha256), `blob named by ${named.get(sha256)}`).toBe(true);
    expect(after.has(sha256Hex(shared))).toBe(true);
    // Condition a: not held by the target — kept.
    expect(after.has(sha256Hex(orphan))).toBe(true);
    // What went: exactly the blobs no kept record names (except the orphan).
    const gone = [...before].filter((name) => !after.has(name));
    expect(gone.length).toBeGreaterThan(100);
    for (const name of gone) {
      expect(named.has(name)).toBe(false);
      expect(storage.blobs.has(name)).toBe(true);
    }
    expect([...after].sort()).toEqual([...new Set([...named.keys(), sha256Hex(orphan)])].sort());
    expect(events).toEqual([{ blobs: gone.length, bytes: expect.any(Number) as number }]);
    await verifyOk(spool);
    await verifyOk(createMemorySink(storage, { readOnly: true }));
    await spool.close();
  });

  it('keeps a blob handed out again by putBlob (older file) for a capture naming it by reference', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'spool');
    const OLD = new Date('2026-01-01T00:00:00Z');
    const CUTOFF = new Date('2026-06-01T00:00:00Z');
    const bytes = bytesOf('shared attachment, stored long ago');
    const first = await openFsSink({ dir });
    await first.putBlob(sha256Hex(bytes), bytes);
    await first.close();
    await utimes(path.join(dir, 'blobs', 'sha256', sha256Hex(bytes)), OLD, OLD);
    // Reopened: the file is found, not written.
    const spool = await openFsSink({ dir });
    const recorder = new Recorder({ sink: spool, clock });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    const ref = await writer.putBlob(bytes);
    expect(await spool.pruneBlobs({ modifiedBefore: CUTOFF, held: () => Promise.resolve(true) })).toEqual({ blobs: 0, bytes: 0 });
    expect((await writer.capture({ ...message('alice', 1, []), attachments: [{ blob: ref, mime: 'text/plain' }] })).status).toBe('recorded');
    // The in-memory fast path: stored by this sink (a new file), aged, handed out again.
    const other = bytesOf('another attachment, stored by this process');
    const otherRef = await writer.putBlob(other);
    await utimes(path.join(dir, 'blobs', 'sha256', otherRef.sha256), OLD, OLD);
    expect(await writer.putBlob(other)).toEqual(otherRef);
    expect(await spool.pruneBlobs({ modifiedBefore: CUTOFF, held: () => Promise.resolve(true) })).toEqual({ blobs: 0, bytes: 0 });
    expect((await writer.capture({ ...message('alice', 2, []), attachments: [{ blob: otherRef, mime: 'text/plain' }] })).status).toBe('recorded');
    await recorder.close();
    await spool.close();
  });

  it('keeps blobs written after `modifiedBefore`, and runs a pass only after segments were pruned (or at the first prune)', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'spool');
    const spool = await openFsSink({ dir, segmentBytes: 8_000 });
    const young = bytesOf('young');
    const old = bytesOf('old');
    await spool.putBlob(sha256Hex(young), young);
    await spool.putBlob(sha256Hex(old), old);
    await utimes(path.join(dir, 'blobs', 'sha256', sha256Hex(old)), new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'));
    const result = await spool.pruneBlobs({ modifiedBefore: new Date('2026-06-01T00:00:00Z'), held: () => Promise.resolve(true) });
    expect(result).toEqual({ blobs: 1, bytes: old.length });
    expect(await blobNames(dir)).toEqual(new Set([sha256Hex(young)]));

    // The forwarder: one pass at its first prune, then none until segments are pruned again.
    let asked = 0;
    const counting = new Proxy(spool, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (property === 'pruneBlobs') asked++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const forwarder = new Forwarder({ spool: counting, targets: [{ name: 't', sink: createMemorySink() }], pollMs: 60_000, prune: { minAgeMs: 0, now: () => FAR_FUTURE } });
    forwarder.start();
    await forwarder.prune();
    await forwarder.prune();
    await forwarder.prune();
    await forwarder.stop();
    expect(asked).toBe(1);
    // The target never held the young blob: kept.
    expect(await blobNames(dir)).toEqual(new Set([sha256Hex(young)]));
    await spool.close();
  });
});

describe('captures racing blob pruning', () => {
  /**
   * Rounds of a capture racing a blob pass. Each record names `perRecord` blobs an earlier
   * capture stored (S3 holds them) whose records are no longer in the spool.
   */
  async function race(ROUNDS: number, perRecord: number): Promise<void> {
    const dir = path.join(work, `spool-${perRecord}`);
    const spool = await openFsSink({ dir });
    if (perRecord > 1) {
      // The append looks up a blob it no longer knows as durable on disk (statBlob) inside the
      // writer's turn; a slow lookup leaves the pass time to mark the record's other blobs.
      const lookup = spool.statBlob.bind(spool);
      spool.statBlob = async (sha256) => {
        await new Promise((resolve) => setTimeout(resolve, 25));
        return lookup(sha256);
      };
    }
    const storage = new MemoryStorage();
    const s3 = createMemorySink(storage);
    const recorder = new Recorder({ sink: spool, checkpoints: { signer: key, everyRecords: 50 }, clock });
    const writers = ['alice', 'bob'].map((account) => recorder.writer({ channel: 'demo', account, source }));
    const held = async (sha256: string, size: number) => (await s3.statBlob(sha256))?.size === size;
    const pause = (turns: number) => new Promise<void>((resolve) => {
      let left = turns;
      const step = (): void => {
        if (left-- <= 0) resolve();
        else setImmediate(step);
      };
      step();
    });
    let refused = 0;
    let pruned = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const blobs = Array.from({ length: perRecord }, (_, at) => bytesOf(`evidence ${round}.${at}`));
      for (const [at, bytes] of blobs.entries()) {
        // Every other blob was stored by an earlier process: this sink's putBlob takes its slow
        // path (the file exists: read, compare, fsync) instead of the fast one.
        if ((round + at) % 2 === 1) await writeFile(path.join(dir, 'blobs', 'sha256', sha256Hex(bytes)), bytes, { mode: 0o444 });
        else await spool.putBlob(sha256Hex(bytes), bytes);
        await s3.putBlob(sha256Hex(bytes), bytes);
      }
      const writer = writers[round % 2] as (typeof writers)[number];
      // Half the rounds store the blobs first and name them later (a connector's
      // recorder.putBlob, then a capture with the refs); half let the capture store them.
      const viaRef = round % 4 >= 2;
      // Varied delays spread the capture's steps over the whole pass (listing, scan, S3 check, unlink).
      const capture = async () => {
        if (round % 3 === 0) await pause((round * 7) % 53);
        else await new Promise((resolve) => setTimeout(resolve, (round * 7) % 29));
        for (let attempt = 0; ; attempt++) {
          try {
            if (viaRef) {
              const refs = [];
              for (const bytes of blobs) refs.push(await recorder.putBlob(bytes));
              await pause((round * 5) % 41);
              return await writer.capture({ ...message(writer.account, round, []), attachments: refs.map((ref) => ({ blob: ref, mime: 'application/octet-stream' })) });
            }
            return await writer.capture(message(writer.account, round, blobs));
          } catch (error) {
            // Refused before anything was written: the connector retries, as on any retryable error.
            if ((error as { code?: string }).code !== 'BLOB_MISSING' || attempt > 5) throw error;
            refused++;
          }
        }
      };
      const prune = async () => {
        await pause((round * 3) % 11);
        // With several blobs, a first pass whose target holds nothing marks them and forgets they
        // were durable without removing any: the append then looks them up on disk one by one,
        // and the real pass marks the rest while it does.
        if (perRecord > 1) {
          await spool.pruneBlobs({ modifiedBefore: FAR_FUTURE, held: async () => false });
          await pause((round * 5) % 7);
        }
        pruned += (await spool.pruneBlobs({ modifiedBefore: FAR_FUTURE, held })).blobs;
      };
      const [captured] = await Promise.all([capture(), prune()]);
      expect(captured.status).toBe('recorded');
      // The record is in the spool, so its blobs must be.
      for (const bytes of blobs) {
        const sha256 = sha256Hex(bytes);
        expect(await spool.statBlob(sha256), `round ${round}: the record names ${sha256}`).toEqual({ sha256, size: bytes.length });
      }
      if (round % 50 === 49) await verifyOk(spool, false);
    }
    await recorder.close();
    // Every record in the spool names a blob the spool holds (S3 holding it would not do: the spool verifies alone).
    const named = await namedInSpool(spool);
    expect(named.size).toBe(ROUNDS * perRecord);
    for (const [sha256, where] of named) expect(await spool.statBlob(sha256), where).toBeDefined();
    await verifyOk(spool);
    // The races went both ways: some passes pruned blobs, some captures were refused and retried.
    expect(pruned).toBeGreaterThan(0);
    console.info(`blob-prune race: ${ROUNDS} rounds of ${perRecord} blob(s), ${pruned} blobs pruned, ${refused} captures refused and retried`);
    await spool.close();
  }

  it('never leaves a record naming a blob the spool lacks (400 races, both ways of naming a blob)', { timeout: 120_000 }, async () => {
    await race(400, 1);
  });

  // An append checking one blob while a pass marks another must not wait for the pass inside
  // the writer's turn (the pass waits for that turn): it is refused and retried instead.
  it('neither hangs nor loses a blob when a record names several blobs a pass is pruning (200 races)', { timeout: 120_000 }, async () => {
    await race(200, 3);
  });
});

describe('BlobPruneGuard in chunks', () => {
  it('decides about every blob when the candidates take several scans of the records', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'spool');
    const sink = await openFsSink({ dir });
    const recorder = new Recorder({ sink, clock });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    // 20 blobs named by records, 25 named by none; S3 holds every other blob.
    const named = Array.from({ length: 20 }, (_, index) => bytesOf(`named ${index}`));
    for (const [index, bytes] of named.entries()) await writer.capture(message('alice', index, [bytes]));
    await recorder.close();
    const loose = Array.from({ length: 25 }, (_, index) => bytesOf(`loose ${index}`));
    for (const bytes of loose) await sink.putBlob(sha256Hex(bytes), bytes);
    await sink.close();
    const layout = new ArchiveLayout(dir);
    const presence = await SpoolPresence.open(layout);
    const held = new Set([...named, ...loose].map((bytes) => sha256Hex(bytes)).filter((_, index) => index % 2 === 0));
    let barriers = 0;
    const result = await new BlobPruneGuard(7).prune(
      {
        layout,
        forgetDurable: () => undefined,
        barrier: () => {
          barriers++;
          return Promise.resolve();
        },
        assertOpen: () => undefined,
      },
      presence,
      { modifiedBefore: FAR_FUTURE, held: (sha256) => Promise.resolve(held.has(sha256)) },
    );
    presence.release();
    expect(barriers).toBe(Math.ceil(45 / 7));
    const expected = loose.filter((bytes) => held.has(sha256Hex(bytes)));
    expect(result).toEqual({ blobs: expected.length, bytes: expected.reduce((sum, bytes) => sum + bytes.length, 0) });
    const left = await blobNames(dir);
    for (const bytes of named) expect(left.has(sha256Hex(bytes))).toBe(true);
    for (const bytes of loose) expect(left.has(sha256Hex(bytes))).toBe(!held.has(sha256Hex(bytes)));
    const reopened = await openFsSink({ dir, readOnly: true });
    await verifyOk(reopened, false);
    await reopened.close();
  });
});

describe('another writer on the spool', () => {
  async function holdSpool(dir: string) {
    const holder = spawn(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', path.join(import.meta.dirname, '__fixtures__', 'hold-stream.ts'), dir, 'demo:other'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => {
      holder.stdout.once('data', () => {
        resolve();
      });
    });
    return holder;
  }

  it('a pass is skipped while another process has the spool open for writing, and runs once it is gone', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'spool');
    const spool = await openFsSink({ dir });
    const bytes = bytesOf('shared with another process');
    await spool.putBlob(sha256Hex(bytes), bytes);
    const holder = await holdSpool(dir);
    try {
      expect(await spool.pruneBlobs({ modifiedBefore: FAR_FUTURE, held: () => Promise.resolve(true) })).toEqual({ blobs: 0, bytes: 0, skipped: 'other-writer' });
      expect((await blobNames(dir)).has(sha256Hex(bytes))).toBe(true);
      // And within one process: a second writable sink on the spool counts as another writer.
      const second: FsSink = await openFsSink({ dir });
      expect((await spool.pruneBlobs({ modifiedBefore: FAR_FUTURE, held: () => Promise.resolve(true) })).skipped).toBe('other-writer');
      await second.close();
    } finally {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    expect(await spool.pruneBlobs({ modifiedBefore: FAR_FUTURE, held: () => Promise.resolve(true) })).toEqual({ blobs: 1, bytes: bytes.length });
    await spool.close();
  });

  it('the forwarder keeps a skipped pass due, says so once, and runs it when the other writer is gone', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'spool');
    const spool = await openFsSink({ dir });
    const bytes = bytesOf('stored by a capture whose record S3 holds');
    await spool.putBlob(sha256Hex(bytes), bytes);
    const target = createMemorySink();
    await target.putBlob(sha256Hex(bytes), bytes);
    const logger = createRecordingLogger();
    const forwarder = new Forwarder({ spool, targets: [{ name: 't', sink: target }], pollMs: 60_000, logger, prune: { minAgeMs: 0, now: () => FAR_FUTURE } });
    forwarder.start();
    const other = await openFsSink({ dir });
    for (let poll = 0; poll < 3; poll++) await forwarder.prune();
    expect(logger.lines.filter((line) => line.message?.startsWith('blobs not pruned') === true)).toHaveLength(1);
    expect((await blobNames(dir)).has(sha256Hex(bytes))).toBe(true);
    await other.close();
    await forwarder.prune();
    await forwarder.stop();
    expect((await blobNames(dir)).has(sha256Hex(bytes))).toBe(false);
    await spool.close();
  });

  it('a writer opened during a pass waits for it, then works', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'spool');
    const spool = await openFsSink({ dir });
    const bytes = bytesOf('pruned while another sink opens');
    await spool.putBlob(sha256Hex(bytes), bytes);
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let asked!: () => void;
    const askedOnce = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const pass = spool.pruneBlobs({
      modifiedBefore: FAR_FUTURE,
      held: async () => {
        asked();
        await gate;
        return true;
      },
    });
    await askedOnce;
    let opened = false;
    const opening = openFsSink({ dir }).then((sink) => {
      opened = true;
      return sink;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(opened).toBe(false);
    release();
    expect((await pass).blobs).toBe(1);
    const other = await opening;
    await other.putBlob(sha256Hex(bytes), bytes);
    expect(await other.statBlob(sha256Hex(bytes))).toEqual({ sha256: sha256Hex(bytes), size: bytes.length });
    await other.close();
    await spool.close();
  });
});
