/**
 * The sink conformance suite. Every sink runs it; passing it is what "implements Sink spec 1"
 * means. It registers its tests through the `test` function you pass (Vitest's `it`, Jest's
 * `test`, `node:test`'s `test`), so it needs no particular runner, and asserts with
 * `node:assert`.
 *
 * ```ts
 * import { it } from 'vitest';
 * import { runSinkConformance } from '@offchannel/core/testing';
 * runSinkConformance({ test: it, createFixture: () => myFixture() });
 * ```
 */
import assert from 'node:assert/strict';
import { OffchannelError } from '../errors/offchannel-error.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { MAX_RECORD_BYTES } from '../record/record.ts';
import type { AppendBatch, Sink, StreamHead } from '../sink/sink.ts';

/** One isolated, initially empty store that sinks can be opened on, several times over. */
export interface SinkFixture {
  /** Opens a sink on this store. Called repeatedly: to reopen, and for concurrent writers. */
  open(): Promise<Sink>;
  /** Opens a read-only sink on this store (auditors verify with read-only access). */
  openReadOnly(): Promise<Sink>;
  /** Deletes the store. Called once per test, after every sink was closed. */
  destroy(): Promise<void>;
}

export interface SinkConformanceOptions {
  /** Test registration function: `(name, fn, timeoutMs) => void`. */
  readonly test: (name: string, fn: () => Promise<void>, timeout?: number) => unknown;
  /** Creates a fresh, empty store for each test. */
  readonly createFixture: () => Promise<SinkFixture>;
  /** Per-test timeout in ms (default 60,000: remote sinks are slow). */
  readonly timeout?: number;
  /** Writers raced in the concurrency tests (default 8). */
  readonly writers?: number;
  /**
   * The sink honours `range.after` in `checkpoints` and `checkpointFiles` (lists only sizes
   * above it, refuses an invalid one with `InvalidBatchError`): check that. Default false — a
   * capability, like attestations: a sink written before ranges existed ignores them and still
   * implements Sink spec 1 (callers drop what is at or below `after`, and pay for the whole
   * history); the suite then only checks that a listing with a range answers.
   */
  readonly checkpointRanges?: boolean;
}

const encoder = new TextEncoder();

/**
 * A record-shaped line for `stream` at `seq` whose `prev` is `prev`: canonical JSON with the
 * fields the chain needs (`prev`, `seq`, `stream`) plus a filler. `size` pads it to exactly that
 * many bytes.
 */
export function fakeRecord(stream: string, seq: number, prev: string, extra = '', size?: number): Uint8Array {
  const build = (filler: string): Uint8Array => encoder.encode(`{"extra":${JSON.stringify(filler)},"prev":"${prev}","seq":${seq},"stream":${JSON.stringify(stream)}}`);
  const bytes = build(extra);
  if (size === undefined) return bytes;
  return build(extra + 'x'.repeat(size - bytes.length));
}

/** Chained records continuing from `head`, one per filler (see {@link fakeRecord}). */
export function chainAfter(stream: string, head: StreamHead, fillers: readonly (string | { readonly extra: string; readonly size: number })[]): AppendBatch {
  let prev = head.hash;
  const records = fillers.map((filler, index) => {
    const bytes = typeof filler === 'string' ? fakeRecord(stream, head.seq + 1 + index, prev, filler) : fakeRecord(stream, head.seq + 1 + index, prev, filler.extra, filler.size);
    prev = sha256Hex(bytes);
    return bytes;
  });
  return { stream, firstSeq: head.seq + 1, prev: head.hash, records };
}

/** A well-formed batch of `count` chained records continuing from `head`. */
export function batchAfter(stream: string, head: StreamHead, count: number, tag = ''): AppendBatch {
  return chainAfter(stream, head, Array.from({ length: count }, (_, index) => `${tag}#${index}`));
}

/**
 * `batch` as the recorder hands it over: its records framed into one buffer (`lines`, each record
 * followed by a newline) and each record a view of that buffer. Like the recorder's, `lines` is a
 * view inside a larger buffer (here with junk around it): a sink must store the view, not its
 * whole `ArrayBuffer`.
 */
export function withLines(batch: AppendBatch): AppendBatch {
  let size = 0;
  for (const record of batch.records) size += record.length + 1;
  const lines = new Uint8Array(size + 32).fill(0x7b).subarray(16, 16 + size);
  const records: Uint8Array[] = [];
  let offset = 0;
  for (const record of batch.records) {
    lines.set(record, offset);
    records.push(lines.subarray(offset, offset + record.length));
    offset += record.length;
    lines[offset++] = 0x0a;
  }
  return { ...batch, records, lines };
}

const HOSTILE_STREAMS = [
  '',
  'demo',
  ':alice',
  'demo:',
  '../demo:alice',
  'demo:../../etc',
  'demo:..',
  'demo:a/../../b',
  'demo:a/b',
  'demo:a\\b',
  'demo:.hidden',
  'demo:a\u0000b',
  'demo:a b',
  'Demo:alice',
  'demo:alice\n',
  `demo:${'a'.repeat(200)}`,
  'demo:%2e%2e',
];

function isCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(OffchannelError.isInstance(error), `expected an OffchannelError with code ${code}, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

async function collect(sink: Sink, stream: string, fromSeq?: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const seqs: number[] = [];
  for await (const stored of sink.read(stream, fromSeq === undefined ? undefined : { fromSeq })) {
    out.push(stored.bytes);
    seqs.push(stored.seq);
  }
  const first = fromSeq ?? 1;
  assert.deepEqual(seqs, out.map((_, index) => first + index), 'read() must yield consecutive seqs from fromSeq');
  return out;
}

function sameBytes(actual: readonly Uint8Array[], expected: readonly Uint8Array[]): void {
  assert.equal(actual.length, expected.length, 'record count');
  actual.forEach((bytes, index) => {
    assert.ok(Buffer.from(bytes).equals(expected[index] as Uint8Array), `record ${index + 1} must read back byte-identical`);
  });
}

/** Registers the conformance tests. */
export function runSinkConformance(options: SinkConformanceOptions): void {
  const timeout = options.timeout ?? 60_000;
  const writers = options.writers ?? 8;
  const define = (name: string, body: (fixture: SinkFixture, opened: Sink[]) => Promise<void>): void => {
    options.test(
      `sink conformance: ${name}`,
      async () => {
        const fixture = await options.createFixture();
        const opened: Sink[] = [];
        const tracked: SinkFixture = {
          open: async () => {
            const sink = await fixture.open();
            opened.push(sink);
            return sink;
          },
          openReadOnly: async () => {
            const sink = await fixture.openReadOnly();
            opened.push(sink);
            return sink;
          },
          destroy: () => fixture.destroy(),
        };
        try {
          await body(tracked, opened);
        } finally {
          for (const sink of opened) await sink.close();
          await fixture.destroy();
        }
      },
      timeout,
    );
  };

  define('declares spec version 1 and its guarantees', async (fixture) => {
    const sink = await fixture.open();
    assert.equal(sink.specVersion, 1);
    assert.equal(typeof sink.kind, 'string');
    assert.ok(['compliance-lock', 'append-only', 'none'].includes(sink.guarantees.retention));
    assert.ok(['fsync', 'remote', 'volatile'].includes(sink.guarantees.durability));
    assert.ok(['lock', 'conditional-write', 'process'].includes(sink.guarantees.exclusiveWriter));
    assert.equal(sink.readOnly, false);
  });

  define('an empty store has no streams and zero heads', async (fixture) => {
    const sink = await fixture.open();
    assert.deepEqual(await sink.streams(), []);
    assert.deepEqual(await sink.head('demo:alice'), { seq: 0, hash: ZERO_HASH });
    assert.deepEqual(await collect(sink, 'demo:alice'), []);
    assert.deepEqual(await sink.checkpoints('demo:alice'), []);
  });

  define('appends and reads back byte-identical records, head = sha256 of the last', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const { records } = chainAfter(stream, { seq: 0, hash: ZERO_HASH }, ['first', '€ 😀 \u0000 \n דּ', { extra: 'largest', size: MAX_RECORD_BYTES }, 'last']);
    assert.equal(records[2]?.length, MAX_RECORD_BYTES);
    const head = await sink.appendBatch({ stream, firstSeq: 1, prev: ZERO_HASH, records });
    assert.deepEqual(head, { seq: 4, hash: sha256Hex(records[3] as Uint8Array) });
    assert.deepEqual(await sink.head(stream), head);
    sameBytes(await collect(sink, stream), records);
    const next = batchAfter(stream, head, 3);
    const head2 = await sink.appendBatch(next);
    assert.deepEqual(head2, { seq: 7, hash: sha256Hex(next.records[2] as Uint8Array) });
    sameBytes(await collect(sink, stream), [...records, ...next.records]);
    sameBytes(await collect(sink, stream, 3), [...records.slice(2), ...next.records]);
    assert.deepEqual(await sink.streams(), [stream]);
  });

  define('is write-once: stale, repeated and skipping appends are refused and change nothing', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const first = batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 3);
    const head = await sink.appendBatch(first);
    await assert.rejects(sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 1, 'rewrite')), isCode('SINK_CONFLICT'));
    await assert.rejects(sink.appendBatch({ ...batchAfter(stream, head, 1), prev: 'f'.repeat(64) }), isCode('SINK_CONFLICT'));
    await assert.rejects(sink.appendBatch(batchAfter(stream, { seq: head.seq + 1, hash: head.hash }, 1)), isCode('SINK_CONFLICT'));
    await assert.rejects(sink.appendBatch(batchAfter(stream, { seq: 1, hash: sha256Hex(first.records[0] as Uint8Array) }, 1)), isCode('SINK_CONFLICT'));
    assert.deepEqual(await sink.head(stream), head);
    sameBytes(await collect(sink, stream), first.records);
  });

  define(`of ${writers} concurrent appends at one seq on one sink, exactly one wins`, async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:race';
    await sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 1));
    const head = await sink.head(stream);
    const attempts = Array.from({ length: writers }, (_, index) => sink.appendBatch(batchAfter(stream, head, 2, `writer-${index}`)));
    const results = await Promise.allSettled(attempts);
    const winners = results.filter((result) => result.status === 'fulfilled');
    assert.equal(winners.length, 1, 'exactly one concurrent append must succeed');
    for (const result of results) if (result.status === 'rejected') isCode('SINK_CONFLICT')(result.reason);
    const winner = results.findIndex((result) => result.status === 'fulfilled');
    const stored = await collect(sink, stream);
    assert.equal(stored.length, 3);
    sameBytes(stored.slice(1), batchAfter(stream, head, 2, `writer-${winner}`).records);
  });

  define(`of ${writers} writers (separate sink instances) appending at one seq, exactly one wins`, async (fixture) => {
    const setup = await fixture.open();
    const stream = 'demo:race';
    const head = await setup.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 1));
    await setup.close();
    const sinks = await Promise.all(Array.from({ length: writers }, () => fixture.open()));
    const results = await Promise.allSettled(sinks.map((sink, index) => sink.appendBatch(batchAfter(stream, head, 2, `writer-${index}`))));
    assert.equal(results.filter((result) => result.status === 'fulfilled').length, 1, 'exactly one writer must succeed');
    for (const result of results) if (result.status === 'rejected') isCode('SINK_CONFLICT')(result.reason);
    const winner = results.findIndex((result) => result.status === 'fulfilled');
    for (const sink of sinks) await sink.close();
    const reader = await fixture.open();
    const stored = await collect(reader, stream);
    assert.equal(stored.length, 3);
    sameBytes(stored.slice(1), batchAfter(stream, head, 2, `writer-${winner}`).records);
  });

  define('rejects malformed batches and writes nothing', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const zero = { seq: 0, hash: ZERO_HASH };
    const one = fakeRecord(stream, 1, ZERO_HASH);
    const bad: AppendBatch[] = [
      { stream, firstSeq: 1, prev: ZERO_HASH, records: [] },
      { stream, firstSeq: 0, prev: ZERO_HASH, records: [one] },
      { stream, firstSeq: 1.5, prev: ZERO_HASH, records: [one] },
      { stream, firstSeq: 1, prev: 'ABC', records: [one] },
      { stream, firstSeq: 1, prev: ZERO_HASH, records: [encoder.encode('{"a":1}\n{"b":2}')] },
      { stream, firstSeq: 1, prev: ZERO_HASH, records: [new Uint8Array(0)] },
      { stream, firstSeq: 1, prev: ZERO_HASH, records: [new Uint8Array(MAX_RECORD_BYTES + 1).fill(0x61)] },
      { stream, firstSeq: 1, prev: ZERO_HASH, records: ['{"a":1}' as unknown as Uint8Array] },
    ];
    for (const batch of bad) await assert.rejects(sink.appendBatch(batch), isCode('INVALID_BATCH'));
    assert.deepEqual(await sink.head(stream), zero);
    assert.deepEqual(await sink.streams(), []);
    // A batch with a bad record after good ones is refused whole: not even the good ones are written.
    const head = await sink.appendBatch(batchAfter(stream, zero, 2));
    const good = batchAfter(stream, head, 2);
    for (const last of [encoder.encode('{"a":1}\n'), new Uint8Array(MAX_RECORD_BYTES + 1).fill(0x61), new Uint8Array(0), 'text' as unknown as Uint8Array]) {
      await assert.rejects(sink.appendBatch({ ...good, records: [...good.records, last] }), isCode('INVALID_BATCH'));
      assert.deepEqual(await sink.head(stream), head);
      assert.equal((await collect(sink, stream)).length, 2);
    }
  });

  define('stores a batch given as lines (the recorder\'s form) byte-identical, and continues it either way', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const first = withLines(chainAfter(stream, { seq: 0, hash: ZERO_HASH }, ['a', 'Grüße, 世界 🌍', { extra: 'big', size: MAX_RECORD_BYTES }]));
    const head = await sink.appendBatch(first);
    assert.deepEqual(head, { seq: 3, hash: sha256Hex(first.records[2] as Uint8Array) });
    const plain = batchAfter(stream, head, 2, 'plain');
    const last = await sink.appendBatch(plain);
    const framed = withLines(batchAfter(stream, last, 1, 'framed'));
    await sink.appendBatch(framed);
    await sink.close();
    const reader = await fixture.open();
    sameBytes(await collect(reader, stream), [...first.records, ...plain.records, ...framed.records]);
  });

  define('rejects a batch whose lines could differ from its records, and writes nothing', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const zero = { seq: 0, hash: ZERO_HASH };
    const good = withLines(batchAfter(stream, zero, 2));
    const lines = good.lines as Uint8Array;
    const other = batchAfter(stream, zero, 2, 'other');
    const copy = Uint8Array.from(lines);
    const bad: AppendBatch[] = [
      // The same bytes, but the records are not views of lines: they could differ.
      { ...good, records: batchAfter(stream, zero, 2).records },
      // lines holds other records than `records`.
      { ...other, lines },
      // A copy of lines: equal bytes, yet not the buffer the records view.
      { ...good, lines: copy },
      // lines longer or shorter than the records and their newlines.
      { ...good, lines: lines.subarray(0, lines.length - 1) },
      { ...withLines({ ...good, records: good.records.slice(0, 1) }), records: good.records },
      // Records in the wrong order within lines.
      { ...good, records: [...good.records].reverse() },
      { ...good, lines: 'text' as unknown as Uint8Array },
    ];
    for (const batch of bad) await assert.rejects(sink.appendBatch(batch), isCode('INVALID_BATCH'));
    assert.deepEqual(await sink.head(stream), zero);
    assert.deepEqual(await sink.streams(), []);
    const head = await sink.appendBatch(good);
    assert.equal(head.seq, 2);
    sameBytes(await collect(sink, stream), batchAfter(stream, zero, 2).records);
  });

  define('rejects hostile stream names everywhere, before touching storage', async (fixture) => {
    const sink = await fixture.open();
    for (const stream of HOSTILE_STREAMS) {
      const invalid = isCode('INVALID_STREAM_NAME');
      await assert.rejects(sink.appendBatch({ stream, firstSeq: 1, prev: ZERO_HASH, records: [fakeRecord('x:y', 1, ZERO_HASH)] }), invalid);
      await assert.rejects(sink.head(stream), invalid);
      await assert.rejects(collect(sink, stream), invalid);
      await assert.rejects(sink.putCheckpoint(stream, 1, 'note', encoder.encode('x')), invalid);
      await assert.rejects(sink.getCheckpoint(stream, 1, 'note'), invalid);
      await assert.rejects(sink.checkpoints(stream), invalid);
    }
    for (const name of ['../../etc/passwd', 'A'.repeat(64), 'a'.repeat(63), `../${'a'.repeat(61)}`]) {
      await assert.rejects(sink.putBlob(name, encoder.encode('x')), isCode('BLOB_MISMATCH'));
      await assert.rejects(sink.getBlob(name), isCode('BLOB_MISMATCH'));
      await assert.rejects(sink.statBlob(name), isCode('BLOB_MISMATCH'));
    }
    assert.deepEqual(await sink.streams(), []);
    for (const stream of ['demo:alice', 'demo:a']) assert.deepEqual(await sink.head(stream), { seq: 0, hash: ZERO_HASH });
  });

  define('stores blobs by content: idempotent for the same bytes, refused for other bytes', async (fixture) => {
    const sink = await fixture.open();
    const bytes = encoder.encode('attachment bytes \u0000\u00ff');
    const hash = sha256Hex(bytes);
    // A name that is not the hash of the bytes is refused even when nothing is stored under it yet.
    await assert.rejects(sink.putBlob(hash, encoder.encode('other bytes')), isCode('BLOB_MISMATCH'));
    assert.equal(await sink.statBlob(hash), undefined);
    assert.deepEqual(await sink.putBlob(hash, bytes), { created: true });
    assert.deepEqual(await sink.putBlob(hash, bytes), { created: false });
    await assert.rejects(sink.putBlob(hash, encoder.encode('other bytes')), isCode('BLOB_MISMATCH'));
    const stored = await sink.getBlob(hash);
    assert.ok(stored && Buffer.from(stored).equals(bytes), 'blob reads back byte-identical');
    assert.deepEqual(await sink.statBlob(hash), { sha256: hash, size: bytes.length });
    const missing = sha256Hex(encoder.encode('never stored'));
    assert.equal(await sink.getBlob(missing), undefined);
    assert.equal(await sink.statBlob(missing), undefined);
    const empty = new Uint8Array(0);
    assert.deepEqual(await sink.putBlob(sha256Hex(empty), empty), { created: true });
    assert.equal((await sink.getBlob(sha256Hex(empty)))?.length, 0);
    const big = new Uint8Array(3 * 1024 * 1024).map((_, index) => index % 251);
    await sink.putBlob(sha256Hex(big), big);
    assert.ok(Buffer.from((await sink.getBlob(sha256Hex(big))) as Uint8Array).equals(big));
  });

  define('stores a blob as it was when put, even if the caller changes its array right after', async (fixture) => {
    const sink = await fixture.open();
    for (const size of [100, 3 * 1024 * 1024]) {
      const bytes = new Uint8Array(size).map((_, index) => (index * 13) % 256);
      const original = Uint8Array.from(bytes);
      const hash = sha256Hex(bytes);
      const put = sink.putBlob(hash, bytes);
      bytes.fill(0x41); // the caller reuses its buffer as soon as the call returns
      assert.deepEqual(await put, { created: true });
      const stored = await sink.getBlob(hash);
      assert.ok(stored && Buffer.from(stored).equals(original), `the ${size}-byte blob reads back as it was when put`);
    }
  });

  define('concurrent puts of one blob all succeed and store it once', async (fixture) => {
    const sinks = [await fixture.open(), await fixture.open()];
    const bytes = new Uint8Array(256 * 1024).map((_, index) => (index * 7) % 256);
    const hash = sha256Hex(bytes);
    const results = await Promise.all(Array.from({ length: writers }, (_, index) => (sinks[index % 2] as Sink).putBlob(hash, bytes)));
    assert.equal(results.filter((result) => result.created).length, 1, 'exactly one put reports created');
    assert.ok(Buffer.from((await (sinks[0] as Sink).getBlob(hash)) as Uint8Array).equals(bytes));
  });

  define('survives close and reopen, and continues the chain', async (fixture) => {
    const stream = 'demo:alice';
    const first = await fixture.open();
    const batch1 = batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 5);
    const head1 = await first.appendBatch(batch1);
    const blob = encoder.encode('kept across reopen');
    await first.putBlob(sha256Hex(blob), blob);
    await first.putCheckpoint(stream, 5, 'note', encoder.encode('checkpoint 5\n'));
    await first.close();
    const second = await fixture.open();
    assert.deepEqual(await second.head(stream), head1);
    const batch2 = batchAfter(stream, head1, 4);
    const head2 = await second.appendBatch(batch2);
    assert.equal(head2.seq, 9);
    await assert.rejects(second.appendBatch(batchAfter(stream, head1, 1)), isCode('SINK_CONFLICT'));
    sameBytes(await collect(second, stream), [...batch1.records, ...batch2.records]);
    assert.ok(Buffer.from((await second.getBlob(sha256Hex(blob))) as Uint8Array).equals(blob));
    assert.deepEqual(await second.checkpoints(stream), [5]);
    await second.close();
    const third = await fixture.open();
    assert.deepEqual(await third.head(stream), head2);
  });

  define('keeps streams independent and lists them sorted', async (fixture) => {
    const sink = await fixture.open();
    const names = ['whatsapp:bob', 'demo:alice', 'signal:+15550100', 'telegram:carol.d'];
    const heads = new Map<string, StreamHead>();
    for (const [index, stream] of names.entries()) heads.set(stream, await sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, index + 1)));
    assert.deepEqual(await sink.streams(), [...names].sort());
    for (const [index, stream] of names.entries()) {
      assert.deepEqual(await sink.head(stream), heads.get(stream));
      assert.equal((await collect(sink, stream)).length, index + 1);
    }
  });

  define('lists a stream that has checkpoints or tiles but no records', async (fixture) => {
    const sink = await fixture.open();
    await sink.appendBatch(batchAfter('demo:alice', { seq: 0, hash: ZERO_HASH }, 1));
    await sink.putCheckpoint('demo:bob', 20, 'note', encoder.encode('checkpoint of records that are gone\n'));
    await sink.putTile('demo:carol', { level: 0, index: 0, width: 1 }, new Uint8Array(32));
    assert.deepEqual(await sink.streams(), ['demo:alice', 'demo:bob', 'demo:carol']);
    assert.deepEqual(await sink.head('demo:bob'), { seq: 0, hash: ZERO_HASH });
    assert.deepEqual(await collect(sink, 'demo:bob'), []);
  });

  define('stores many batches in order', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:bulk';
    let head: StreamHead = { seq: 0, hash: ZERO_HASH };
    const all: Uint8Array[] = [];
    for (let round = 0; round < 20; round++) {
      const batch = batchAfter(stream, head, 1 + ((round * 37) % 150), `round-${round}`);
      head = await sink.appendBatch(batch);
      all.push(...batch.records);
    }
    sameBytes(await collect(sink, stream), all);
    sameBytes(await collect(sink, stream, 500), all.slice(499));
    assert.deepEqual(await collect(sink, stream, head.seq + 1), []);
  });

  define('stores checkpoints write-once', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const note = encoder.encode('origin\n10\nroot\n\n— sig\n');
    assert.deepEqual(await sink.putCheckpoint(stream, 10, 'note', note), { created: true });
    assert.deepEqual(await sink.putCheckpoint(stream, 10, 'note', note), { created: false });
    await assert.rejects(sink.putCheckpoint(stream, 10, 'note', encoder.encode('other')), isCode('SINK_CONFLICT'));
    await sink.putCheckpoint(stream, 10, 'rfc3161', encoder.encode('token'));
    await sink.putCheckpoint(stream, 2, 'note', encoder.encode('two'));
    assert.ok(Buffer.from((await sink.getCheckpoint(stream, 10, 'note')) as Uint8Array).equals(note));
    assert.equal(await sink.getCheckpoint(stream, 11, 'note'), undefined);
    assert.deepEqual(await sink.checkpoints(stream), [2, 10]);
    if (sink.checkpointFiles) {
      assert.deepEqual(await sink.checkpointFiles(stream), [
        { size: 2, file: 'note' },
        { size: 10, file: 'note' },
        { size: 10, file: 'rfc3161' },
      ]);
    }
    await assert.rejects(sink.putCheckpoint(stream, 0, 'note', note), isCode('INVALID_BATCH'));
  });

  const ranges = options.checkpointRanges === true;
  define(ranges ? 'lists only the checkpoints above a size when asked (range.after)' : 'answers a checkpoint listing with a range (range.after may be ignored: callers filter)', async (fixture) => {
    const sink = await fixture.open();
    // Without the capability, what is at or below `after` is dropped here, as callers do.
    const above = <T extends number | { readonly size: number }>(listed: readonly T[], after: number): readonly T[] => (ranges ? listed : listed.filter((entry) => (typeof entry === 'number' ? entry : entry.size) > after));
    const checkpoints = async (name: string, after: number) => above(await sink.checkpoints(name, { after }), after);
    const checkpointFiles = async (name: string, after: number) => above(await (sink.checkpointFiles as NonNullable<Sink['checkpointFiles']>).call(sink, name, { after }), after);
    const stream = 'demo:alice';
    const sizes = [1, 9, 10, 11, 99, 100, 1000, 123456789];
    for (const size of sizes) await sink.putCheckpoint(stream, size, 'note', encoder.encode(`note ${size}`));
    await sink.putCheckpoint(stream, 9, 'rfc3161', encoder.encode('token 9'));
    await sink.putCheckpoint(stream, 10, 'rfc3161', encoder.encode('token 10'));
    await sink.putCheckpoint(stream, 10, 'cosigned-0123abcd', encoder.encode('cosigned 10'));
    await sink.putCheckpoint('archive-log', 4, 'note', encoder.encode('archive 4'));
    await sink.putCheckpoint('archive-log', 8, 'note', encoder.encode('archive 8'));
    assert.deepEqual(await sink.checkpoints(stream, {}), sizes);
    assert.deepEqual(await checkpoints(stream, 0), sizes);
    // Sizes of other lengths: a range read on names must compare sizes, not unpadded text.
    assert.deepEqual(await checkpoints(stream, 9), [10, 11, 99, 100, 1000, 123456789]);
    assert.deepEqual(await checkpoints(stream, 10), [11, 99, 100, 1000, 123456789]);
    assert.deepEqual(await checkpoints(stream, 12), [99, 100, 1000, 123456789]);
    assert.deepEqual(await checkpoints(stream, 999), [1000, 123456789]);
    assert.deepEqual(await checkpoints(stream, 123456789), []);
    assert.deepEqual(await checkpoints(stream, Number.MAX_SAFE_INTEGER), []);
    assert.deepEqual(await checkpoints('demo:bob', 3), []);
    assert.deepEqual(await checkpoints('archive-log', 4), [8]);
    if (sink.checkpointFiles) {
      assert.deepEqual(await checkpointFiles(stream, 9), [
        { size: 10, file: 'cosigned-0123abcd' },
        { size: 10, file: 'note' },
        { size: 10, file: 'rfc3161' },
        ...[11, 99, 100, 1000, 123456789].map((size) => ({ size, file: 'note' })),
      ]);
      assert.deepEqual(await checkpointFiles(stream, 10), [11, 99, 100, 1000, 123456789].map((size) => ({ size, file: 'note' })));
      assert.deepEqual((await checkpointFiles(stream, 0)).length, sizes.length + 3);
    }
    for (const after of ranges ? [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1] : []) {
      await assert.rejects(sink.checkpoints(stream, { after }), isCode('INVALID_BATCH'), `after ${after} is refused`);
      if (sink.checkpointFiles) await assert.rejects(sink.checkpointFiles(stream, { after }), isCode('INVALID_BATCH'));
    }
  });

  define('stores witness cosigned copies of a checkpoint write-once, beside its note', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const copy = encoder.encode('origin\n10\nroot\n\n— sig\n— witness cosig\n');
    assert.deepEqual(await sink.putCheckpoint(stream, 10, 'note', encoder.encode('origin\n10\nroot\n\n— sig\n')), { created: true });
    assert.deepEqual(await sink.putCheckpoint(stream, 10, 'cosigned-0123abcd', copy), { created: true });
    assert.deepEqual(await sink.putCheckpoint(stream, 10, 'cosigned-0123abcd', copy), { created: false });
    await assert.rejects(sink.putCheckpoint(stream, 10, 'cosigned-0123abcd', encoder.encode('other')), isCode('SINK_CONFLICT'));
    assert.ok(Buffer.from((await sink.getCheckpoint(stream, 10, 'cosigned-0123abcd')) as Uint8Array).equals(copy));
    assert.equal(await sink.getCheckpoint(stream, 10, 'cosigned-89abcdef'), undefined);
    assert.deepEqual(await sink.checkpoints(stream), [10]);
    if (sink.checkpointFiles) {
      const files = await sink.checkpointFiles(stream);
      assert.ok(files.some((entry) => entry.size === 10 && entry.file === 'cosigned-0123abcd'), 'checkpointFiles lists the cosigned copy');
    }
    await assert.rejects(sink.putCheckpoint(stream, 10, 'cosigned-XYZ', copy), isCode('INVALID_BATCH'));
    await assert.rejects(sink.putCheckpoint(stream, 10, 'cosigned-0123abcd/../x', copy), isCode('INVALID_BATCH'));
  });

  define('stores an archive log\'s checkpoints and tiles (never listed as a stream, never appended to)', async (fixture) => {
    const sink = await fixture.open();
    const note = encoder.encode('archive.example\n5\nroot\n\n— sig\n');
    for (const log of ['archive-log', 'archive-log.s2of3']) {
      assert.deepEqual(await sink.putCheckpoint(log, 5, 'note', note), { created: true });
      assert.deepEqual(await sink.putCheckpoint(log, 5, 'note', note), { created: false });
      await assert.rejects(sink.putCheckpoint(log, 5, 'note', encoder.encode('other')), isCode('SINK_CONFLICT'));
      assert.deepEqual(await sink.putCheckpoint(log, 5, 'cosigned-0123abcd', encoder.encode('cosigned')), { created: true });
      assert.ok(Buffer.from((await sink.getCheckpoint(log, 5, 'note')) as Uint8Array).equals(note));
      assert.deepEqual(await sink.checkpoints(log), [5]);
      assert.deepEqual(await sink.putTile(log, { level: 0, index: 0, width: 5 }, new Uint8Array(5 * 32).fill(7)), { created: true });
      assert.equal((await sink.getTile(log, { level: 0, index: 0, width: 5 }))?.length, 5 * 32);
      await assert.rejects(sink.head(log), isCode('INVALID_STREAM_NAME'));
      await assert.rejects(sink.appendBatch({ stream: log, firstSeq: 1, prev: ZERO_HASH, records: [fakeRecord(log, 1, ZERO_HASH)] }), isCode('INVALID_STREAM_NAME'));
    }
    assert.deepEqual(await sink.streams(), []);
    if (sink.archiveLogs) assert.deepEqual(await sink.archiveLogs(), ['archive-log', 'archive-log.s2of3']);
    for (const name of ['archive-log/../x', 'archive-log.s0of2', 'archive-log.s3of2', 'archive-log.', 'archive-logs', '../archive-log']) {
      await assert.rejects(sink.putCheckpoint(name, 1, 'note', note), isCode('INVALID_STREAM_NAME'));
      await assert.rejects(sink.putTile(name, { level: 0, index: 0, width: 1 }, new Uint8Array(32)), isCode('INVALID_STREAM_NAME'));
      await assert.rejects(sink.checkpoints(name), isCode('INVALID_STREAM_NAME'));
    }
  });

  define('stores Merkle tiles write-once, checking their length', async (fixture) => {
    const sink = await fixture.open();
    const stream = 'demo:alice';
    const full = new Uint8Array(256 * 32).map((_, index) => index % 251);
    const partial = new Uint8Array(3 * 32).fill(9);
    assert.deepEqual(await sink.putTile(stream, { level: 0, index: 1234067, width: 256 }, full), { created: true });
    assert.deepEqual(await sink.putTile(stream, { level: 0, index: 1234067, width: 256 }, full), { created: false });
    await assert.rejects(sink.putTile(stream, { level: 0, index: 1234067, width: 256 }, new Uint8Array(256 * 32)), isCode('SINK_CONFLICT'));
    assert.deepEqual(await sink.putTile(stream, { level: 1, index: 0, width: 3 }, partial), { created: true });
    assert.ok(Buffer.from((await sink.getTile(stream, { level: 0, index: 1234067, width: 256 })) as Uint8Array).equals(full));
    assert.ok(Buffer.from((await sink.getTile(stream, { level: 1, index: 0, width: 3 })) as Uint8Array).equals(partial));
    assert.equal(await sink.getTile(stream, { level: 1, index: 0, width: 4 }), undefined);
    assert.equal(await sink.getTile('demo:bob', { level: 1, index: 0, width: 3 }), undefined);
    for (const [tile, bytes] of [
      [{ level: 0, index: 0, width: 2 }, new Uint8Array(63)],
      [{ level: 0, index: 0, width: 0 }, new Uint8Array(0)],
      [{ level: 0, index: -1, width: 1 }, new Uint8Array(32)],
      [{ level: 64, index: 0, width: 1 }, new Uint8Array(32)],
      [{ level: 0, index: 0.5, width: 1 }, new Uint8Array(32)],
    ] as const) {
      await assert.rejects(sink.putTile(stream, tile, bytes), isCode('INVALID_BATCH'));
    }
    await assert.rejects(sink.putTile('../x:y', { level: 0, index: 0, width: 1 }, new Uint8Array(32)), isCode('INVALID_STREAM_NAME'));
  });

  define('close() is idempotent and later calls reject with CLOSED', async (fixture) => {
    const sink = await fixture.open();
    await sink.appendBatch(batchAfter('demo:alice', { seq: 0, hash: ZERO_HASH }, 1));
    await sink.close();
    await sink.close();
    await assert.rejects(sink.head('demo:alice'), isCode('CLOSED'));
    await assert.rejects(sink.appendBatch(batchAfter('demo:alice', { seq: 1, hash: ZERO_HASH }, 1)), isCode('CLOSED'));
    await assert.rejects(sink.putBlob(sha256Hex(new Uint8Array(1)), new Uint8Array(1)), isCode('CLOSED'));
    await assert.rejects(collect(sink, 'demo:alice'), isCode('CLOSED'));
  });

  define('a read-only sink reads everything and refuses every write', async (fixture) => {
    const writer = await fixture.open();
    const stream = 'demo:alice';
    const batch = batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 2);
    const head = await writer.appendBatch(batch);
    const reader = await fixture.openReadOnly();
    assert.equal(reader.readOnly, true);
    assert.deepEqual(await reader.head(stream), head);
    sameBytes(await collect(reader, stream), batch.records);
    await assert.rejects(reader.appendBatch(batchAfter(stream, head, 1)), isCode('SINK_READ_ONLY'));
    await assert.rejects(reader.putBlob(sha256Hex(new Uint8Array(1)), new Uint8Array(1)), isCode('SINK_READ_ONLY'));
    await assert.rejects(reader.putCheckpoint(stream, 2, 'note', encoder.encode('x')), isCode('SINK_READ_ONLY'));
  });

  define('stores host attestations write-once, listed by host, day and seq (when implemented)', async (fixture) => {
    const sink = await fixture.open();
    const methods = (['putAttestation', 'getAttestation', 'attestationHosts', 'attestations'] as const).filter((name) => sink[name] !== undefined).length;
    assert.ok(methods === 0 || methods === 4, 'a sink implements all four attestation methods or none');
    if (!sink.putAttestation || !sink.getAttestation || !sink.attestationHosts || !sink.attestations) return;
    assert.deepEqual(await sink.attestationHosts(), []);
    assert.deepEqual(await sink.attestations('cap-1'), []);
    const note = (text: string): Uint8Array => encoder.encode(`${text}\n`);
    const ids = [
      { host: 'cap-1', day: '2026-03-02', seq: 3 },
      { host: 'cap-1', day: '2026-03-01', seq: 1 },
      { host: 'cap-1', day: '2026-03-01', seq: 2 },
      { host: 'cap-2.example', day: '2026-03-01', seq: 1 },
    ];
    for (const id of ids) assert.deepEqual(await sink.putAttestation(id, note(`${id.host} ${id.seq}`)), { created: true });
    assert.deepEqual(await sink.putAttestation(ids[0] as (typeof ids)[0], note('cap-1 3')), { created: false });
    await assert.rejects(sink.putAttestation(ids[0] as (typeof ids)[0], note('cap-1 3, rewritten')), isCode('SINK_CONFLICT'));
    const reopened = await fixture.open();
    assert.deepEqual(await (reopened.attestationHosts?.() ?? []), ['cap-1', 'cap-2.example']);
    assert.deepEqual(await (reopened.attestations?.('cap-1') ?? []), [ids[1], ids[2], ids[0]]);
    assert.deepEqual(await (reopened.attestations?.('cap-1', { fromDay: '2026-03-02' }) ?? []), [ids[0]]);
    assert.deepEqual(await (reopened.attestations?.('cap-1', { toDay: '2026-03-01' }) ?? []), [ids[1], ids[2]]);
    assert.ok(Buffer.from((await reopened.getAttestation?.(ids[0] as (typeof ids)[0])) ?? []).equals(note('cap-1 3')));
    assert.equal(await reopened.getAttestation?.({ host: 'cap-1', day: '2026-03-01', seq: 9 }), undefined);
    const hostile = [
      { host: '../cap', day: '2026-03-01', seq: 1 },
      { host: 'cap/1', day: '2026-03-01', seq: 1 },
      { host: '', day: '2026-03-01', seq: 1 },
      { host: 'Cap', day: '2026-03-01', seq: 1 },
      { host: 'cap', day: '../../streams', seq: 1 },
      { host: 'cap', day: '2026-02-30', seq: 1 },
      { host: 'cap', day: '2026-03-01', seq: 0 },
      { host: 'cap', day: '2026-03-01', seq: 1.5 },
    ];
    for (const id of hostile) {
      await assert.rejects(sink.putAttestation(id, note('x')), isCode('INVALID_BATCH'), JSON.stringify(id));
      await assert.rejects(sink.getAttestation(id), isCode('INVALID_BATCH'), JSON.stringify(id));
    }
    await assert.rejects(sink.attestations('../cap'), isCode('INVALID_BATCH'));
    await assert.rejects(sink.putAttestation({ host: 'cap', day: '2026-03-01', seq: 1 }, new Uint8Array(0)), isCode('INVALID_BATCH'));
    const reader = await fixture.openReadOnly();
    await assert.rejects(reader.putAttestation?.({ host: 'cap-3', day: '2026-03-01', seq: 1 }, note('x')) ?? Promise.reject(new Error('missing')), isCode('SINK_READ_ONLY'));
  });
}
