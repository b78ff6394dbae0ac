/**
 * Verifying Merkle proofs: RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), step
 * by step as the RFC words them. Sizes are JavaScript numbers up to 2^53 − 1, so shifts are
 * written as division: `>>` would truncate to 32 bits.
 */
import { HASH_BYTES, isPowerOfTwo, nodeHash, sameHash } from './merkle-hash.ts';

const half = (value: number): number => Math.floor(value / 2);
const odd = (value: number): boolean => value % 2 === 1;

/**
 * True when `proof` shows that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves
 * whose root is `root`. Never throws for malformed input: it just does not verify.
 */
export function verifyInclusion(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  if (!wellFormed(proof) || leaf.length !== HASH_BYTES || root.length !== HASH_BYTES) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && sameHash(r, root);
}

/**
 * True when `proof` shows that the tree of `first` leaves with root `firstRoot` is a prefix of
 * the tree of `second` leaves with root `secondRoot`. Never throws for malformed input.
 */
export function verifyConsistency(first: number, second: number, firstRoot: Uint8Array, secondRoot: Uint8Array, proof: readonly Uint8Array[]): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second) return false;
  if (!wellFormed(proof) || firstRoot.length !== HASH_BYTES || secondRoot.length !== HASH_BYTES) return false;
  if (first === second) return proof.length === 0 && sameHash(firstRoot, secondRoot);
  if (first === 0) return proof.length === 0;
  // 1. An empty path cannot prove anything between two different non-empty sizes.
  if (proof.length === 0) return false;
  // 2. If first is a power of two, its root is the path's implicit first element.
  const path = isPowerOfTwo(first) ? [firstRoot, ...proof] : [...proof];
  // 3–4.
  let fn = first - 1;
  let sn = second - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  // 5.
  let fr = path[0] as Uint8Array;
  let sr = fr;
  // 6.
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  // 7.
  return sameHash(fr, firstRoot) && sameHash(sr, secondRoot) && sn === 0;
}

function wellFormed(proof: readonly Uint8Array[]): boolean {
  return Array.isArray(proof) && proof.length <= 64 && proof.every((hash) => hash instanceof Uint8Array && hash.length === HASH_BYTES);
}
