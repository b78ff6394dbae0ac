/**
 * Internal: the Merkle state of a tree whose root was signed, rebuilt from its stored tiles
 * instead of hashing every leaf again — the recorder's start-up and incremental verification.
 * Nothing is used that the signed root does not vouch for: each tile is read once, and the
 * bytes that reproduce the root are the bytes the builder continues from.
 */
import { leafHash, sameHash } from './merkle-hash.ts';
import { CompactRange, inclusionProof } from './merkle-proofs.ts';
import { TileBuilder, type TileId, TileSource, tilePath } from './tiles.ts';
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
