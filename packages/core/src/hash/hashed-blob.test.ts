/**
 * The recorder's hashed private copies of blob bytes (hashed-blob.ts): a copy, never a view,
 * whose hash is known for that array only — never for the caller's array or any other.
 */
import { describe, expect, it } from 'vitest';
import { hashedBlobCopy, knownBlobSha256 } from './hashed-blob.ts';
import { sha256Hex } from './sha256.ts';

describe('hashedBlobCopy', () => {
  it('hashes a copy the caller cannot change, and knows the hash of that copy only', () => {
    const pool = Buffer.from('....raw row bytes in a larger pool....', 'utf8');
    const callers = pool.subarray(4, 34); // a view of a pool, as Buffer.from of a short string is
    const before = sha256Hex(callers);
    const blob = hashedBlobCopy(callers);
    expect(blob.sha256).toBe(before);
    expect(blob.bytes).toEqual(new Uint8Array(callers));
    expect(blob.bytes.buffer).not.toBe(pool.buffer);
    callers.fill(0x21);
    pool.fill(0x22);
    expect(sha256Hex(blob.bytes)).toBe(before);
    expect(knownBlobSha256(blob.bytes)).toBe(before);
    expect(knownBlobSha256(callers)).toBeUndefined();
    expect(knownBlobSha256(pool)).toBeUndefined();
    expect(knownBlobSha256(new Uint8Array(blob.bytes))).toBeUndefined();
  });

  it('gives every call its own copy', () => {
    const bytes = new TextEncoder().encode('the same bytes twice');
    const first = hashedBlobCopy(bytes);
    const second = hashedBlobCopy(bytes);
    expect(second.bytes).not.toBe(first.bytes);
    expect(second.sha256).toBe(first.sha256);
  });
});
