/**
 * Bulk reads (`readSegments`, for verification) must reuse their memory: one buffer of a few
 * MiB, whatever the size and number of segments — a fresh buffer per segment is freed late by
 * the garbage collector and drove a full verification's peak memory. And the pieces must be
 * exactly the stored bytes: line-aligned, with the right first seq, the active segment's
 * incomplete append left out, a damaged sealed segment's unterminated end kept.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder } from '@offchannel/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openFsSink } from './fs-sink.ts';
import { PIECE_BYTES, SegmentPieces, countLines } from './segment-pieces.ts';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-pieces-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** `count` lines of varied lengths (1 byte to ~3 KiB), each ending in a newline. */
function lines(count: number, seed = 1): Buffer {
  const parts: string[] = [];
  let state = seed;
  for (let index = 0; index < count; index++) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    parts.push(`${index}:${'x'.repeat(state % 3000)}\n`);
  }
  return Buffer.from(parts.join(''));
}

it('reads 100 MiB in line-aligned pieces in one reused buffer, every byte once, hashed as read', { timeout: 60_000 }, async () => {
  const file = path.join(work, 'large.jsonl');
  const block = lines(20_000);
  const copies = Math.ceil((100 * 2 ** 20) / block.length);
  await writeFile(file, Buffer.concat(Array.from({ length: copies }, () => block)));
  const expected = createHash('sha256');
  const actual = createHash('sha256');
  const digest = createHash('sha256');
  const buffers = new Set<ArrayBufferLike>();
  let pieces = 0;
  const reader = new SegmentPieces();
  const handle = await open(file);
  try {
    for await (const piece of reader.read(handle, true, digest)) {
      buffers.add(piece.buffer);
      pieces++;
      expect(piece.length).toBeLessThanOrEqual(PIECE_BYTES);
      expect(piece.at(-1), 'each piece ends with a whole line').toBe(0x0a);
      actual.update(piece);
    }
  } finally {
    await handle.close();
  }
  expected.update(await readFile(file));
  const want = expected.digest('hex');
  expect(pieces).toBeGreaterThanOrEqual(25);
  expect(reader.bytesRead).toBe(block.length * copies);
  expect(actual.digest('hex'), 'the pieces are the file').toBe(want);
  expect(digest.digest('hex'), 'the digest covers every byte').toBe(want);
  expect(buffers.size, 'one buffer, reused for every piece').toBe(1);
});

it('grows the buffer only for a line longer than it, and keeps or drops an unterminated end as asked', { timeout: 60_000 }, async () => {
  const file = path.join(work, 'long.jsonl');
  const long = `${'y'.repeat(3000)}\n`;
  await writeFile(file, `a\n${long}b\nunterminated`);
  for (const whole of [true, false]) {
    const handle = await open(file);
    const seen: string[] = [];
    try {
      for await (const piece of new SegmentPieces(1024).read(handle, whole)) seen.push(Buffer.from(piece).toString());
    } finally {
      await handle.close();
    }
    expect(seen.join('')).toBe(`a\n${long}b\n${whole ? 'unterminated' : ''}`);
    expect(seen.every((piece) => piece.length <= 4096)).toBe(true);
  }
});

it('readSegments: the stream as stored, in pieces of one reused buffer across segments, with the right first seqs', { timeout: 60_000 }, async () => {
  const dir = path.join(work, 'archive');
  const sink = await openFsSink({ dir, segmentBytes: 64 * 1024 });
  const stream = 'demo:alice';
  const recorder = new Recorder({ sink });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 't', version: '0' } });
  for (let index = 1; index <= 400; index++) {
    await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c1', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index} `.repeat(index % 120) });
  }
  await recorder.close();
  const records: Uint8Array[] = [];
  for await (const stored of sink.read(stream)) records.push(stored.bytes);
  await sink.close();
  const segmentFiles = (await readdir(path.join(dir, 'streams', stream))).filter((name) => name.endsWith('.jsonl'));
  expect(segmentFiles.length, 'several segments').toBeGreaterThanOrEqual(3);
  const reader = await openFsSink({ dir, readOnly: true });
  const buffers = new Set<ArrayBufferLike>();
  const seen: Buffer[] = [];
  let nextSeq = 1;
  try {
    for await (const chunk of reader.readSegments(stream)) {
      buffers.add(chunk.bytes.buffer);
      expect(chunk.firstSeq).toBe(nextSeq);
      nextSeq += countLines(chunk.bytes);
      seen.push(Buffer.from(chunk.bytes));
    }
  } finally {
    await reader.close();
  }
  expect(nextSeq).toBe(records.length + 1);
  expect(Buffer.concat(seen).equals(Buffer.concat(records.flatMap((bytes) => [bytes, Buffer.from('\n')])))).toBe(true);
  expect(buffers.size, 'one buffer for all segments').toBe(1);
});
