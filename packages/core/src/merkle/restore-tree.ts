/**
 * Internal: the Merkle state of a tree whose root was signed, rebuilt from its stored tiles
 * instead of hashing every leaf again — the recorder's start-up and incremental verification.
 * Nothing is used that the signed root does not vouch for: each tile is read once, and the
 * bytes that reproduce the root are the bytes the builder continues from.
 */
import { leafHash, sameHash } from './merkle-hash.ts';
import { CompactRange, inclusionProof } from './merkle-proofs.ts';
import { TILE_WIDTH, TileBuilder, type TileId, TileSource, tileCounts, tilePath } from './tiles.ts';
import { verifyInclusion } from './verify-proofs.ts';

export type TileLoader = (tile: TileId) => Promise<Uint8Array | undefined>;

export interface RestoredTree {
  readonly compact: CompactRange;
  readonly tiles: TileBuilder;
  /**
   * Whether `bytes` is the tree's last leaf (an inclusion proof from the same tiles);
   * `undefined` when the tiles the proof needs cannot be read.
   */
  isLastLeaf(bytes: Uint8Array): Promise<boolean | undefined>;
}

/** The tree of `size` leaves from its stored tiles; `undefined` when tiles are missing or do not reproduce `root`. */
export async function restoreTree(size: number, root: Uint8Array, load: TileLoader): Promise<RestoredTree | undefined> {
  const read = new Map<string, Promise<Uint8Array | undefined>>();
  const once: TileLoader = (tile) => {
    const key = tilePath(tile);
    let bytes = read.get(key);
    if (!bytes) read.set(key, (bytes = load(tile)));
    return bytes;
  };
  try {
    const source = new TileSource(size, once);
    const compact = await CompactRange.fromSource(source);
    if (!sameHash(compact.root(), root)) return undefined;
    const tiles = await TileBuilder.fromTiles(size, once);
    const isLastLeaf = async (bytes: Uint8Array): Promise<boolean | undefined> => {
      let proof;
      try {
        proof = await inclusionProof(source, size - 1);
      } catch {
        return undefined;
      }
      return verifyInclusion(size - 1, size, leafHash(bytes), proof, root);
    };
    return { compact, tiles, isLastLeaf };
  } catch {
    return undefined;
  }
}

/**
 * The tree of `size` leaves from its stored tiles, vouched for by no root: a pruned spool
 * continues from here, and the next signed checkpoint's root checks every hash it used.
 * Tiles are stored at checkpoint sizes, so a partial tile `size` needs is read as the first
 * entries of the full tile, or of a wider partial tile stored for a later checkpoint
 * (`laterSizes`). `undefined` when tiles are missing.
 */
export async function treeFromTiles(size: number, load: TileLoader, laterSizes: readonly number[]): Promise<{ readonly compact: CompactRange; readonly tiles: TileBuilder } | undefined> {
  const prefixOf: TileLoader = async (tile) => {
    const exact = await load(tile);
    if (exact || tile.width === TILE_WIDTH) return exact;
    const widths = [TILE_WIDTH, ...laterSizes.map((later) => tileCounts(later, tile.level)).filter((counts) => counts.full === tile.index && counts.partialWidth > tile.width).map((counts) => counts.partialWidth)];
    for (const width of widths) {
      const wider = await load({ ...tile, width });
      if (wider && wider.length === width * 32) return wider.subarray(0, tile.width * 32);
    }
    return undefined;
  };
  try {
    const compact = await CompactRange.fromSource(new TileSource(size, prefixOf));
    const tiles = await TileBuilder.fromTiles(size, prefixOf);
    return { compact, tiles };
  } catch {
    return undefined;
  }
}
