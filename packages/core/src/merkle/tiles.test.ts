import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { leafHash } from './merkle-hash.ts';
import { CompactRange, MerkleLevels, consistencyProof, inclusionProof, treeRoot } from './merkle-proofs.ts';
import { type Tile, TileBuilder, type TileId, TileSource, perfectRoot, tileCounts, tilePath } from './tiles.ts';

const toHex = (value: Uint8Array): string => Buffer.from(value).toString('hex');

describe('tlog tiles', () => {
  it('encodes tile paths as c2sp.org/tlog-tiles does', () => {
    expect(tilePath({ level: 0, index: 1234067, width: 256 })).toBe('0/x001/x234/067');
    expect(tilePath({ level: 2, index: 0, width: 256 })).toBe('2/000');
    expect(tilePath({ level: 1, index: 5, width: 17 })).toBe('1/005.p/17');
    expect(tilePath({ level: 0, index: 1000, width: 256 })).toBe('0/x001/000');
    expect(() => tilePath({ level: 0, index: -1, width: 256 })).toThrow(RangeError);
    expect(() => tilePath({ level: 0, index: 0, width: 0 })).toThrow(RangeError);
    expect(() => tilePath({ level: 64, index: 0, width: 1 })).toThrow(RangeError);
  });

  it('builds the same tiles with the level-0 roots a compact range completes, from the start and after a restore', async () => {
    const leaves = Array.from({ length: 70_000 }, (_, index) => leafHash(Buffer.from(`leaf ${index}`)));
    const plain = new TileBuilder();
    const stored = new Map<string, Uint8Array>();
    const plainTiles: Tile[] = [];
    for (const leaf of leaves) plainTiles.push(...plain.append(leaf));
    for (const tile of [...plainTiles, ...plain.partialTiles()]) stored.set(tilePath(tile), tile.bytes);
    const compact = new CompactRange();
    const shared = new TileBuilder();
    const sharedTiles: Tile[] = [];
    let roots = 0;
    for (const leaf of leaves) {
      const root = compact.append(leaf, 8);
      if (root) roots++;
      sharedTiles.push(...shared.append(leaf, root));
    }
    expect(roots).toBe(Math.floor(70_000 / 256));
    expect(sharedTiles.map((tile) => [tilePath(tile), toHex(tile.bytes)])).toEqual(plainTiles.map((tile) => [tilePath(tile), toHex(tile.bytes)]));
    // Resumed at an unaligned size from stored tiles (as verify --since does), then fed the rest.
    for (const size of [1000, 65_537, 69_999]) {
      const { tiles: restoredTiles, compact: restoredCompact } = await restore(size);
      const after: Tile[] = [];
      for (const leaf of leaves.slice(size)) after.push(...restoredTiles.append(leaf, restoredCompact.append(leaf, 8)));
      expect(after.map((tile) => toHex(tile.bytes)), `from ${size}`).toEqual(plainTiles.filter((tile) => (tile.index + 1) * 256 ** (tile.level + 1) > size).map((tile) => toHex(tile.bytes)));
      expect(toHex(restoredCompact.root())).toBe(toHex(compact.root()));
    }

    async function restore(size: number): Promise<{ tiles: TileBuilder; compact: CompactRange }> {
      const prefix = new TileBuilder();
      const prefixTiles: Tile[] = [];
      for (const leaf of leaves.slice(0, size)) prefixTiles.push(...prefix.append(leaf));
      const at = new Map<string, Uint8Array>();
      for (const tile of [...prefixTiles, ...prefix.partialTiles()]) at.set(tilePath(tile), tile.bytes);
      const load = async (tile: TileId): Promise<Uint8Array | undefined> => at.get(tilePath(tile)) ?? stored.get(tilePath(tile));
      return { tiles: await TileBuilder.fromTiles(size, load), compact: await CompactRange.fromSource(new TileSource(size, load)) };
    }
  });

  it('takes whole level-0 tiles with roots hashed elsewhere exactly as their leaves one by one', () => {
    const leaves = Array.from({ length: 256 * 260 + 77 }, (_, index) => leafHash(Buffer.from(`leaf ${index}`)));
    const oneByOne = { range: new CompactRange(), tiles: new TileBuilder(), built: [] as Tile[] };
    const whole = { range: new CompactRange(), tiles: new TileBuilder(), built: [] as Tile[] };
    for (const leaf of leaves) {
      const root = oneByOne.range.append(leaf, 8);
      oneByOne.built.push(...oneByOne.tiles.append(leaf, oneByOne.range.size === oneByOne.tiles.size + 1 ? root : undefined));
    }
    // Whole tiles, with a few leaf-by-leaf stretches between them (a signed size inside a tile).
    for (let index = 0; index < leaves.length; ) {
      if (index % 256 === 0 && index + 256 <= leaves.length && index % (256 * 7) !== 0) {
        const bytes = Buffer.concat(leaves.slice(index, index + 256));
        const root = perfectRoot(bytes, 0, 256);
        whole.range.appendSubtree(8, root);
        whole.built.push(...whole.tiles.appendTile(bytes, root));
        index += 256;
      } else {
        const leaf = leaves[index++] as Uint8Array;
        const root = whole.range.append(leaf, 8);
        whole.built.push(...whole.tiles.append(leaf, whole.range.size === whole.tiles.size + 1 ? root : undefined));
      }
    }
    expect(whole.range.size).toBe(leaves.length);
    expect(whole.range.root()).toEqual(oneByOne.range.root());
    expect(whole.tiles.size).toBe(leaves.length);
    expect(whole.built).toEqual(oneByOne.built);
    expect(whole.built.filter((tile) => tile.level === 1)).toHaveLength(1);
    expect(whole.tiles.partialTiles()).toEqual(oneByOne.tiles.partialTiles());
    // Only at a tile boundary.
    const misaligned = new CompactRange();
    misaligned.append(leaves[0] as Uint8Array);
    expect(() => {
      misaligned.appendSubtree(8, leaves[1] as Uint8Array);
    }).toThrow(RangeError);
    const builder = new TileBuilder();
    builder.append(leaves[0] as Uint8Array);
    expect(() => builder.appendTile(Buffer.concat(leaves.slice(0, 256)), leaves[1] as Uint8Array)).toThrow(RangeError);
  });

  it('splits a tree of 70,000 leaves into the tiles the spec lists', () => {
    const builder = new TileBuilder();
    const full: Tile[] = [];
    for (let index = 0; index < 70_000; index++) full.push(...builder.append(leafHash(Buffer.from(String(index)))));
    expect(full.filter((tile) => tile.level === 0)).toHaveLength(273);
    expect(full.filter((tile) => tile.level === 1)).toHaveLength(1);
    expect(builder.partialTiles().map(({ level, index, width }) => ({ level, index, width }))).toEqual([
      { level: 0, index: 273, width: 112 },
      { level: 1, index: 1, width: 17 },
      { level: 2, index: 0, width: 1 },
    ]);
    expect(tileCounts(70_000, 0)).toEqual({ full: 273, partialWidth: 112 });
    expect(tileCounts(256, 1)).toEqual({ full: 0, partialWidth: 1 });
  });

  it('gives the same roots and proofs from tiles as from the full tree, at every checkpointed size', async () => {
    const builder = new TileBuilder();
    const levels = new MerkleLevels();
    const stored = new Map<string, Uint8Array>();
    const sizes = [1, 255, 256, 257, 5000, 65_536, 65_537, 70_001];
    const load = async (tile: Tile | { level: number; index: number; width: number }) => stored.get(tilePath(tile));
    let previous = 0;
    for (const size of sizes) {
      for (let index = previous; index < size; index++) {
        const leaf = leafHash(randomBytes(16));
        levels.append(leaf);
        for (const tile of builder.append(leaf)) stored.set(tilePath(tile), tile.bytes);
      }
      for (const tile of builder.partialTiles()) stored.set(tilePath(tile), tile.bytes);
      const source = new TileSource(size, load);
      expect(toHex(await treeRoot(source)), `root at ${size}`).toBe(toHex(await treeRoot(levels, size)));
      for (const leafIndex of [0, size - 1, Math.floor(size / 3)]) {
        expect((await inclusionProof(source, leafIndex)).map(toHex), `inclusion ${leafIndex}/${size}`).toEqual((await inclusionProof(levels, leafIndex, size)).map(toHex));
      }
      if (previous > 0) expect((await consistencyProof(source, previous)).map(toHex)).toEqual((await consistencyProof(levels, previous, size)).map(toHex));
      previous = size;
    }
  });

  it('reports a missing or wrong-sized tile clearly', async () => {
    const source = new TileSource(300, async () => new Uint8Array(10));
    await expect(treeRoot(source)).rejects.toThrow(/tile 1\/000.p\/1 is 10 bytes, not 32/);
    const empty = new TileSource(300, async () => undefined);
    await expect(inclusionProof(empty, 3)).rejects.toThrow(/missing/);
  });
});
