/**
 * I/O failures at the worst moments, injected by wrapping the sink's file-system helpers:
 * the archive must never end up with records in a sealed segment, a wedged stream, or a
 * record acknowledged before it is durable.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, ZERO_HASH, verifyArchive } from '@offchannel/core';
import { batchAfter, createRecordingLogger, openFilesUnder } from '@offchannel/core/testing';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { openFsSink } from './fs-sink.ts';
import type * as FsUtils from './fs-utils.ts';
import type * as SegmentHasher from './segment-hasher.ts';

const faults = vi.hoisted(() => ({ syncDirectory: 0, createReadOnlyFile: 0, segmentDigest: 0, writeUndone: 0, closeFails: 0 }));

vi.mock('./segment-hasher.ts', async (importOriginal) => {
  const real = await importOriginal<typeof SegmentHasher>();
  return {
    ...real,
    // As if the segment-hash worker died: the digest a seal waits for rejects.
    workerSegmentHash: (...args: Parameters<typeof real.workerSegmentHash>) => {
      const hash = real.workerSegmentHash(...args);
      return {
        ...hash,
        digest: async () => {
          if (faults.segmentDigest > 0) {
            faults.segmentDigest--;
            await hash.discard();
            throw new Error('the segment-hash worker exited (code 1)');
          }
          return hash.digest();
        },
      };
    },
  };
});

vi.mock('./fs-utils.ts', async (importOriginal) => {
  const real = await importOriginal<typeof FsUtils>();
  return {
    ...real,
    syncDirectory: async (dir: string) => {
      if (faults.syncDirectory > 0) {
        faults.syncDirectory--;
        throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
      }
      return real.syncDirectory(dir);
    },
    // A write that fails, and whose undo (truncating the segment back) fails too.
    writeFully: async (handle: FileHandle, bytes: Uint8Array, position: number) => {
      if (faults.closeFails > 0) {
        // close(2) reporting EIO (NFS, some FUSE file systems): the descriptor is gone all the same.
        faults.closeFails--;
        const close = handle.close.bind(handle);
        handle.close = async () => {
          await close();
          throw Object.assign(new Error('injected EIO on close'), { code: 'EIO' });
        };
      }
      if (faults.writeUndone > 0) {
        faults.writeUndone--;
        const truncate = handle.truncate.bind(handle);
        handle.truncate = async () => {
          handle.truncate = truncate;
          throw Object.assign(new Error('injected EIO on truncate'), { code: 'EIO' });
        };
        throw Object.assign(new Error('injected EIO on write'), { code: 'EIO' });
      }
      return real.writeFully(handle, bytes, position);
    },
    createReadOnlyFile: async (tmp: string, target: string, bytes: Uint8Array) => {
      const created = await real.createReadOnlyFile(tmp, target, bytes);
      if (faults.createReadOnlyFile > 0) {
        faults.createReadOnlyFile--;
        throw Object.assign(new Error('injected EIO after link'), { code: 'EIO' });
      }
      return created;
    },
  };
});

let dir: string;
const stream = 'demo:alice';
beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-faults-')), 'archive');
});
afterEach(async () => {
  faults.syncDirectory = 0;
  faults.createReadOnlyFile = 0;
  faults.segmentDigest = 0;
  faults.writeUndone = 0;
  faults.closeFails = 0;
  // Whatever failed, a closed sink holds no file of its archive open (Linux: /proc/self/fd).
  expect(await openFilesUnder(path.dirname(dir))).toEqual([]);
  await rm(path.dirname(dir), { recursive: true, force: true });
});

async function intact(): Promise<void> {
  const reader = await openFsSink({ dir, readOnly: true });
  const report = await verifyArchive(reader);
  await reader.close();
  expect(report.failures).toEqual([]);
}

it('a seal that fails after its file was linked never lets records into the sealed segment', async () => {
  const sink = await openFsSink({ dir, segmentBytes: 600 });
  const writer = new Recorder({ sink }).writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  const capture = (index: number) =>
    writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'b' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index} `.repeat(10) });
  await capture(1);
  faults.createReadOnlyFile = 1; // the next seal's file is linked, then "fails"
  for (let index = 2; index <= 12; index++) await capture(index);
  expect(faults.createReadOnlyFile, 'the injected failure was hit').toBe(0);
  // The segment whose seal failed is closed too: only the active (newest) one stays open.
  const open = (await openFilesUnder(path.dirname(dir))).filter((file) => file.endsWith('.jsonl'));
  const segments = (await readdir(path.join(dir, 'streams', stream))).filter((name) => name.endsWith('.jsonl'));
  expect(open.map((file) => path.basename(file)).filter((name) => name !== segments.sort().at(-1))).toEqual([]);
  await sink.close();
  expect(segments.length).toBeGreaterThan(3);
  await intact();
});

it('a seal whose digest failed (the hash worker died) hashes the file itself, and capture goes on', async () => {
  const logger = createRecordingLogger();
  const sink = await openFsSink({ dir, segmentBytes: 600, logger });
  const writer = new Recorder({ sink }).writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  const capture = (index: number) =>
    writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'b' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index} `.repeat(10) });
  await capture(1);
  faults.segmentDigest = 2; // the next two seals find no digest
  const results = [];
  for (let index = 2; index <= 12; index++) results.push(await capture(index));
  expect(faults.segmentDigest, 'the injected failures were hit').toBe(0);
  expect(results.map((result) => result.seq)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  await sink.close();
  const names = await readdir(path.join(dir, 'streams', stream));
  const segments = names.filter((name) => name.endsWith('.jsonl'));
  expect(segments.length).toBeGreaterThan(3);
  // The seal did not fail (no reopen, no error logged): it hashed the segment's file instead.
  expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  // Every segment but the last is sealed, each with the SHA-256 of its file.
  const seals = names.filter((name) => name.endsWith('.seal.json'));
  expect(seals.length).toBeGreaterThanOrEqual(segments.length - 1);
  for (const name of seals) {
    const seal = JSON.parse(await readFile(path.join(dir, 'streams', stream, name), 'utf8')) as { sha256: string };
    const content = await readFile(path.join(dir, 'streams', stream, name.replace('.seal.json', '.jsonl')));
    expect(seal.sha256).toBe(createHash('sha256').update(content).digest('hex'));
  }
  await intact();
});

it('a failed fsync while creating a segment does not wedge the stream', async () => {
  const sink = await openFsSink({ dir });
  faults.syncDirectory = 1; // the new segment's directory entry cannot be made durable
  await expect(sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 2))).rejects.toMatchObject({ code: 'EIO' });
  const head = await sink.head(stream);
  const next = await sink.appendBatch(batchAfter(stream, head, 2));
  expect(next.seq).toBe(head.seq + 2);
  expect(faults.syncDirectory, 'the injected failure was hit').toBe(0);
  await sink.close();
  const reader = await openFsSink({ dir, readOnly: true });
  const seqs: number[] = [];
  for await (const stored of reader.read(stream)) seqs.push(stored.seq);
  expect(seqs).toEqual([1, 2]);
  for await (const finding of reader.audit()) expect.fail(finding.message);
  await reader.close();
});

// A stream left broken is reopened by its next append: the sink's close() must not miss the
// appender that reopen creates (its segment and writer lock would stay open). Both ways a stream
// breaks: a seal that failed (no segment left open), a write that could not be undone (its
// segment still open, so closing the broken appender takes a trip to the disk).
it.each([
  { broken: 'by a failed seal', segmentBytes: 200, fault: 'createReadOnlyFile' },
  { broken: 'by a write that could not be undone', segmentBytes: 1 << 20, fault: 'writeUndone' },
] as const)('an append that reopens a stream broken $broken while the sink closes leaves nothing open or locked', async ({ segmentBytes, fault }) => {
  const sink = await openFsSink({ dir, segmentBytes });
  let head = await sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 1));
  faults[fault] = 1;
  // The seal's batch is acknowledged (the seal failing after); the failed write's is not.
  if (fault === 'writeUndone') await expect(sink.appendBatch(batchAfter(stream, head, 3))).rejects.toMatchObject({ code: 'EIO' });
  else head = await sink.appendBatch(batchAfter(stream, head, 3));
  expect(faults[fault], 'the injected failure was hit').toBe(0);
  // The next append reopens the stream (recovery repairs it) while close() runs.
  const appending = sink.appendBatch(batchAfter(stream, head, 1));
  await sink.close();
  await expect(appending).rejects.toMatchObject({ code: 'CLOSED' });
  expect(await openFilesUnder(path.dirname(dir))).toEqual([]);
  // The stream's writer lock went with the sink: another writer takes it at once.
  const next = await openFsSink({ dir });
  expect((await next.appendBatch(batchAfter(stream, head, 1))).seq).toBe(head.seq + 1);
  await next.close();
  const reader = await openFsSink({ dir, readOnly: true });
  for await (const finding of reader.audit()) expect.fail(finding.message);
  await reader.close();
});

it('a stream whose segment fails to close still lets go of its lock, and the sink closes every other stream', async () => {
  const sink = await openFsSink({ dir });
  const streams = ['demo:alice', 'demo:bob', 'demo:carol'];
  faults.closeFails = 1; // the first stream's segment will report EIO when it is closed
  for (const name of streams) await sink.appendBatch(batchAfter(name, { seq: 0, hash: ZERO_HASH }, 2));
  await expect(sink.close()).rejects.toMatchObject({ code: 'EIO' });
  expect(await openFilesUnder(path.dirname(dir))).toEqual([]);
  // Every stream's writer lock went with the sink: another writer takes each at once.
  const next = await openFsSink({ dir });
  for (const name of streams) expect((await next.appendBatch(batchAfter(name, await next.head(name), 1))).seq).toBe(3);
  await next.close();
});

// A small blob is linked on a blob writer thread and its directory fsync'd by the main thread
// (the injected fsync fails); a large one is written by createReadOnlyFile (which "fails" after
// its link).
it.each([
  { blob: 'small', bytes: new TextEncoder().encode('raw platform bytes') },
  { blob: 'large', bytes: new Uint8Array(300 * 1024).fill(7) },
])('a $blob blob whose directory fsync failed after it was linked is not named by a record until a retry made it durable', async ({ blob, bytes }) => {
  const sink = await openFsSink({ dir });
  const writer = new Recorder({ sink }).writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  const input = {
    kind: 'message',
    sentAt: '2026-11-21T10:00:00Z',
    conversation: { id: 'c', type: 'direct' },
    sender: { id: 'b' },
    direction: 'inbound',
    native: { id: 'm1' },
    text: 'with raw evidence',
    raw: { bytes, format: 'test' },
  } as const;
  // The blob's file is written and linked, then its directory entry "fails".
  if (blob === 'small') faults.syncDirectory = 1;
  else faults.createReadOnlyFile = 1;
  await expect(writer.capture(input)).rejects.toMatchObject({ code: 'EIO' });
  expect(faults.createReadOnlyFile + faults.syncDirectory, 'the injected failure was hit').toBe(0);
  expect(await readdir(path.join(dir, 'blobs', 'sha256')), 'the blob was linked').toHaveLength(1);
  expect((await sink.head(stream)).seq, 'no record names a blob that is not known durable').toBe(0);
  // The retry finds the linked file (EEXIST), checks it, fsyncs it and its directory, then appends.
  const result = await writer.capture(input);
  expect(result).toMatchObject({ status: 'recorded', seq: 1 });
  await sink.close();
  const staged = await readdir(path.join(dir, 'tmp'));
  expect(staged, 'no staged file left behind').toEqual([]);
  await intact();
});
