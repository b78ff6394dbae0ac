import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { leafHash } from './merkle-hash.ts';
import { MerkleLevels, consistencyProof, inclusionProof, treeRoot } from './merkle-proofs.ts';
import { type Tile, TileBuilder, TileSource, tileCounts, tilePath } from './tiles.ts';

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
