/**
 * RFC 9162 (Certificate Transparency 2.0, §2.1.1) Merkle tree hashing, with SHA-256:
 *
 *   MTH({})      = SHA-256()                        the empty tree
 *   leaf hash    = SHA-256(0x00 ‖ entry)            each stream record's canonical bytes is one entry
 *   node hash    = SHA-256(0x01 ‖ left ‖ right)
 *
 * The 0x00/0x01 prefixes keep a leaf from ever being mistaken for an interior node.
 */
import { hash } from 'node:crypto';

/** Bytes in a SHA-256 hash. */
export const HASH_BYTES = 32;
const HASH_BYTES_CONST = 32;

/** Scratch buffers: one-shot hashing of a prefixed copy is faster than an incremental hash. */
let leafScratch = Buffer.alloc(64 * 1024 + 1);
const nodeScratch = Buffer.alloc(1 + 2 * HASH_BYTES_CONST);

/** Root of the empty tree: SHA-256 of nothing. */
export const EMPTY_ROOT: Uint8Array = new Uint8Array(hash('sha256', new Uint8Array(0), 'buffer'));

/**
 * Where digests are decoded. `hash(…, 'buffer')` allocates an ArrayBuffer outside the heap for
 * every 32-byte digest, which costs more than hashing a short input; a latin1 string (one
 * character per byte, exact) written into this scratch and copied into a small heap array does not.
 */
const digestScratch = Buffer.alloc(HASH_BYTES_CONST);

function sha256Of(data: Uint8Array): Uint8Array {
  digestScratch.write(hash('sha256', data, 'binary'), 0, HASH_BYTES_CONST, 'latin1');
  return new Uint8Array(digestScratch);
}

/** The prefixed entry in the scratch buffer. */
function prefixedLeaf(entry: Uint8Array): Buffer {
  if (entry.length + 1 > leafScratch.length) leafScratch = Buffer.alloc(entry.length + 1);
  leafScratch[0] = 0x00;
  leafScratch.set(entry, 1);
  return leafScratch.subarray(0, entry.length + 1);
}

/** SHA-256(0x00 ‖ entry). */
export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256Of(prefixedLeaf(entry));
}

/** {@link leafHash} written into `target` at byte `offset`, allocating nothing. */
export function writeLeafHash(entry: Uint8Array, target: Buffer, offset: number): void {
  target.write(hash('sha256', prefixedLeaf(entry), 'binary'), offset, HASH_BYTES_CONST, 'latin1');
}

/** SHA-256(0x01 ‖ left ‖ right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length !== HASH_BYTES || right.length !== HASH_BYTES) {
    return hash('sha256', Buffer.concat([Uint8Array.of(0x01), left, right]), 'buffer');
  }
  nodeScratch[0] = 0x01;
  nodeScratch.set(left, 1);
  nodeScratch.set(right, 1 + HASH_BYTES);
  return sha256Of(nodeScratch);
}

/** Constant-length comparison of two hashes (they are public values; this is about correctness, not timing). */
export function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/** Largest power of two strictly less than `n` (n ≥ 2): the RFC's split point k. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** True when `n` is 2^k for some k ≥ 0. */
export function isPowerOfTwo(n: number): boolean {
  return n >= 1 && Number.isSafeInteger(n) && 2 ** Math.round(Math.log2(n)) === n;
}
