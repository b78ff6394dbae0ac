/**
 * Blob bytes the recorder has hashed, so a sink need not hash them a second time.
 *
 * The recorder hashes every blob it stores (the name goes in the record), and a sink checks
 * that a blob's bytes hash to its name before storing them — the same bytes hashed twice on
 * the capture's one thread. {@link hashedBlobCopy} is the recorder's own, module-internal way
 * (it is not exported from the package): it copies the caller's bytes into a new array that
 * only the recorder and the sink ever hold, hashes that copy, and remembers the hash for that
 * exact array object. {@link knownBlobSha256} is the sink's look-up: the name the recorder
 * computed for this array, or `undefined` for any array the recorder did not make (every
 * caller-supplied one), which the sink hashes as before.
 *
 * The copy is what makes skipping the sink's hash safe: no caller holds the array, so its
 * bytes cannot change between the hash and the write (a caller's own array, or a view of a
 * SharedArrayBuffer, could). Nothing outside this package can add an entry.
 */
import { sha256Hex } from './sha256.ts';

const hashed = new WeakMap<Uint8Array, string>();

/** A private copy of `bytes` and its SHA-256, remembered for {@link knownBlobSha256} (recorder-internal). */
export function hashedBlobCopy(bytes: Uint8Array): { readonly bytes: Uint8Array; readonly sha256: string } {
  const copy = new Uint8Array(bytes); // a copy, never a view (Buffer#slice would be one)
  const sha256 = sha256Hex(copy);
  hashed.set(copy, sha256);
  return { bytes: copy, sha256 };
}

/** The SHA-256 the recorder computed for this very array, or `undefined` when it made no such copy. */
export function knownBlobSha256(bytes: Uint8Array): string | undefined {
  return hashed.get(bytes);
}
