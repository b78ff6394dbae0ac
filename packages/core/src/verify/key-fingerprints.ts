/**
 * Internal: the idempotency keys verification has seen in a stream, in 12 bytes per key.
 *
 * Checking that no key repeats needs every key of the stream at hand; as strings in a Map that
 * is over 100 bytes per record, so verifying a stream of millions of records would grow to
 * gigabytes. This set keeps a 53-bit fingerprint and the seq of each key in flat typed arrays
 * (open addressing; a seq takes 4 bytes until one exceeds 2^32 − 1, then 8). A fingerprint
 * seen again only makes a *candidate*: the caller confirms it
 * by comparing the two keys themselves (reading the earlier record back), so a fingerprint
 * collision can never be reported as a duplicate, and a real duplicate is never missed.
 */

/** 53-bit string hash (cyrb53: two 32-bit multiply-xorshift lanes), never 0. */
export function keyFingerprint(key: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let index = 0; index < key.length; index++) {
    const code = key.charCodeAt(index);
    h1 = Math.imul(h1 ^ code, 2654435761);
    h2 = Math.imul(h2 ^ code, 1597334677);
  }
  return finish(h1, h2);
}

/** {@link keyFingerprint} of the ASCII key in `bytes` from `start` to `end` (bytes are its UTF-16 code units). */
export function keyFingerprintOfAscii(bytes: Uint8Array, start: number, end: number): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let index = start; index < end; index++) {
    const code = bytes[index] as number;
    h1 = Math.imul(h1 ^ code, 2654435761);
    h2 = Math.imul(h2 ^ code, 1597334677);
  }
  return finish(h1, h2);
}

function finish(h1: number, h2: number): number {
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0) + 1;
}

export class KeyFingerprints {
  private hashes: Float64Array;
  private seqs: Uint32Array | Float64Array;
  private count = 0;
  private readonly fingerprint: (key: string) => number;

  /** `fingerprint` must return an integer in 1…2^53 − 1 (tests force collisions with it). */
  constructor(capacity = 1 << 12, fingerprint: (key: string) => number = keyFingerprint) {
    this.hashes = new Float64Array(capacity);
    this.seqs = new Uint32Array(capacity);
    this.fingerprint = fingerprint;
  }

  get size(): number {
    return this.count;
  }

  /**
   * Adds the key of record `seq`. Returns the seqs of earlier records whose keys have the same
   * fingerprint — candidate duplicates to confirm by comparing keys — or `undefined` (the usual
   * case). Every key is kept, so a collision never hides a later real duplicate.
   */
  add(key: string, seq: number): number[] | undefined {
    return this.addFingerprint(this.fingerprint(key), seq);
  }

  /** {@link add} for a key whose fingerprint was computed elsewhere (a verification worker). */
  addFingerprint(fingerprint: number, seq: number): number[] | undefined {
    if ((this.count + 1) * 2 > this.hashes.length) this.grow();
    if (seq > 0xffff_ffff && this.seqs instanceof Uint32Array) this.seqs = Float64Array.from(this.seqs);
    const mask = this.hashes.length - 1;
    let candidates: number[] | undefined;
    for (let slot = fingerprint & mask; ; slot = (slot + 1) & mask) {
      const stored = this.hashes[slot] as number;
      if (stored === 0) {
        this.hashes[slot] = fingerprint;
        this.seqs[slot] = seq;
        this.count++;
        return candidates;
      }
      if (stored === fingerprint) (candidates ??= []).push(this.seqs[slot] as number);
    }
  }

  private grow(): void {
    const { hashes, seqs } = this;
    this.hashes = new Float64Array(hashes.length * 2);
    this.seqs = seqs instanceof Uint32Array ? new Uint32Array(hashes.length * 2) : new Float64Array(hashes.length * 2);
    const mask = this.hashes.length - 1;
    for (let index = 0; index < hashes.length; index++) {
      const fingerprint = hashes[index] as number;
      if (fingerprint === 0) continue;
      let slot = fingerprint & mask;
      while (this.hashes[slot] !== 0) slot = (slot + 1) & mask;
      this.hashes[slot] = fingerprint;
      this.seqs[slot] = seqs[index] as number;
    }
  }
}
