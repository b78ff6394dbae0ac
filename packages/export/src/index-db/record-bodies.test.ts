/**
 * The export index keeps each record's stored bytes in a working file and reads them back by
 * offset: what is read must be exactly what was appended — across the write buffer's edge, for
 * records larger than the buffer, in any order, read before or after the buffer is written, and
 * when the caller reuses its buffer after appending (the fs sink hands out views of one read
 * buffer). A file cut short or changed is a typed error, never a wrong record. Real temporary files.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExportError } from '../export-error.ts';
import { BODY_BUFFER_BYTES, RecordBodies } from './record-bodies.ts';

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

describe('RecordBodies', () => {
  it('reads back every record exactly, across the buffer edge and past its size, in any order', async () => {
    const file = path.join(dir, 'round-trip.bin');
    const bodies = RecordBodies.create(file);
    try {
      const sizes = [1, 700, 1300, BODY_BUFFER_BYTES / 2, BODY_BUFFER_BYTES / 2 + 3, 50, BODY_BUFFER_BYTES + 17, 2, 4000, BODY_BUFFER_BYTES - 5, 9];
      const reused = Buffer.alloc(3 * BODY_BUFFER_BYTES);
      const placed: { at: number; bytes: number; text: string }[] = [];
      for (const [n, size] of sizes.entries()) {
        const text = record(n, size);
        const length = reused.write(text, 0, 'utf8');
        const at = bodies.append(reused.subarray(0, length));
        reused.fill(0x78); // the caller reuses its buffer at once
        placed.push({ at, bytes: length, text });
        // A read in the middle of appending sees everything appended so far, still buffered or not.
        if (n % 3 === 1) expect(bodies.read(at, length, sha(text))).toBe(text);
      }
      expect(placed.map((item) => item.at)).toEqual(placed.map((_, n) => placed.slice(0, n).reduce((sum, item) => sum + item.bytes, 0)));
      bodies.finish();
      for (const n of [7, 0, 10, 3, 6, 1, 9, 2, 8, 4, 5]) expect(bodies.read(placed[n]!.at, placed[n]!.bytes, sha(placed[n]!.text))).toBe(placed[n]!.text);
      expect((await stat(file)).size).toBe(placed.reduce((sum, item) => sum + item.bytes, 0));
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    } finally {
      await bodies.remove();
    }
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('never opens a file that already exists', async () => {
    const file = path.join(dir, 'existing.bin');
    await writeFile(file, 'someone else');
    expect(() => RecordBodies.create(file)).toThrow(expect.objectContaining({ code: 'EEXIST' }) as Error);
  });

  it('refuses bytes changed in the working file after the build, and any use after removal', async () => {
    const file = path.join(dir, 'changed.bin');
    const bodies = RecordBodies.create(file);
    let removed = false;
    try {
      const text = record(3, 200);
      const at = bodies.append(Buffer.from(text));
      bodies.finish();
      expect(bodies.read(at, Buffer.byteLength(text), sha(text))).toBe(text);
      // Same length, one byte different: what a failing disk or another process could leave.
      const handle = await open(file, 'r+');
      await handle.write(Buffer.from('Y'), 0, 1, at + 20);
      await handle.close();
      expect(() => bodies.read(at, Buffer.byteLength(text), sha(text))).toThrow(expect.objectContaining({ code: 'EXPORT_UNVERIFIED' }) as Error);
      await bodies.remove();
      removed = true;
      expect(() => bodies.read(at, Buffer.byteLength(text), sha(text))).toThrow(expect.objectContaining({ code: 'EXPORT_OUTPUT' }) as Error);
      bodies.append(Buffer.from(text));
      expect(() => { bodies.finish(); }).toThrow(expect.objectContaining({ code: 'EXPORT_OUTPUT' }) as Error);
    } finally {
      if (!removed) await bodies.remove();
    }
  });

  it('reports a file cut short as a typed error instead of returning part of a record', async () => {
    const file = path.join(dir, 'cut.bin');
    const bodies = RecordBodies.create(file);
    try {
      const bytes = (n: number): number => Buffer.byteLength(record(n, 100));
      const first = bodies.append(Buffer.from(record(1, 100)));
      const second = bodies.append(Buffer.from(record(2, 100)));
      bodies.finish();
      await truncate(file, second + 10);
      expect(bodies.read(first, bytes(1), sha(record(1, 100)))).toBe(record(1, 100));
      let error: unknown;
      try {
        bodies.read(second, bytes(2), sha(record(2, 100)));
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ExportError);
      expect(error).toMatchObject({ code: 'EXPORT_OUTPUT' });
    } finally {
      await bodies.remove();
    }
  });
});
