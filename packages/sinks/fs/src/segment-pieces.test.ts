/**
 * `readSegments` hands a verifier a segment in line-aligned pieces, not whole: each piece must be
 * whole records with the right first seq, and together the pieces must be the segment's bytes —
 * with a torn tail kept in a sealed segment and left out of the active one, and a line longer
 * than a piece returned whole. Real files, read through a real file handle.
 */
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { segmentPieces } from './fs-sink.ts';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-pieces-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function pieces(content: string, complete: boolean, pieceBytes: number): Promise<{ firstSeq: number; text: string }[]> {
  const file = path.join(work, `segment-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, content);
  const handle = await open(file, 'r');
  const found: { firstSeq: number; text: string }[] = [];
  try {
    for await (const piece of segmentPieces(handle, 101, complete, () => undefined, pieceBytes)) found.push({ firstSeq: piece.firstSeq, text: Buffer.from(piece.bytes).toString('utf8') });
  } finally {
    await handle.close();
  }
  return found;
}

const lines = Array.from({ length: 50 }, (_, index) => `{"seq":${101 + index},"text":"${'x'.repeat(index % 7)}"}\n`);

describe('segmentPieces', () => {
  it('cuts a segment into whole-record pieces of at most the piece size, each with its first seq', async () => {
    const found = await pieces(lines.join(''), true, 64);
    expect(found.length).toBeGreaterThan(10);
    expect(found.map((piece) => piece.text).join('')).toBe(lines.join(''));
    let seq = 101;
    for (const piece of found) {
      expect(piece.text.endsWith('\n')).toBe(true);
      expect(Buffer.byteLength(piece.text)).toBeLessThanOrEqual(64 + 40);
      expect(piece.firstSeq).toBe(seq);
      expect(piece.text.startsWith(`{"seq":${seq},`)).toBe(true);
      seq += piece.text.split('\n').length - 1;
    }
    expect(seq).toBe(151);
  });

  it('returns the whole segment as one piece when it is smaller than a piece', async () => {
    expect(await pieces(lines.join(''), true, 1 << 20)).toEqual([{ firstSeq: 101, text: lines.join('') }]);
  });

  it('keeps a torn tail of a sealed segment as stored and leaves it out of the active one', async () => {
    const torn = `${lines.slice(0, 5).join('')}{"seq":106,"te`;
    for (const size of [16, 1 << 20]) {
      expect((await pieces(torn, true, size)).map((piece) => piece.text).join('')).toBe(torn);
      expect((await pieces(torn, false, size)).map((piece) => piece.text).join('')).toBe(lines.slice(0, 5).join(''));
    }
  });

  it('returns a line longer than a piece whole, and a segment with no newline at all as stored', async () => {
    const long = `{"seq":101,"text":"${'y'.repeat(1000)}"}\n`;
    const found = await pieces(long + lines.slice(1, 4).join(''), true, 64);
    expect(found[0]).toEqual({ firstSeq: 101, text: long });
    expect(found.map((piece) => piece.text).join('')).toBe(long + lines.slice(1, 4).join(''));
    expect(found.at(-1)?.firstSeq).toBeLessThanOrEqual(104);
    const garbage = 'z'.repeat(5000);
    expect(await pieces(garbage, true, 64)).toEqual([{ firstSeq: 101, text: garbage }]);
    expect(await pieces(garbage, false, 64)).toEqual([]);
  });
});
