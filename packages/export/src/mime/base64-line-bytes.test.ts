/**
 * `base64LineBytes` builds RFC 2045 base64 (76-character lines, CRLF) directly as bytes, in
 * pieces: it must equal the plain encoding cut into lines for every length — around the 57-byte
 * line group, around its internal piece size, empty — and the stream form must equal it however
 * the input is chunked.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { base64LineBytes, base64LineStream, base64Lines } from './mime-message.ts';

function reference(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('base64');
  let out = '';
  for (let at = 0; at < text.length; at += 76) out += `${text.slice(at, at + 76)}\r\n`;
  return out;
}

describe('base64LineBytes', () => {
  it('equals base64 cut into CRLF lines of 76 for every length near the line and piece edges', () => {
    const piece = 57 * 1024;
    const lengths = [0, 1, 2, 3, 56, 57, 58, 113, 114, 115, piece - 1, piece, piece + 1, piece + 57, 3 * piece + 5];
    for (let length = 0; length < 300; length++) lengths.push(length);
    const source = randomBytes(3 * piece + 5);
    for (const length of lengths) {
      const bytes = source.subarray(0, length);
      expect(base64LineBytes(bytes).toString('latin1')).toBe(reference(bytes));
      expect(base64Lines(bytes)).toBe(reference(bytes));
    }
  });

  it('streams the same bytes whatever the chunking', async () => {
    const source = randomBytes(200_000);
    for (const size of [1, 7, 57, 100, 4096, 65_536, 200_000]) {
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let at = 0; at < source.byteLength; at += size) yield source.subarray(at, at + size);
      }
      const parts: Buffer[] = [];
      for await (const part of base64LineStream(chunks())) parts.push(part);
      expect(Buffer.concat(parts).toString('latin1')).toBe(reference(source));
    }
  });
});
