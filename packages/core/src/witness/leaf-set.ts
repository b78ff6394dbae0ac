/**
 * A set of 32-byte hashes held in two flat arrays — at most 40 bytes a hash and no object per
 * hash — for the archive log's rebuild, which must ask "is this stream checkpoint an entry?"
 * of every entry ever appended. At a million entries it holds about 40 MiB, where a `Set` of
 * hex strings (and the array of leaves behind it) held about 350 MiB.
 *
 * Open addressing with linear probing. The slot comes from four bytes of the hash read at an
 * offset chosen at random per set: entries are SHA-256 outputs, so any four bytes are uniform,
 * and entries crafted to share the bytes at one offset (to make every lookup probe them all)
 * would have to share them at every offset — that is, nearly collide in full.
 */
import { randomInt } from 'node:crypto';

const HASH_BYTES = 32;

export class LeafSet {
  readonly #hashes: Uint8Array;
  /** Per slot, the index of the hash stored there plus one; 0 when empty. */
  readonly #slots: Int32Array;
  readonly #mask: number;
  readonly #offset: number;
  readonly #capacity: number;
  #count = 0;

  /** A set that holds up to `capacity` hashes. */
  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 0 || capacity > 2 ** 26) throw new RangeError(`a leaf set holds 0 to ${2 ** 26} hashes, not ${capacity}`);
    this.#capacity = capacity;
    this.#hashes = new Uint8Array(capacity * HASH_BYTES);
    let slots = 8;
    while (slots < capacity * 2) slots *= 2;
    this.#slots = new Int32Array(slots);
    this.#mask = slots - 1;
    this.#offset = randomInt(0, HASH_BYTES - 3);
  }

  /** How many distinct hashes the set holds. */
  get size(): number {
    return this.#count;
  }

  /** Adds `hash` (32 bytes; copied) unless it is there. Throws RangeError when full. */
  add(hash: Uint8Array): void {
    const slot = this.#find(hash);
    if (this.#slots[slot] !== 0) return;
    if (this.#count === this.#capacity) throw new RangeError(`the leaf set is full (${this.#capacity} hashes)`);
    this.#hashes.set(hash, this.#count * HASH_BYTES);
    this.#count++;
    this.#slots[slot] = this.#count;
  }

  /** True when the set holds `hash`. */
  has(hash: Uint8Array): boolean {
    return this.#slots[this.#find(hash)] !== 0;
  }

  /** The slot holding `hash`, or the empty slot where it would go. */
  #find(hash: Uint8Array): number {
    if (hash.length !== HASH_BYTES) throw new RangeError(`a leaf hash is ${HASH_BYTES} bytes, not ${hash.length}`);
    const at = this.#offset;
    let slot = ((hash[at] as number) | ((hash[at + 1] as number) << 8) | ((hash[at + 2] as number) << 16) | ((hash[at + 3] as number) << 24)) & this.#mask;
    for (;;) {
      const stored = this.#slots[slot] as number;
      if (stored === 0 || this.#holds(stored - 1, hash)) return slot;
      slot = (slot + 1) & this.#mask;
    }
  }

  #holds(index: number, hash: Uint8Array): boolean {
    const base = index * HASH_BYTES;
    for (let i = 0; i < HASH_BYTES; i++) if (this.#hashes[base + i] !== hash[i]) return false;
    return true;
  }
}
