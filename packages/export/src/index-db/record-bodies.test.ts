/**
 * The export index keeps each record's stored bytes in a working file, in blocks of one
 * conversation where it pays, and reads them back by address: what is read must be exactly what
 * was appended — across block edges, for records larger than a block, for conversations with
 * blocks of their own and those sharing, in any order, read before or after the blocks are
 * written, and when the caller reuses its buffer after appending (the fs sink hands out views of
 * one read buffer). A busy conversation's records must lie together in the file (read a block at
 * a time), interleaved as the archive may hold them. A file cut short or changed is a typed
 * error, never a wrong record. Real temporary files.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExportError } from '../export-error.ts';
import { BLOCK_BYTES, OWN_AFTER, OWN_GROUPS, RecordBodies } from './record-bodies.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-bodies-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

function record(n: number, size: number): string {
  // JSON-ish text with 1- to 4-byte UTF-8 characters, `size` characters long.
  const alphabet = ['a', 'é', '€', '😀', '"', '\\'];
  let text = `{"seq":${n},"text":"`;
  while (text.length < size) text += alphabet[(text.length + n) % alphabet.length] ?? 'a';
  return `${text}"}`;
}

interface Placed {
  readonly at: number;
  readonly bytes: number;
  readonly text: string;
  readonly group: string;
}

/** Appends `count` records round-robin over `groups` groups (as a busy archive interleaves conversations). */
function appendInterleaved(bodies: RecordBodies, groups: number, count: number, size: (n: number) => number, name = 'conversation', first = 0): Placed[] {
  const reused = Buffer.alloc(3 * BLOCK_BYTES);
  const placed: Placed[] = [];
  for (let n = first; n < first + count; n++) {
    const text = record(n, size(n));
    const group = `stream|${name}-${n % groups}`;
    const length = reused.write(text, 0, 'utf8');
    const at = bodies.append(reused.subarray(0, length), group);
    reused.fill(0x78); // the caller reuses its buffer at once
    placed.push({ at, bytes: length, text, group });
  }
  return placed;
}

describe('RecordBodies', () => {
  it('reads back every record exactly, across block edges and past a block, own blocks or shared, in any order', async () => {
    const file = path.join(dir, 'round-trip.bin');
    const bodies = RecordBodies.create(file);
    try {
      // More groups than get blocks of their own; sizes from 1 byte to past a block.
      const sizes = [1, 700, 1300, BLOCK_BYTES / 2, BLOCK_BYTES / 2 + 3, 50, BLOCK_BYTES + 17, 2, 4000, BLOCK_BYTES - 5, 9, 300];
      const placed = appendInterleaved(bodies, OWN_GROUPS + 20, (OWN_GROUPS + 20) * (OWN_AFTER + 3), (n) => sizes[n % sizes.length] ?? 1);
      // A read in the middle of appending sees everything appended so far, still buffered or not.
      for (const item of placed.slice(0, 200).filter((_, n) => n % 7 === 1)) expect(bodies.read(item.at, item.bytes, sha(item.text))).toBe(item.text);
      const more = appendInterleaved(bodies, 5, 300, (n) => 200 + n, 'more', placed.length);
      bodies.finish();
      const all = [...placed, ...more];
      const order = all.map((_, n) => (n * 7919) % all.length);
      expect(new Set(order).size).toBe(all.length);
      for (const n of order) expect(bodies.read(all[n]!.at, all[n]!.bytes, sha(all[n]!.text))).toBe(all[n]!.text);
      expect((await stat(file)).size).toBe(all.reduce((sum, item) => sum + item.bytes, 0));
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    } finally {
      await bodies.remove();
    }
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('lays a busy conversation out in runs of a block, however the archive interleaves it', async () => {
    const file = path.join(dir, 'layout.bin');
    const bodies = RecordBodies.create(file);
    try {
      const placed = appendInterleaved(bodies, 20, 20 * 120, () => 1000);
      bodies.finish();
      const content = await readFile(file);
      for (const group of ['stream|conversation-0', 'stream|conversation-7', 'stream|conversation-19']) {
        const own = placed.filter((item) => item.group === group).slice(OWN_AFTER);
        const positions = own.map((item) => content.indexOf(item.text));
        // Jumps between a record and the conversation's next one: one per block, not one per record.
        const jumps = positions.slice(1).filter((position, n) => position !== (positions[n] ?? 0) + (own[n]?.bytes ?? 0)).length;
        const perBlock = Math.floor(BLOCK_BYTES / Math.max(...own.map((item) => item.bytes)));
        expect(jumps).toBeLessThanOrEqual(Math.ceil(own.length / perBlock));
        expect(jumps).toBeGreaterThan(0);
        for (const item of own) expect(bodies.read(item.at, item.bytes, sha(item.text))).toBe(item.text);
      }
    } finally {
      await bodies.remove();
    }
  });

  it('never opens a file that already exists', async () => {
    const file = path.join(dir, 'existing.bin');
    await writeFile(file, 'someone else');
    expect(() => RecordBodies.create(file)).toThrow(expect.objectContaining({ code: 'EEXIST' }) as Error);
  });

  /** A busy conversation (blocks of its own, read whole), a quiet one (shared) and one record larger than a block. */
  function appendKinds(bodies: RecordBodies): { own: Placed[]; shared: Placed; large: Placed } {
    const own = appendInterleaved(bodies, 1, OWN_AFTER + 40, () => 900, 'busy');
    const [shared] = appendInterleaved(bodies, 1, 1, () => 200, 'quiet', 1000);
    const [large] = appendInterleaved(bodies, 1, 1, () => BLOCK_BYTES + 100, 'large', 2000);
    bodies.finish();
    if (!shared || !large) throw new Error('nothing appended');
    return { own, shared, large };
  }

  it('refuses bytes changed in the working file after the build, in every kind of block, and any use after removal', async () => {
    const file = path.join(dir, 'changed.bin');
    const bodies = RecordBodies.create(file);
    let removed = false;
    try {
      const { own, shared, large } = appendKinds(bodies);
      const content = await readFile(file);
      const handle = await open(file, 'r+');
      // Same length, one byte different: what a failing disk or another process could leave.
      for (const item of [own[OWN_AFTER + 20], own[1], shared, large]) await handle.write(Buffer.from('Y'), 0, 1, content.indexOf(item?.text ?? '') + 20);
      await handle.close();
      for (const item of [own[OWN_AFTER + 20], own[1], shared, large]) {
        expect(() => bodies.read(item?.at ?? 0, item?.bytes ?? 0, sha(item?.text ?? ''))).toThrow(expect.objectContaining({ code: 'EXPORT_UNVERIFIED' }) as Error);
      }
      // Untouched records of the same blocks still read back.
      for (const item of [own[OWN_AFTER + 21], own[0]]) expect(bodies.read(item?.at ?? 0, item?.bytes ?? 0, sha(item?.text ?? ''))).toBe(item?.text);
      const text = own[0]?.text ?? '';
      await bodies.remove();
      removed = true;
      expect(() => bodies.read(own[0]?.at ?? 0, Buffer.byteLength(text), sha(text))).toThrow(expect.objectContaining({ code: 'EXPORT_OUTPUT' }) as Error);
      bodies.append(Buffer.from(text), 'stream|after');
      expect(() => { bodies.finish(); }).toThrow(expect.objectContaining({ code: 'EXPORT_OUTPUT' }) as Error);
    } finally {
      if (!removed) await bodies.remove();
    }
  });

  it('reports a file cut short, or an address it does not hold, as a typed error instead of returning part of a record', async () => {
    const file = path.join(dir, 'cut.bin');
    const bodies = RecordBodies.create(file);
    try {
      const { own, shared, large } = appendKinds(bodies);
      const content = await readFile(file);
      const first = own[0];
      const busy = own[OWN_AFTER + 5];
      if (!first || !busy) throw new Error('nothing appended');
      // Cut inside the busy conversation's block: what ends past the cut cannot be read, the rest can.
      const cut = content.indexOf(busy.text) + 10;
      await truncate(file, cut);
      let failed = 0;
      for (const item of [first, busy, shared, large]) {
        if (content.indexOf(item.text) + item.bytes <= cut) {
          expect(bodies.read(item.at, item.bytes, sha(item.text))).toBe(item.text);
          continue;
        }
        let error: unknown;
        try {
          bodies.read(item.at, item.bytes, sha(item.text));
        } catch (caught) {
          error = caught;
        }
        expect(error).toBeInstanceOf(ExportError);
        expect(error).toMatchObject({ code: 'EXPORT_OUTPUT' });
        failed += 1;
      }
      expect(failed).toBeGreaterThan(0);
      expect(() => bodies.read(first.at, BLOCK_BYTES + 1, sha(first.text))).toThrow(expect.objectContaining({ code: 'EXPORT_OUTPUT' }) as Error);
      expect(() => bodies.read(2 ** 50, 10, sha(first.text))).toThrow(expect.objectContaining({ code: 'EXPORT_OUTPUT' }) as Error);
    } finally {
      await bodies.remove();
    }
  });
});
