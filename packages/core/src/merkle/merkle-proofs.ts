/**
 * Building Merkle roots and proofs (RFC 9162 §2.1) from any store of perfect-subtree hashes.
 *
 * The RFC defines everything over the list of leaves D[0:n]; a store that keeps the hash of
 * every complete, aligned subtree (in memory, or as tlog tiles on disk) answers each recursion
 * step with one lookup, so a proof costs O(log n) lookups instead of O(n) hashing.
 */
import { EMPTY_ROOT, HASH_BYTES, isPowerOfTwo, nodeHash, splitPoint } from './merkle-hash.ts';

/**
 * Hashes of complete subtrees: `subtree(level, index)` is the root of the perfect subtree over
 * leaves `[index·2^level, (index+1)·2^level)`, which must lie within `size`.
 */
export interface SubtreeSource {
  readonly size: number;
  subtree(level: number, index: number): Uint8Array | Promise<Uint8Array>;
}

/** MTH(D[start:end]) — the RFC's Merkle Tree Hash of a range of leaves. */
export async function rangeHash(source: SubtreeSource, start: number, end: number): Promise<Uint8Array> {
  const n = end - start;
  if (n === 0) return EMPTY_ROOT;
  if (isPowerOfTwo(n) && start % n === 0) return source.subtree(Math.log2(n), start / n);
  const k = splitPoint(n);
  return nodeHash(await rangeHash(source, start, start + k), await rangeHash(source, start + k, end));
}

/** The root of the tree of the first `size` leaves (default: all). */
export async function treeRoot(source: SubtreeSource, size = source.size): Promise<Uint8Array> {
  checkSize(source, size);
  return rangeHash(source, 0, size);
}

/** PATH(index, D[0:size]): the inclusion proof of leaf `index` in the tree of size `size`, leaf first. */
export async function inclusionProof(source: SubtreeSource, index: number, size = source.size): Promise<Uint8Array[]> {
  checkSize(source, size);
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) throw new RangeError(`leaf index ${index} is outside a tree of size ${size}`);
  const path: Uint8Array[] = [];
  const walk = async (m: number, start: number, end: number): Promise<void> => {
    const n = end - start;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      await walk(m, start, start + k);
      path.push(await rangeHash(source, start + k, end));
    } else {
      await walk(m - k, start + k, end);
      path.push(await rangeHash(source, start, start + k));
    }
  };
  await walk(index, 0, size);
  return path;
}

/** PROOF(first, D[0:second]): the consistency proof that the tree of size `first` is a prefix of the tree of size `second`. */
export async function consistencyProof(source: SubtreeSource, first: number, second = source.size): Promise<Uint8Array[]> {
  checkSize(source, second);
  if (!Number.isSafeInteger(first) || first < 0 || first > second) throw new RangeError(`cannot prove size ${first} consistent with size ${second}`);
  if (first === 0 || first === second) return [];
  const proof: Uint8Array[] = [];
  const subproof = async (m: number, start: number, end: number, complete: boolean): Promise<void> => {
    const n = end - start;
    if (m === n) {
      if (!complete) proof.push(await rangeHash(source, start, end));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      await subproof(m, start, start + k, complete);
      proof.push(await rangeHash(source, start + k, end));
    } else {
      await subproof(m - k, start + k, end, false);
      proof.push(await rangeHash(source, start, start + k));
    }
  };
  await subproof(first, 0, second, true);
  return proof;
}

function checkSize(source: SubtreeSource, size: number): void {
  if (!Number.isSafeInteger(size) || size < 0 || size > source.size) throw new RangeError(`tree size ${size} is outside 0–${source.size}`);
}

/**
 * All subtree hashes of a tree, in memory: level 0 holds the leaf hashes, level k the roots
 * of aligned 2^k-leaf subtrees as soon as they are complete. About 64 bytes per leaf.
 */
export class MerkleLevels implements SubtreeSource {
  private levels: Uint8Array[] = [new Uint8Array(HASH_BYTES * 1024)];
  private counts: number[] = [0];

  get size(): number {
    return this.counts[0] ?? 0;
  }

  /** Appends one leaf hash and every subtree it completes. */
  append(leaf: Uint8Array): void {
    let level = 0;
    let hash = leaf;
    for (;;) {
      const index = this.push(level, hash);
      if (index % 2 === 0) return;
      hash = nodeHash(this.subtree(level, index - 1), hash);
      level++;
    }
  }

  subtree(level: number, index: number): Uint8Array {
    const count = this.counts[level] ?? 0;
    if (index < 0 || index >= count) throw new RangeError(`no complete subtree at level ${level}, index ${index}`);
    const buffer = this.levels[level] as Uint8Array;
    return buffer.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES);
  }

  private push(level: number, hash: Uint8Array): number {
    if (this.levels.length <= level) {
      this.levels.push(new Uint8Array(HASH_BYTES * 1024));
      this.counts.push(0);
    }
    const index = this.counts[level] as number;
    let buffer = this.levels[level] as Uint8Array;
    if ((index + 1) * HASH_BYTES > buffer.length) {
      const grown = new Uint8Array(buffer.length * 2);
      grown.set(buffer);
      buffer = grown;
      this.levels[level] = grown;
    }
    buffer.set(hash, index * HASH_BYTES);
    this.counts[level] = index + 1;
    return index;
  }
}

/**
 * The O(log n) summary of a growing tree: the roots of its perfect subtrees, largest first.
 * Enough to compute the current root, not to build proofs.
 */
export class CompactRange {
  private readonly nodes: { level: number; hash: Uint8Array }[] = [];
  private count = 0;

  /**
   * The compact range of the first `source.size` leaves, read from stored subtree hashes (one
   * perfect subtree per set bit of the size) instead of appending every leaf again.
   */
  static async fromSource(source: SubtreeSource): Promise<CompactRange> {
    const range = new CompactRange();
    let start = 0;
    for (let level = 52; level >= 0; level--) {
      const span = 2 ** level;
      if (source.size - start < span) continue;
      range.nodes.push({ level, hash: Uint8Array.from(await source.subtree(level, start / span)) });
      start += span;
    }
    range.count = source.size;
    return range;
  }

  get size(): number {
    return this.count;
  }

  /**
   * Appends a leaf. With `level`: returns the root of the perfect subtree of 2^level leaves
   * this leaf completes (the last 2^level leaves, when the size becomes a multiple of 2^level),
   * which the append computes anyway — a tile builder then need not hash that subtree again.
   */
  append(leaf: Uint8Array, level?: number): Uint8Array | undefined {
    let node = { level: 0, hash: leaf };
    let completed = level === 0 ? leaf : undefined;
    for (let last = this.nodes.at(-1); last?.level === node.level; last = this.nodes.at(-1)) {
      this.nodes.pop();
      node = { level: node.level + 1, hash: nodeHash(last.hash, node.hash) };
      if (node.level === level) completed = node.hash;
    }
    this.nodes.push(node);
    this.count++;
    return completed;
  }

  /**
   * Appends a perfect subtree of 2^`level` leaves whose root (hashed elsewhere, e.g. a level-0
   * tile's root from the thread that hashed its leaves) is `hash`; the size must be a multiple
   * of 2^`level`, as the subtree's own leaves appended one by one would leave it.
   */
  appendSubtree(level: number, hash: Uint8Array): void {
    const span = 2 ** level;
    if (this.count % span !== 0) throw new RangeError(`a subtree of ${span} leaves cannot follow ${this.count} leaves`);
    let node = { level, hash };
    for (let last = this.nodes.at(-1); last?.level === node.level; last = this.nodes.at(-1)) {
      this.nodes.pop();
      node = { level: node.level + 1, hash: nodeHash(last.hash, node.hash) };
    }
    this.nodes.push(node);
    this.count += span;
  }

  /** MTH of all leaves appended so far. */
  root(): Uint8Array {
    let root: Uint8Array | undefined;
    for (let index = this.nodes.length - 1; index >= 0; index--) {
      const node = this.nodes[index] as { hash: Uint8Array };
      root = root ? nodeHash(node.hash, root) : node.hash;
    }
    return root ?? EMPTY_ROOT;
  }
}
