/**
 * Merkle tiles (c2sp.org/tlog-tiles): the tree stored as 8-level-high tiles of up to 256
 * hashes, so that any root or proof needs only a few small reads.
 *
 * Tile n at level l holds, for i in 0…255, MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l]):
 * level 0 tiles hold leaf hashes; each hash of a level-l tile is the root of a full tile at
 * level l − 1. A partial tile (the right edge of a tree of size s) holds floor(s / 256^l) mod 256
 * hashes and is never hashed into the level above.
 */
import { HASH_BYTES, nodeHash } from './merkle-hash.ts';
import type { SubtreeSource } from './merkle-proofs.ts';

/** Hashes in a full tile. */
export const TILE_WIDTH = 256;
/** Tree levels one tile spans. */
export const TILE_HEIGHT = 8;

/** One tile: its level, its index within the level, how many hashes it holds (256 = full). */
export interface TileId {
  readonly level: number;
  readonly index: number;
  readonly width: number;
}

/** A tile with its bytes (`width` × 32). */
export interface Tile extends TileId {
  readonly bytes: Uint8Array;
}

/** The tile path of c2sp.org/tlog-tiles without its `tile/` prefix: `0/x001/x234/067`, `.p/<W>` when partial. */
export function tilePath(tile: TileId): string {
  assertTileId(tile);
  const digits = String(tile.index);
  const groups: string[] = [];
  for (let end = digits.length; end > 0; end -= 3) groups.unshift(digits.slice(Math.max(0, end - 3), end).padStart(3, '0'));
  const encoded = groups.map((group, position) => (position < groups.length - 1 ? `x${group}` : group)).join('/');
  return `${tile.level}/${encoded}${tile.width < TILE_WIDTH ? `.p/${tile.width}` : ''}`;
}

/** Throws RangeError unless the id is a valid tile: level 0–63, safe index, width 1–256. */
export function assertTileId(tile: TileId): void {
  if (!Number.isInteger(tile.level) || tile.level < 0 || tile.level > 63) throw new RangeError('tile level must be 0–63');
  if (!Number.isSafeInteger(tile.index) || tile.index < 0) throw new RangeError('tile index must be a non-negative safe integer');
  if (!Number.isInteger(tile.width) || tile.width < 1 || tile.width > TILE_WIDTH) throw new RangeError('tile width must be 1–256');
}

/** Root of a perfect tree over `count` (a power of two) consecutive hashes in `bytes` from `offset`. */
export function perfectRoot(bytes: Uint8Array, offset: number, count: number): Uint8Array {
  let level: Uint8Array[] = [];
  for (let index = 0; index < count; index++) level.push(bytes.subarray((offset + index) * HASH_BYTES, (offset + index + 1) * HASH_BYTES));
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let index = 0; index < level.length; index += 2) next.push(nodeHash(level[index] as Uint8Array, level[index + 1] as Uint8Array));
    level = next;
  }
  return level[0] as Uint8Array;
}

/** The tiles a tree of `size` leaves consists of at `level`: how many are full, and the partial width. */
export function tileCounts(size: number, level: number): { readonly full: number; readonly partialWidth: number } {
  const span = TILE_WIDTH ** level;
  const nodes = Math.floor(size / span);
  return { full: Math.floor(nodes / TILE_WIDTH), partialWidth: nodes % TILE_WIDTH };
}

/**
 * Builds tiles as leaves arrive: `append` returns the full tiles a leaf completes; `partialTiles`
 * gives the right-edge tiles for the current size (for a checkpoint at that size).
 */
export class TileBuilder {
  private readonly buffers: Uint8Array[] = [];
  private readonly widths: number[] = [];
  private readonly fullTiles: number[] = [];
  private leaves = 0;

  /**
   * The builder of a tree of `size` leaves, restored from its stored right-edge partial tiles
   * (the ones written with the checkpoint at that size) instead of appending every leaf again.
   * Check the result against a signed root before trusting it (the caller does).
   */
  static async fromTiles(size: number, load: (tile: TileId) => Promise<Uint8Array | undefined>): Promise<TileBuilder> {
    const builder = new TileBuilder();
    for (let level = 0; TILE_WIDTH ** level <= size; level++) {
      const { full, partialWidth } = tileCounts(size, level);
      builder.fullTiles[level] = full;
      builder.widths[level] = partialWidth;
      const buffer = new Uint8Array(TILE_WIDTH * HASH_BYTES);
      builder.buffers[level] = buffer;
      if (partialWidth === 0) continue;
      const bytes = await load({ level, index: full, width: partialWidth });
      if (bytes?.length !== partialWidth * HASH_BYTES) throw new RangeError(`partial tile ${tilePath({ level, index: full, width: partialWidth })} is ${bytes ? 'the wrong size' : 'missing'}`);
      buffer.set(bytes);
    }
    builder.leaves = size;
    return builder;
  }

  get size(): number {
    return this.leaves;
  }

  /**
   * Appends a leaf; returns the tiles it completes. `tileRoot`, when given, is the root of the
   * level-0 tile this leaf completes (from a {@link CompactRange} of the same leaves, see its
   * `append`), so that the tile's 255 interior hashes are not computed twice.
   */
  append(leaf: Uint8Array, tileRoot?: Uint8Array): Tile[] {
    this.leaves++;
    return this.carry(0, leaf, [], tileRoot);
  }

  /**
   * Appends a whole level-0 tile at a tile boundary: its 256 leaf hashes (`leaves`) and its
   * root, hashed elsewhere (the thread that hashed the leaves). Returns the tiles it completes,
   * as 256 calls of {@link append} would.
   */
  appendTile(leaves: Uint8Array, root: Uint8Array): Tile[] {
    if ((this.widths[0] ?? 0) !== 0 || leaves.length !== TILE_WIDTH * HASH_BYTES) throw new RangeError('a whole tile goes at a tile boundary, with 256 leaf hashes');
    this.leaves += TILE_WIDTH;
    const index = this.fullTiles[0] ?? 0;
    this.fullTiles[0] = index + 1;
    return this.carry(1, root, [{ level: 0, index, width: TILE_WIDTH, bytes: Uint8Array.from(leaves) }]);
  }

  /** Adds `hash` to the tile being built at `level`, and what a tile it completes adds above. */
  private carry(from: number, first: Uint8Array, completed: Tile[], tileRoot?: Uint8Array): Tile[] {
    let level = from;
    let hash = first;
    for (;;) {
      const buffer = (this.buffers[level] ??= new Uint8Array(TILE_WIDTH * HASH_BYTES));
      const width = this.widths[level] ?? 0;
      buffer.set(hash, width * HASH_BYTES);
      this.widths[level] = width + 1;
      if (width + 1 < TILE_WIDTH) return completed;
      const index = this.fullTiles[level] ?? 0;
      completed.push({ level, index, width: TILE_WIDTH, bytes: Uint8Array.from(buffer) });
      this.fullTiles[level] = index + 1;
      this.widths[level] = 0;
      hash = level === 0 && tileRoot !== undefined ? tileRoot : perfectRoot(buffer, 0, TILE_WIDTH);
      level++;
    }
  }

  /** The partial tiles of the current tree (one per level that has any), bytes copied. */
  partialTiles(): Tile[] {
    const tiles: Tile[] = [];
    this.widths.forEach((width, level) => {
      if (width > 0) tiles.push({ level, index: this.fullTiles[level] ?? 0, width, bytes: (this.buffers[level] as Uint8Array).slice(0, width * HASH_BYTES) });
    });
    return tiles;
  }
}

/**
 * Subtree hashes read from stored tiles, for a tree of `size` leaves: a proof in a tree of a
 * million leaves reads about three tiles and hashes at most a few hundred nodes.
 */
export class TileSource implements SubtreeSource {
  readonly size: number;
  private readonly load: (tile: TileId) => Promise<Uint8Array | undefined>;
  private readonly cache = new Map<string, Promise<Uint8Array>>();

  constructor(size: number, load: (tile: TileId) => Promise<Uint8Array | undefined>) {
    this.size = size;
    this.load = load;
  }

  async subtree(level: number, index: number): Promise<Uint8Array> {
    const tileLevel = Math.floor(level / TILE_HEIGHT);
    const span = 2 ** (level - tileLevel * TILE_HEIGHT);
    const first = index * span;
    const tileIndex = Math.floor(first / TILE_WIDTH);
    const { full, partialWidth } = tileCounts(this.size, tileLevel);
    const width = tileIndex < full ? TILE_WIDTH : partialWidth;
    const offset = first - tileIndex * TILE_WIDTH;
    if (width === 0 || offset + span > width) throw new RangeError(`no complete subtree at level ${level}, index ${index} in a tree of size ${this.size}`);
    const bytes = await this.tile({ level: tileLevel, index: tileIndex, width });
    return span === 1 ? bytes.subarray(offset * HASH_BYTES, (offset + 1) * HASH_BYTES) : perfectRoot(bytes, offset, span);
  }

  private tile(id: TileId): Promise<Uint8Array> {
    const key = tilePath(id);
    let cached = this.cache.get(key);
    if (!cached) {
      cached = this.load(id).then((bytes) => {
        if (bytes?.length !== id.width * HASH_BYTES) throw new RangeError(`tile ${key} is ${bytes ? `${bytes.length} bytes, not ${id.width * HASH_BYTES}` : 'missing'}`);
        return bytes;
      });
      this.cache.set(key, cached);
    }
    return cached;
  }
}
