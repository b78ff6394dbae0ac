/**
 * The index build reads each stream through the sink's bulk read (`readSegments`: whole
 * segments in large pieces) when it has one, and splits the pieces into records itself. What
 * it indexes must be exactly what the record-by-record read gives, up to the verified head and
 * no further; a piece whose records are not the verified chain stops the build; a bulk read
 * that does not start at seq 1 (a pruned spool) leaves the stream to the record-by-record read.
 * Exactly the messages that an edit, delete, reaction or receipt targets are marked `modified`
 * (the exporters look modifiers up for those only).
 * Real archives recorded through the Recorder into a real file-system sink.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureInput, type Sink, type StreamHead, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { ExportError } from '../export-error.ts';
import { type RecordedArchive, recordArchive } from '../__fixtures__/record-archive.ts';
import { bob, client, createTradeArchive } from '../__fixtures__/trade-archive.ts';
import { ArchiveIndex } from './archive-index.ts';

const message = (n: number): CaptureInput => ({
  kind: 'message',
  key: `message:${n}`,
  sentAt: new Date(Date.UTC(2026, 10, 20, 9, 0, n)).toISOString(),
  conversation: client,
  sender: bob,
  direction: 'inbound',
  native: { id: `m${n}`, chat: client.id },
  text: `Level ${n}: 4.${String(n).padStart(2, '0')} — ${'x'.repeat(n * 7)}`,
});

let scratch: string;
let archive: RecordedArchive;
let sink: Sink;
let heads: Map<string, StreamHead>;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-index-'));
  archive = await recordArchive('whatsapp', async (writer) => {
    for (let n = 1; n <= 40; n++) await writer.capture(message(n));
  });
  sink = await openFsSink({ dir: archive.dir, readOnly: true });
  const report = await verifyArchive(sink, { verifiers: [archive.key.verifier] });
  expect(report.ok).toBe(true);
  heads = new Map(report.streams.map((summary) => [summary.stream, summary.head] as const));
}, 60_000);
afterAll(async () => {
  await sink.close();
  await rm(archive.dir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

/** The sink, with its reads counted and its bulk read replaced by `pieces` (if given). */
function watched(pieces?: (stream: string) => AsyncIterable<{ readonly firstSeq: number; readonly bytes: Uint8Array }>): { sink: Sink; calls: { read: number; readSegments: number } } {
  const calls = { read: 0, readSegments: 0 };
  const overrides: { readonly [K in keyof Sink]?: Sink[K] | undefined } = {
    read: (stream: string, options?: { readonly fromSeq?: number }) => {
      calls.read += 1;
      return sink.read(stream, options);
    },
    readSegments: (stream: string) => {
      calls.readSegments += 1;
      return pieces ? pieces(stream) : (sink.readSegments as NonNullable<Sink['readSegments']>).call(sink, stream);
    },
  };
  const wrapper = withOverrides(overrides);
  return { sink: wrapper, calls };
}

/** The real sink, but for `overrides` (its own methods called on itself). */
function withOverrides(overrides: { readonly [K in keyof Sink]?: Sink[K] | undefined }): Sink {
  return new Proxy(sink, {
    get(target, name, receiver) {
      if (Object.hasOwn(overrides, name)) return overrides[name as keyof Sink];
      const value: unknown = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The stream's stored records, one piece per `size` records (each record followed by a newline). */
async function* recordPieces(stream: string, size: number, edit: (seq: number, line: Buffer) => Buffer = (_seq, line) => line): AsyncGenerator<{ firstSeq: number; bytes: Uint8Array }> {
  let piece: Buffer[] = [];
  let firstSeq = 1;
  for await (const stored of sink.read(stream)) {
    piece.push(edit(stored.seq, Buffer.concat([stored.bytes, Buffer.from('\n')])));
    if (piece.length === size) {
      yield { firstSeq, bytes: Buffer.concat(piece) };
      firstSeq = stored.seq + 1;
      piece = [];
    }
  }
  if (piece.length > 0) yield { firstSeq, bytes: Buffer.concat(piece) };
}

/** Every record of the index, in seq order, as stream/seq/hash/text. */
function contents(index: ArchiveIndex): string[] {
  return [...index.streamRecords(archive.stream)].map((entry) => `${entry.stream}/${entry.seq} ${entry.hash} ${entry.text}`);
}

async function build(from: Sink, verified = heads): Promise<ArchiveIndex> {
  return ArchiveIndex.build(from, verified, await mkdtemp(path.join(scratch, 'index-')));
}

/** The error `building` rejects with, or undefined if it builds (the index is then closed). */
async function buildError(building: Promise<ArchiveIndex>): Promise<unknown> {
  return building.then(
    async (index) => {
      await index.close();
      return undefined;
    },
    (caught: unknown) => caught,
  );
}

describe('ArchiveIndex.build', () => {
  it('reads through the bulk read, and indexes what the record-by-record read gives', async () => {
    const bulk = watched();
    const index = await build(bulk.sink);
    const plain = await build(withOverrides({ readSegments: undefined }));
    try {
      expect(bulk.calls).toEqual({ read: 0, readSegments: 1 });
      const records = contents(index);
      expect(records).toHaveLength(40);
      expect(records).toEqual(contents(plain));
      expect(index.conversations().map((conversation) => conversation.records)).toEqual([40]);
    } finally {
      await index.close();
      await plain.close();
    }
  });

  it('splits pieces of any size and stops at the verified head', async () => {
    const head = heads.get(archive.stream) as StreamHead;
    for (const size of [1, 3, 7, 40]) {
      const { sink: pieces } = watched((stream) => recordPieces(stream, size));
      const index = await build(pieces);
      try {
        expect(contents(index)).toHaveLength(40);
      } finally {
        await index.close();
      }
    }
    // Verified up to seq 25: the records after it (appended since) are not read.
    const earlier = new Map([[archive.stream, { seq: 25, hash: (await verifiedHashAt(25)) ?? head.hash }]]);
    const index = await build(watched((stream) => recordPieces(stream, 7)).sink, earlier);
    try {
      expect(contents(index).map((line) => line.split(' ')[0])).toEqual(Array.from({ length: 25 }, (_, n) => `${archive.stream}/${n + 1}`));
    } finally {
      await index.close();
    }
  });

  it('stops the build when a piece holds a record other than the verified one', async () => {
    const cases: [string, (seq: number, line: Buffer) => Buffer][] = [
      ['a changed byte', (seq, line) => (seq === 17 ? Buffer.from(line.toString('utf8').replace('Level 17', 'Level 71')) : line)],
      ['two records run together', (seq, line) => (seq === 17 ? line.subarray(0, -1) : line)],
      ['a record left out', (seq, line) => (seq === 17 ? Buffer.alloc(0) : line)],
      ['a blank line', (seq, line) => (seq === 17 ? Buffer.concat([Buffer.from('\n'), line]) : line)],
      ['the last record cut short', (seq, line) => (seq === 40 ? line.subarray(0, -20) : line)],
    ];
    for (const [name, edit] of cases) {
      const error = await buildError(build(watched((stream) => recordPieces(stream, 6, edit)).sink));
      expect(error, name).toBeInstanceOf(ExportError);
      expect((error as ExportError).code, name).toBe('EXPORT_UNVERIFIED');
    }
  });

  it('keeps a record whose fields no verified record holds EXPORT_UNVERIFIED (an SQLite constraint or a value SQLite cannot take)', async () => {
    // The chain links still hold (stream, seq, prev are kept), so only the insert can tell.
    const cases: [string, (record: Record<string, unknown>) => void][] = [
      ['a null kind (NOT NULL constraint)', (record) => {
        record.kind = null;
      }],
      ['an object for a kind (not bindable)', (record) => {
        record.kind = { message: true };
      }],
    ];
    for (const [name, change] of cases) {
      const edit = (seq: number, line: Buffer): Buffer => {
        if (seq !== 17) return line;
        const record = JSON.parse(line.toString('utf8')) as Record<string, unknown>;
        change(record);
        return Buffer.from(`${JSON.stringify(record)}\n`);
      };
      const error = await buildError(build(watched((stream) => recordPieces(stream, 6, edit)).sink));
      expect(error, name).toBeInstanceOf(ExportError);
      expect((error as ExportError).code, name).toBe('EXPORT_UNVERIFIED');
      expect((error as ExportError).message, name).toContain('seq 17 is no longer a valid record');
    }
  });

  it('reports a full working index as EXPORT_OUTPUT saying to make room on --out, not as an archive that changed', async () => {
    // SQLite's max_page_count makes the working index full exactly as a full file system does
    // (SQLITE_FULL). Two pages hold the 40 rows (one leaf) but not the lookup indexes: the
    // build fails creating them, after every record went in (progress reached 40).
    const dir = await mkdtemp(path.join(scratch, 'full-'));
    const progress: number[] = [];
    const error = await buildError(ArchiveIndex.build(sink, heads, dir, (done) => progress.push(done), { maxPages: 2 }));
    expect(progress).toEqual([40]);
    expect(error).toBeInstanceOf(ExportError);
    expect((error as ExportError).code).toBe('EXPORT_OUTPUT');
    expect((error as ExportError).message).toMatch(/working index .* failed \(database or disk is full\).*make room on the file system of --out/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('reports a working index that fills up while records go in as EXPORT_OUTPUT too', async () => {
    // 400 rows need more than one 16 KiB page: the insert itself fails with SQLITE_FULL.
    const big = await recordArchive('whatsapp', async (writer) => {
      for (let n = 1; n <= 400; n++) await writer.capture({ ...message(n % 40), key: `message:${n}`, native: { id: `m${n}`, chat: client.id } });
    });
    const bigSink = await openFsSink({ dir: big.dir, readOnly: true });
    try {
      const report = await verifyArchive(bigSink, { verifiers: [big.key.verifier] });
      const bigHeads = new Map(report.streams.map((summary) => [summary.stream, summary.head] as const));
      const dir = await mkdtemp(path.join(scratch, 'full-'));
      const progress: number[] = [];
      const error = await buildError(ArchiveIndex.build(bigSink, bigHeads, dir, (done) => progress.push(done), { maxPages: 2 }));
      expect(progress).toEqual([]);
      expect((error as ExportError).code).toBe('EXPORT_OUTPUT');
      expect((error as ExportError).message).toContain('make room on the file system of --out');
      expect(await readdir(dir)).toEqual([]);
    } finally {
      await bigSink.close();
      await rm(big.dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('reads record by record when the bulk read does not start at seq 1', async () => {
    const skipped = watched(async function* (stream) {
      for await (const piece of recordPieces(stream, 5)) if (piece.firstSeq > 1) yield piece;
    });
    const index = await build(skipped.sink);
    try {
      expect(skipped.calls).toEqual({ read: 1, readSegments: 1 });
      expect(contents(index)).toHaveLength(40);
    } finally {
      await index.close();
    }
  });

  it('marks exactly the messages that modifiers target, and finds their modifiers', async () => {
    const trade = await createTradeArchive();
    const tradeSink = await openFsSink({ dir: trade.dir, readOnly: true });
    try {
      const report = await verifyArchive(tradeSink, { verifiers: [trade.key.verifier] });
      expect(report.ok).toBe(true);
      const index = await build(tradeSink, new Map(report.streams.map((summary) => [summary.stream, summary.head] as const)));
      try {
        const entries = [...index.streamRecords(trade.stream)];
        // Reactions on m2 (three), edits of m3 (two), the deletion of m5; the edit of "old" targets nothing here.
        const modified = entries.filter((entry) => entry.modified).map((entry) => [entry.record.native?.id, index.modifiersOf(entry).map((item) => item.record.kind)]);
        expect(modified).toEqual([
          ['m2', ['reaction', 'reaction', 'reaction']],
          ['m3', ['edit', 'edit']],
          ['m5', ['delete']],
        ]);
        // An unmarked record has no modifiers: asked as if it were marked, the query finds none.
        const unmarked = entries.filter((entry) => !entry.modified);
        expect(unmarked.length).toBeGreaterThan(0);
        expect(unmarked.filter((entry) => index.modifiersOf({ ...entry, modified: true }).length > 0).map((entry) => entry.seq)).toEqual([]);
      } finally {
        await index.close();
      }
    } finally {
      await tradeSink.close();
      await rm(trade.dir, { recursive: true, force: true });
    }
  }, 60_000);
});

/** The verified chain's hash of record `seq` (the prev of the record after it). */
async function verifiedHashAt(seq: number): Promise<string | undefined> {
  for await (const stored of sink.read(archive.stream, { fromSeq: seq + 1 })) return (JSON.parse(Buffer.from(stored.bytes).toString('utf8')) as { prev: string }).prev;
  return undefined;
}
