/**
 * Reading through a pruned spool in capture: a real fs spool, pruned by a real Forwarder after
 * copying to a real fs archive of record. With the key index lost, the Recorder rebuilds it
 * completely — the pruned records read from the archive — so capture continues and a replay of a
 * pruned message is a duplicate, not a second record. A seam that does not match is a typed,
 * fatal error; an archive that cannot be read is a typed, retryable one, and capture resumes
 * once it answers. On the normal path (index intact) the archive is never read.
 */
import { chmod, cp, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CaptureInput, Forwarder, OffchannelError, Recorder, type Sink, SinkUnavailableError, type StoredRecord, decodeRecord, generateEd25519NoteKey, isRetryable, openKeyIndex, sha256Hex, verifyArchive } from '@offchannel/core';
import { runSinkConformance } from '@offchannel/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FsSink, openFsSink } from './fs-sink.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const stream = 'demo:alice';
const source = { package: 't', version: '0' };
const FAR_FUTURE = new Date('2100-01-01T00:00:00Z');
const clock = () => new Date('2026-11-21T10:00:00Z');
let work: string;
let prunedThrough = 0;
let copies = 0;

function message(index: number, text = 'message'): CaptureInput {
  return {
    kind: 'message',
    sentAt: '2026-11-21T10:00:00Z',
    conversation: { id: `c${index % 3}`, type: 'direct' },
    sender: { id: 'bob' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `${text} ${index} `.repeat(6),
    // Raw evidence in a blob, which the spool prunes with the records that name it.
    ...(index % 50 === 0 ? { raw: { format: 'demo', bytes: Buffer.from(`raw ${index}`) } } : {}),
  };
}

/** Spool and archive of record after capture, forwarding and pruning (copied per test). */
async function copy(): Promise<{ spool: string; archive: string; state: string }> {
  const dir = path.join(work, `copy-${++copies}`);
  await cp(path.join(work, 'pristine'), dir, { recursive: true });
  return { spool: path.join(dir, 'spool'), archive: path.join(dir, 'archive'), state: path.join(dir, 'state') };
}

/** The archive's sink, with the seq each `read` of the stream started at noted (an observer, not a stub). */
function noting(sink: Sink, reads: number[], down?: { value: boolean }): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      if (property === 'read') {
        return (name: string, options?: { readonly fromSeq?: number }) => {
          if (name === stream) reads.push(options?.fromSeq ?? 1);
          // The failure the S3 sink reports when the store cannot be reached.
          if (down?.value) throw new SinkUnavailableError('the archive could not be reached (test)');
          return target.read(name, options);
        };
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

/** Capture as `offchannel capture` runs it: the recorder on the forwarder's sink, a persistent key index. */
async function opened(dirs: { spool: string; archive: string; state: string }, options: { archive?: (sink: Sink) => Sink; prune?: boolean } = {}) {
  const spool = await openFsSink({ dir: dirs.spool, segmentBytes: 8_000 });
  const target = await openFsSink({ dir: dirs.archive });
  const sink = options.archive ? options.archive(target) : target;
  const forwarder = new Forwarder({ spool, targets: [{ name: 'record', sink }], pollMs: 50, minRetryMs: 10, maxRetryMs: 50, ...(options.prune ? { prune: { minAgeMs: 0, now: () => FAR_FUTURE } } : {}) });
  const index = openKeyIndex({ file: path.join(dirs.state, 'key-index.sqlite') });
  const recorder = new Recorder({ sink: forwarder.sink, keyIndex: index, checkpoints: { signer: key, everyRecords: 70 }, clock });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  const close = async () => {
    await recorder.close();
    await forwarder.stop();
    index.close();
    await spool.close();
    await target.close();
  };
  return { spool, target, forwarder, index, recorder, writer, close };
}

/** A copy with records 401–700 captured and forwarded, so a second prune has sealed segments to drop. */
async function grown(): Promise<{ spool: string; archive: string; state: string }> {
  const dirs = await copy();
  const capture = await opened(dirs);
  capture.forwarder.start();
  for (let index = 401; index <= 700; index++) await capture.writer.capture(message(index));
  await capture.recorder.flush();
  await capture.forwarder.drain({ timeoutMs: 30_000 });
  await capture.close();
  return dirs;
}

/** The spool and archive of `dirs` with a forwarder that prunes only when told (no poll during a test). */
async function pruneWhenTold(dirs: { spool: string; archive: string }) {
  const spool: FsSink = await openFsSink({ dir: dirs.spool, segmentBytes: 8_000 });
  const target = await openFsSink({ dir: dirs.archive });
  const forwarder = new Forwarder({ spool, targets: [{ name: 'record', sink: target }], pollMs: 60_000, prune: { minAgeMs: 0, now: () => FAR_FUTURE } });
  forwarder.start();
  await forwarder.drain({ timeoutMs: 30_000 });
  const close = async () => {
    await forwarder.stop();
    await spool.close();
    await target.close();
  };
  return { spool, target, forwarder, close };
}

/** Reads `records` to the end or the first error, running `during` after the record with seq `at`. */
async function readAll(records: AsyncIterable<StoredRecord>, at: number, during: () => Promise<unknown>): Promise<{ seqs: number[]; error: unknown }> {
  const seqs: number[] = [];
  try {
    for await (const stored of records) {
      seqs.push(stored.seq);
      if (stored.seq === at) await during();
    }
    return { seqs, error: undefined };
  } catch (error) {
    return { seqs, error };
  }
}

/** The first record `sink` returns reading from `fromSeq` (the read then stopped). */
async function firstFrom(sink: Sink, fromSeq: number): Promise<StoredRecord> {
  for await (const stored of sink.read(stream, { fromSeq })) return stored;
  throw new Error(`no record from seq ${fromSeq}`);
}

/** The segment files of the stream in `dir`, in seq order. */
async function segmentFiles(dir: string): Promise<string[]> {
  const streamDir = path.join(dir, 'streams', stream);
  const names = (await readdir(streamDir)).filter((name) => name.endsWith('.jsonl'));
  return names.sort().map((name) => path.join(streamDir, name));
}

/** Rewrites the line of record `seq` in the fs archive `dir` (as an attacker with write access could). */
async function alterRecord(dir: string, seq: number, change: (line: string) => string): Promise<string> {
  for (const file of await segmentFiles(dir)) {
    const lines = (await readFile(file, 'utf8')).split('\n');
    const at = lines.findIndex((line) => line.includes(`"seq":${seq},`));
    if (at === -1) continue;
    const changed = change(lines[at] as string);
    lines[at] = changed;
    await chmod(file, 0o644);
    await writeFile(file, lines.join('\n'));
    return changed;
  }
  throw new Error(`no record ${seq} in ${dir}`);
}

async function loseKeyIndex(state: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm']) await rm(path.join(state, `key-index.sqlite${suffix}`), { force: true });
}

async function verified(dir: string): Promise<{ ok: boolean; head: number | undefined }> {
  const sink = await openFsSink({ dir, readOnly: true });
  try {
    const report = await verifyArchive(sink, { verifiers: [key.verifier], workers: 0 });
    expect(report.failures).toEqual([]);
    return { ok: report.ok, head: report.streams.find((summary) => summary.stream === stream)?.head.seq };
  } finally {
    await sink.close();
  }
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-read-through-'));
  const dirs = { spool: path.join(work, 'pristine', 'spool'), archive: path.join(work, 'pristine', 'archive'), state: path.join(work, 'pristine', 'state') };
  const capture = await opened(dirs, { prune: true });
  capture.forwarder.start();
  for (let index = 1; index <= 400; index++) expect((await capture.writer.capture(message(index))).status).toBe('recorded');
  await capture.recorder.flush();
  await capture.forwarder.drain({ timeoutMs: 30_000 });
  await capture.forwarder.prune();
  prunedThrough = (await capture.spool.pruned(stream))?.seq ?? 0;
  await capture.close();
}, 60_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('a pruned spool read through the archive of record', () => {
  it('the key index lost: rebuilt completely through the archive, a replay of a pruned message is a duplicate, capture continues and both copies verify', { timeout: 60_000 }, async () => {
    expect(prunedThrough).toBeGreaterThan(100);
    const dirs = await copy();
    await loseKeyIndex(dirs.state);
    const reads: number[] = [];
    const capture = await opened(dirs, { archive: (sink) => noting(sink, reads) });
    capture.forwarder.start();
    // Before the fix this failed with RECORDS_PRUNED at every capture (the resync read seq 1).
    const replay = await capture.writer.capture(message(5));
    expect(replay).toMatchObject({ status: 'duplicate', seq: 5 });
    expect((await capture.writer.capture(message(prunedThrough))).seq).toBe(prunedThrough);
    expect((await capture.writer.capture(message(399))).status).toBe('duplicate');
    for (let index = 401; index <= 480; index++) expect((await capture.writer.capture(message(index))).seq).toBe(index);
    // The archive was read for the pruned prefix (the seam, then from seq 1), and only then.
    expect(reads).toContain(1);
    expect(Math.max(...reads)).toBeLessThanOrEqual(prunedThrough);
    // The index holds every key again, the pruned ones included.
    expect(capture.index.head(stream).seq).toBe(480);
    expect(capture.index.get(stream, replay.key)).toBe(5);
    await capture.forwarder.drain({ timeoutMs: 30_000 });
    await capture.close();
    expect(await verified(dirs.archive)).toEqual({ ok: true, head: 480 });
    expect(await verified(dirs.spool)).toEqual({ ok: true, head: 480 });
  });

  it('the index intact: the archive of record is never read, at start or per capture', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    const reads: number[] = [];
    const capture = await opened(dirs, { archive: (sink) => noting(sink, reads) });
    expect((await capture.writer.capture(message(5))).status).toBe('duplicate');
    for (let index = 401; index <= 420; index++) expect((await capture.writer.capture(message(index))).status).toBe('recorded');
    await capture.close();
    expect(reads).toEqual([]);
  });

  it('the spool\'s tiles lost too: the Merkle state is rebuilt from the records read through, and later checkpoints verify', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    await loseKeyIndex(dirs.state);
    await rm(path.join(dirs.spool, 'tiles', stream), { recursive: true, force: true });
    const capture = await opened(dirs);
    expect((await capture.writer.capture(message(7))).status).toBe('duplicate');
    for (let index = 401; index <= 500; index++) expect((await capture.writer.capture(message(index))).status).toBe('recorded');
    await capture.close();
    // The new checkpoints (at 420, 490) extend the signed history: the archive of record, which
    // has every record and tile, verifies them once forwarded.
    const spool = await openFsSink({ dir: dirs.spool, readOnly: true });
    const target = await openFsSink({ dir: dirs.archive });
    const forwarder = new Forwarder({ spool, targets: [{ name: 'record', sink: target }], pollMs: 50 });
    forwarder.start();
    await forwarder.drain({ timeoutMs: 30_000 });
    await forwarder.stop();
    await spool.close();
    await target.close();
    expect(await verified(dirs.archive)).toEqual({ ok: true, head: 500 });
  });

  it('an archive that does not continue into the spool is a typed, fatal error; nothing is recorded', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    await loseKeyIndex(dirs.state);
    // Another archive: the same stream with other records (another writer, a restored bucket).
    const other = path.join(work, `other-${copies}`);
    const sink = await openFsSink({ dir: other });
    const recorder = new Recorder({ sink, clock });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 1; index <= 400; index++) await writer.capture(message(index, 'another'));
    await recorder.close();
    await sink.close();
    const empty = path.join(work, `empty-${copies}`);
    for (const [archive, problem] of [
      [other, `record ${prunedThrough} has hash`],
      [empty, `there is no record ${prunedThrough}. Most likely the archive of record is not the one this spool was forwarded to: if archive.url was changed`],
    ] as const) {
      const capture = await opened({ ...dirs, archive });
      const error = await capture.writer.capture(message(5)).catch((caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'PRUNED_SEAM_MISMATCH'), String(error)).toBe(true);
      expect(isRetryable(error)).toBe(false);
      expect((error as Error).message).toContain(problem);
      expect((await capture.spool.head(stream)).seq).toBe(400);
      await capture.close();
    }
  });

  it('an archive that cannot be reached during the rebuild: captures are rejected as retryable (not acknowledged) and go through once it answers', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    await loseKeyIndex(dirs.state);
    const down = { value: true };
    const reads: number[] = [];
    const capture = await opened(dirs, { archive: (sink) => noting(sink, reads, down) });
    for (const input of [message(5), message(401)]) {
      const error = await capture.writer.capture(input).catch((caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'PRUNED_READ_UNAVAILABLE'), String(error)).toBe(true);
      expect(isRetryable(error)).toBe(true);
      expect((error as Error).message).toContain(`records 1–${prunedThrough} were pruned`);
      expect((error as Error).message).toContain('reachable from this host');
    }
    expect((await capture.spool.head(stream)).seq).toBe(400);
    // The archive answers again: the retried captures go through, the replay still a duplicate.
    down.value = false;
    expect(await capture.writer.capture(message(5))).toMatchObject({ status: 'duplicate', seq: 5 });
    expect(await capture.writer.capture(message(401))).toMatchObject({ status: 'recorded', seq: 401 });
    await capture.close();
    expect(await verified(dirs.spool)).toEqual({ ok: true, head: 401 });
  });

  it('a spool pruned further while a read is in the archive continues from the archive, not with RECORDS_PRUNED', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    // Capture more and forward it, so a second prune has sealed segments to drop.
    const capture = await opened(dirs);
    capture.forwarder.start();
    for (let index = 401; index <= 700; index++) await capture.writer.capture(message(index));
    await capture.recorder.flush();
    await capture.forwarder.drain({ timeoutMs: 30_000 });
    await capture.close();
    const spool: FsSink = await openFsSink({ dir: dirs.spool, segmentBytes: 8_000 });
    const target = await openFsSink({ dir: dirs.archive });
    // No poll during the test: the prune happens where the read is.
    const forwarder = new Forwarder({ spool, targets: [{ name: 'record', sink: target }], pollMs: 60_000, prune: { minAgeMs: 0, now: () => FAR_FUTURE } });
    forwarder.start();
    await forwarder.drain({ timeoutMs: 30_000 });
    const seqs: number[] = [];
    let further = 0;
    for await (const stored of forwarder.sink.read(stream)) {
      // Inside the first prefix (read from the archive), the spool prunes up to the newer checkpoint.
      if (stored.seq === 10) further = (await forwarder.prune()).at(0)?.throughSeq ?? 0;
      seqs.push(stored.seq);
    }
    await forwarder.stop();
    await spool.close();
    await target.close();
    expect(further).toBeGreaterThan(prunedThrough);
    expect(seqs).toEqual(Array.from({ length: 700 }, (_, index) => index + 1));
  });
});

describe('a prune or damage during a read: never a silent gap', () => {
  it('the spool read alone: a segment pruned after the read listed it is RECORDS_PRUNED (the prefix covers it), not skipped', { timeout: 60_000 }, async () => {
    const dirs = await grown();
    const { spool, forwarder, close } = await pruneWhenTold(dirs);
    let further = 0;
    const prune = async () => {
      further = (await forwarder.prune()).at(0)?.throughSeq ?? 0;
    };
    // Inside the spool's first segment, the forwarder prunes up to the newer checkpoint.
    const { seqs, error } = await readAll(spool.read(stream, { fromSeq: prunedThrough + 1 }), prunedThrough + 1, prune);
    expect(further).toBeGreaterThan(prunedThrough + 100);
    // Before the fix the read went on at the next segment still on disk: seqs were skipped.
    expect(OffchannelError.hasCode(error, 'RECORDS_PRUNED'), String(error)).toBe(true);
    expect((error as { prunedThrough?: number }).prunedThrough).toBe(further);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, index) => prunedThrough + 1 + index));
    await close();
  });

  it('the spool\'s bulk read (readSegments) likewise: RECORDS_PRUNED, not a skipped segment', { timeout: 60_000 }, async () => {
    const dirs = await grown();
    const { spool, forwarder, close } = await pruneWhenTold(dirs);
    const pieces: number[] = [];
    const error = await (async () => {
      for await (const piece of spool.readSegments(stream)) {
        pieces.push(piece.firstSeq);
        if (pieces.length === 1) await forwarder.prune();
      }
    })().catch((caught: unknown) => caught);
    await close();
    expect(pieces).toEqual([prunedThrough + 1]);
    expect(OffchannelError.hasCode(error, 'RECORDS_PRUNED'), String(error)).toBe(true);
  });

  it('the spool read alone: a segment that vanishes during a read without a prune covering it is ARCHIVE_CORRUPT naming it', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    const spool = await openFsSink({ dir: dirs.spool, readOnly: true });
    const files = await segmentFiles(dirs.spool);
    const second = files.find((file) => Number(path.basename(file, '.jsonl')) > prunedThrough + 1) as string;
    const { seqs, error } = await readAll(spool.read(stream, { fromSeq: prunedThrough + 1 }), prunedThrough + 1, () => unlink(second));
    await spool.close();
    expect(OffchannelError.hasCode(error, 'ARCHIVE_CORRUPT'), String(error)).toBe(true);
    expect((error as Error).message).toContain(path.basename(second));
    expect(seqs.at(-1)).toBe(Number(path.basename(second, '.jsonl')) - 1);
  });

  it('through the archive of record: a prune while the read is in the spool sends it back to the archive; every seq once, in order', { timeout: 60_000 }, async () => {
    const dirs = await grown();
    const { forwarder, close } = await pruneWhenTold(dirs);
    let further = 0;
    const prune = async () => {
      further = (await forwarder.prune()).at(0)?.throughSeq ?? 0;
    };
    // The Recorder's resync after a restart with an older key index: from after what it holds.
    const from = prunedThrough - 20;
    const { seqs, error } = await readAll(forwarder.sink.read(stream, { fromSeq: from }), prunedThrough + 1, prune);
    await close();
    expect(error).toBeUndefined();
    expect(further).toBeGreaterThan(prunedThrough + 100);
    expect(seqs).toEqual(Array.from({ length: 700 - from + 1 }, (_, index) => from + index));
  });

  it('through the archive of record: a spool that skips seqs its prefix does not cover is ARCHIVE_CORRUPT', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    // A segment after the prefix removed by hand (not by a prune): the spool's own read skips it
    // (offchannel verify reports the gap); the read-through must not pass it on.
    const files = await segmentFiles(dirs.spool);
    await unlink(files.find((file) => Number(path.basename(file, '.jsonl')) > prunedThrough + 1) as string);
    const { forwarder, close } = await pruneWhenTold(dirs);
    const { seqs, error } = await readAll(forwarder.sink.read(stream), 0, async () => undefined);
    await close();
    expect(OffchannelError.hasCode(error, 'ARCHIVE_CORRUPT'), String(error)).toBe(true);
    expect((error as Error).message).toContain('where');
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, index) => index + 1));
  });
});

describe('every record read from the archive of record is authenticated', () => {
  it('a record of the prefix altered in the archive (the seam record intact) stops the rebuild with PRUNED_SEAM_MISMATCH before the altered record is followed', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    await loseKeyIndex(dirs.state);
    await alterRecord(dirs.archive, 50, (line) => line.replace('message 50 ', 'massage 50 '));
    const capture = await opened(dirs);
    // Before the fix the rebuild took the altered record as it came and capture went on.
    const error = await capture.writer.capture(message(5)).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'PRUNED_SEAM_MISMATCH'), String(error)).toBe(true);
    expect(isRetryable(error)).toBe(false);
    expect((error as Error).message).toContain('record 51 does not chain to record 50');
    expect((await capture.spool.head(stream)).seq).toBe(400);
    await capture.close();
  });

  it('a read from inside the prefix is anchored on the record before it: a substituted record just before fromSeq is found', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    await alterRecord(dirs.archive, 50, (line) => line.replace('message 50 ', 'massage 50 '));
    const { forwarder, close } = await pruneWhenTold(dirs);
    // A start whose key index ends at record 50 (as a rebuild that read the substitute left it).
    const { seqs, error } = await readAll(forwarder.sink.read(stream, { fromSeq: 51 }), 0, async () => undefined);
    await close();
    expect(OffchannelError.hasCode(error, 'PRUNED_SEAM_MISMATCH'), String(error)).toBe(true);
    expect((error as Error).message).toContain('record 51 does not chain to record 50');
    expect(seqs).toEqual([]);
  });

  it('the archive\'s seam record and the spool\'s pruned.json rewritten to match: the spool\'s next record does not continue it, ARCHIVE_CORRUPT', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    await loseKeyIndex(dirs.state);
    const forged = await alterRecord(dirs.archive, prunedThrough, (line) => line.replace(`message ${prunedThrough} `, `massage ${prunedThrough} `));
    const prunedFile = path.join(dirs.spool, 'streams', stream, 'pruned.json');
    const prefix = JSON.parse(await readFile(prunedFile, 'utf8')) as { lastHash: string };
    await chmod(prunedFile, 0o644);
    await writeFile(prunedFile, `${JSON.stringify({ ...prefix, lastHash: sha256Hex(Buffer.from(forged)) })}\n`);
    const capture = await opened(dirs);
    const error = await capture.writer.capture(message(5)).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'ARCHIVE_CORRUPT'), String(error)).toBe(true);
    expect((error as Error).message).toContain(`record ${prunedThrough + 1} does not continue its pruned prefix`);
    await capture.close();
  });
});

describe('other reads through the archive of record', () => {
  it('a blob pruned from the spool is read from the archive of record, its hash checked', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    const { spool, forwarder, close } = await pruneWhenTold(dirs);
    const raw = decodeRecord((await firstFrom(forwarder.sink, 50)).bytes).record.raw;
    expect(raw).toBeDefined();
    const sha256 = raw?.sha256 as string;
    expect(await spool.getBlob(sha256)).toBeUndefined();
    // Before the fix: undefined (a receipt's seq list in such a blob was dropped).
    expect(Buffer.from((await forwarder.sink.getBlob(sha256)) as Uint8Array).toString()).toBe('raw 50');
    // The spool's own answer still decides what the recorder stores.
    expect(await forwarder.sink.statBlob(sha256)).toBeUndefined();
    await close();
    // An archive holding other bytes under the name: refused, not returned.
    const file = path.join(dirs.archive, 'blobs', 'sha256', sha256);
    await chmod(file, 0o644);
    await writeFile(file, 'raw 51');
    const again = await pruneWhenTold(dirs);
    const error = await again.forwarder.sink.getBlob(sha256).catch((caught: unknown) => caught);
    await again.close();
    expect(OffchannelError.hasCode(error, 'BLOB_MISMATCH'), String(error)).toBe(true);
  });

  it('fromSeq 0 reads from seq 1, as the spool and memory sinks do', { timeout: 60_000 }, async () => {
    const dirs = await copy();
    const { forwarder, close } = await pruneWhenTold(dirs);
    // Before the fix: PRUNED_SEAM_MISMATCH (seq 1 came where 0 was due).
    const first = await firstFrom(forwarder.sink, 0);
    await close();
    expect(first.seq).toBe(1);
  });
});

describe('the forwarder\'s sink over an fs spool (reading through to an fs archive of record)', () => {
  runSinkConformance({
    test: it,
    checkpointRanges: true,
    createFixture: async () => {
      const root = await mkdtemp(path.join(tmpdir(), 'offchannel-read-through-conformance-'));
      // An empty archive of record, read only by the sink under test.
      await (await openFsSink({ dir: path.join(root, 'archive') })).close();
      const through = async (readOnly: boolean): Promise<Sink> => {
        const spool = await openFsSink({ dir: path.join(root, 'spool'), segmentBytes: 700, ...(readOnly ? { readOnly } : {}) });
        const target = await openFsSink({ dir: path.join(root, 'archive'), readOnly: true });
        const { sink } = new Forwarder({ spool, targets: [{ name: 'record', sink: target }] });
        return {
          ...sink,
          close: async () => {
            await sink.close();
            await target.close();
          },
        };
      };
      return { open: () => through(false), openReadOnly: () => through(true), destroy: () => rm(root, { recursive: true, force: true }) };
    },
  });
});
