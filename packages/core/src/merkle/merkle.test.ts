import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EMPTY_ROOT, leafHash, nodeHash } from './merkle-hash.ts';
import { CompactRange, MerkleLevels, consistencyProof, inclusionProof, treeRoot } from './merkle-proofs.ts';
import { verifyConsistency, verifyInclusion } from './verify-proofs.ts';

const hex = (value: string): Uint8Array => Uint8Array.from(Buffer.from(value, 'hex'));
const toHex = (value: Uint8Array): string => Buffer.from(value).toString('hex');

// transparency-dev/merkle test vectors (RFC 6962 / RFC 9162 hashing): the 8 leaves and the
// roots of the trees of their first 0–8 leaves.
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(hex);
// The published inclusion proofs: [leaf index, tree size, proof].
const INCLUSION: [number, number, string[]][] = [
  [0, 8, ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4']],
  [5, 8, ['bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7']],
  [2, 3, ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125']],
  [1, 5, ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b']],
];
// The published consistency proofs: [first size, second size, proof].
const CONSISTENCY: [number, number, string[]][] = [
  [1, 8, ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7', '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4']],
  [6, 8, ['0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a', 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7']],
  [2, 5, ['5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e', 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b']],
  [6, 7, ['0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a', 'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f', 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7']],
];

function tree(leaves: readonly Uint8Array[]): MerkleLevels {
  const levels = new MerkleLevels();
  for (const leaf of leaves) levels.append(leafHash(leaf));
  return levels;
}

/** Ways to spoil a valid proof (after the transparency-dev verifier tests). */
function corruptions(proof: Uint8Array[]): [string, Uint8Array[]][] {
  const out: [string, Uint8Array[]][] = [
    ['trailing garbage', [...proof, new Uint8Array(32)]],
    ['preceding garbage', [new Uint8Array(32), ...proof]],
    ['short element', [...proof.slice(0, -1), new Uint8Array(31)]],
  ];
  if (proof.length > 0) out.push(['removed element', proof.slice(0, -1)]);
  proof.forEach((_, index) => {
    const flipped = proof.map((hash) => Uint8Array.from(hash));
    const element = flipped[index] as Uint8Array;
    element[0] = (element[0] as number) ^ 0x10;
    out.push([`flipped bit in element ${index}`, flipped]);
  });
  return out;
}

describe('RFC 9162 Merkle tree', () => {
  it('reproduces the published roots for sizes 0–8', async () => {
    expect(toHex(EMPTY_ROOT)).toBe(toHex(ROOTS[0] as Uint8Array));
    for (let size = 0; size <= 8; size++) expect(toHex(await treeRoot(tree(LEAVES.slice(0, size)))), `size ${size}`).toBe(toHex(ROOTS[size] as Uint8Array));
  });

  it('reproduces the published inclusion proofs byte for byte, and they verify', async () => {
    const levels = tree(LEAVES);
    for (const [index, size, expected] of INCLUSION) {
      const proof = await inclusionProof(levels, index, size);
      expect(proof.map(toHex), `leaf ${index} of ${size}`).toEqual(expected);
      expect(verifyInclusion(index, size, leafHash(LEAVES[index] as Uint8Array), proof, ROOTS[size] as Uint8Array)).toBe(true);
    }
  });

  it('reproduces the published consistency proofs byte for byte, and they verify', async () => {
    const levels = tree(LEAVES);
    for (const [first, second, expected] of CONSISTENCY) {
      const proof = await consistencyProof(levels, first, second);
      expect(proof.map(toHex), `${first} → ${second}`).toEqual(expected);
      expect(verifyConsistency(first, second, ROOTS[first] as Uint8Array, ROOTS[second] as Uint8Array, proof)).toBe(true);
    }
  });

  it('builds and verifies every inclusion proof of trees of 1–8 leaves, and rejects every corruption', async () => {
    const levels = tree(LEAVES);
    let checked = 0;
    for (let size = 1; size <= 8; size++) {
      const root = ROOTS[size] as Uint8Array;
      for (let index = 0; index < size; index++) {
        const leaf = leafHash(LEAVES[index] as Uint8Array);
        const proof = await inclusionProof(levels, index, size);
        expect(verifyInclusion(index, size, leaf, proof, root), `${index}/${size}`).toBe(true);
        expect(verifyInclusion(index + 1, size, leaf, proof, root)).toBe(false);
        if (index > 0) expect(verifyInclusion(index - 1, size, leaf, proof, root)).toBe(false);
        expect(verifyInclusion(index, size * 2, leaf, proof, root)).toBe(false);
        expect(verifyInclusion(index, size, leafHash(new Uint8Array([9])), proof, root)).toBe(false);
        expect(verifyInclusion(index, size, leaf, proof, EMPTY_ROOT)).toBe(false);
        for (const [name, bad] of corruptions(proof)) expect(verifyInclusion(index, size, leaf, bad, root), `${index}/${size} ${name}`).toBe(false);
        checked++;
      }
    }
    expect(checked).toBe(36);
  });

  it('builds and verifies every consistency proof between trees of 1–8 leaves, and rejects every corruption', async () => {
    const levels = tree(LEAVES);
    let checked = 0;
    for (let second = 1; second <= 8; second++) {
      for (let first = 1; first <= second; first++) {
        const proof = await consistencyProof(levels, first, second);
        const [r1, r2] = [ROOTS[first] as Uint8Array, ROOTS[second] as Uint8Array];
        expect(verifyConsistency(first, second, r1, r2, proof), `${first} → ${second}`).toBe(true);
        checked++;
        if (first === second) {
          expect(proof).toEqual([]);
          expect(verifyConsistency(first, second, r1, ROOTS[first - 1] as Uint8Array, proof)).toBe(false);
          continue;
        }
        expect(verifyConsistency(first, second, r2, r1, proof)).toBe(false);
        expect(verifyConsistency(first, second, r1, r2, [])).toBe(false);
        expect(verifyConsistency(second, first, r1, r2, proof)).toBe(false);
        if (first > 1) expect(verifyConsistency(first - 1, second, r1, r2, proof)).toBe(false);
        // (Sizes themselves are authenticated by the signed checkpoint; a proof only fixes the path shape.)
        expect(verifyConsistency(first, second * 2, r1, r2, proof)).toBe(false);
        for (const [name, bad] of corruptions(proof)) expect(verifyConsistency(first, second, r1, r2, bad), `${first} → ${second} ${name}`).toBe(false);
      }
    }
    expect(checked).toBe(36);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, ROOTS[5] as Uint8Array, [])).toBe(true);
  });

  it('agrees with an independent recursive MTH on large random trees, for roots and proofs', async () => {
    const recursiveRoot = (hashes: Uint8Array[]): Uint8Array => {
      if (hashes.length === 0) return EMPTY_ROOT;
      if (hashes.length === 1) return hashes[0] as Uint8Array;
      let k = 1;
      while (k * 2 < hashes.length) k *= 2;
      return nodeHash(recursiveRoot(hashes.slice(0, k)), recursiveRoot(hashes.slice(k)));
    };
    for (const size of [1, 2, 3, 255, 256, 257, 1000, 4097, 10_007]) {
      const leaves = Array.from({ length: size }, () => leafHash(randomBytes(24)));
      const levels = new MerkleLevels();
      const compact = new CompactRange();
      for (const leaf of leaves) {
        levels.append(leaf);
        compact.append(leaf);
      }
      const root = recursiveRoot(leaves);
      expect(toHex(await treeRoot(levels)), `size ${size}`).toBe(toHex(root));
      expect(toHex(compact.root())).toBe(toHex(root));
      for (let probe = 0; probe < 25; probe++) {
        const index = Math.floor(Math.random() * size);
        expect(verifyInclusion(index, size, leaves[index] as Uint8Array, await inclusionProof(levels, index), root)).toBe(true);
        const first = 1 + Math.floor(Math.random() * size);
        const firstRoot = recursiveRoot(leaves.slice(0, first));
        expect(toHex(await treeRoot(levels, first))).toBe(toHex(firstRoot));
        expect(verifyConsistency(first, size, firstRoot, root, await consistencyProof(levels, first))).toBe(true);
      }
    }
  });

  it('handles sizes beyond 2^32 without 32-bit shift errors', () => {
    // A proof for the last leaf of a 2^33-leaf tree: 33 siblings, all taken from the left.
    const size = 2 ** 33;
    const index = size - 1;
    let root = leafHash(new Uint8Array([1]));
    const proof: Uint8Array[] = [];
    for (let level = 0; level < 33; level++) {
      const sibling = leafHash(new Uint8Array([level, 7]));
      proof.push(sibling);
      root = nodeHash(sibling, root);
    }
    expect(verifyInclusion(index, size, leafHash(new Uint8Array([1])), proof, root)).toBe(true);
    expect(verifyInclusion(index - 2 ** 32, size, leafHash(new Uint8Array([1])), proof, root)).toBe(false);
  });

  it('rejects out-of-range requests with clear errors', async () => {
    const levels = tree(LEAVES.slice(0, 5));
    await expect(inclusionProof(levels, 5, 5)).rejects.toThrow(RangeError);
    await expect(inclusionProof(levels, 0, 6)).rejects.toThrow(/outside 0–5/);
    await expect(consistencyProof(levels, 6, 5)).rejects.toThrow(RangeError);
    expect(verifyInclusion(-1, 5, EMPTY_ROOT, [], EMPTY_ROOT)).toBe(false);
    expect(verifyInclusion(0, Number.NaN, EMPTY_ROOT, [], EMPTY_ROOT)).toBe(false);
    expect(verifyConsistency(1, 2, EMPTY_ROOT, EMPTY_ROOT, Array.from({ length: 100 }, () => EMPTY_ROOT))).toBe(false);
  });
});
