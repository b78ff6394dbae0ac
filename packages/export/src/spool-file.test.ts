/**
 * The spool encodes appended text into one reused buffer: what is read back must be exactly the
 * UTF-8 of everything appended, in order — across flushes, with characters of 1 to 4 bytes
 * (surrogate pairs, and lone surrogates as U+FFFD like `Buffer.from`) cut at any buffer edge,
 * and with appends larger than the buffer. Real temporary files.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpoolFile } from './spool-file.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-spool-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function roundTrip(name: string, parts: readonly string[], chunkBytes: number): Promise<Buffer> {
  const spool = await SpoolFile.create(path.join(dir, name));
  try {
    for (const part of parts) spool.append(part);
    expect(spool.size).toBe(Buffer.byteLength(parts.join(''), 'utf8'));
    const chunks: Uint8Array[] = [];
    for await (const chunk of spool.chunks(chunkBytes)) {
      expect(chunk.byteLength).toBeLessThanOrEqual(chunkBytes);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  } finally {
    await spool.remove();
  }
}

describe('SpoolFile', () => {
  it('reads back exactly the UTF-8 of many small appends of mixed-width characters', async () => {
    const alphabet = ['a', 'é', '€', '𝄞', '日本', '\u{1F44D}', '\n'];
    const parts = Array.from({ length: 60_000 }, (_, index) => `${alphabet[index % alphabet.length] ?? ''}${index}`);
    const back = await roundTrip('small', parts, 57 * 4096);
    expect(back.equals(Buffer.from(parts.join(''), 'utf8'))).toBe(true);
  });

  it('keeps order when an append is larger than the buffer, and encodes lone surrogates as Buffer.from does', async () => {
    const huge = `${'€'.repeat(200_000)}\ud800 lone`;
    const parts = ['head ', huge, ' middle \udc00', huge, ' tail'];
    const back = await roundTrip('large', parts, 1000);
    expect(back.equals(Buffer.from(parts.join(''), 'utf8'))).toBe(true);
  });

  it('reads back nothing from an empty spool', async () => {
    expect((await roundTrip('empty', [], 64)).byteLength).toBe(0);
  });
});
