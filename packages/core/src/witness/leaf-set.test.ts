import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LeafSet } from './leaf-set.ts';

const sha = (text: string): Uint8Array => new Uint8Array(createHash('sha256').update(text).digest());

describe('LeafSet', () => {
  it('answers membership exactly for many hashes, and ignores a second add', () => {
    const set = new LeafSet(20_000);
    for (let i = 0; i < 20_000; i += 2) set.add(sha(`entry ${i}`));
    set.add(sha('entry 0'));
    expect(set.size).toBe(10_000);
    for (let i = 0; i < 20_000; i++) expect(set.has(sha(`entry ${i}`))).toBe(i % 2 === 0);
  });

  it('copies what it is given: a view into a reused buffer does not change it', () => {
    const set = new LeafSet(2);
    const buffer = new Uint8Array(64);
    buffer.set(sha('a'), 0);
    set.add(buffer.subarray(0, 32));
    buffer.set(sha('b'), 0);
    expect(set.has(sha('a'))).toBe(true);
    expect(set.has(sha('b'))).toBe(false);
  });

  it('stays exact when every hash shares the same bytes but one (probing, not collision)', () => {
    // Hashes equal in 31 bytes land in the same or neighbouring slots at every offset.
    const set = new LeafSet(200);
    const hash = (n: number): Uint8Array => {
      const bytes = new Uint8Array(32).fill(7);
      bytes[31] = n;
      return bytes;
    };
    for (let n = 0; n < 200; n++) set.add(hash(n));
    expect(set.size).toBe(200);
    for (let n = 0; n < 256; n++) expect(set.has(hash(n))).toBe(n < 200);
  });

  it('refuses a hash of the wrong length and more hashes than its capacity', () => {
    const set = new LeafSet(1);
    expect(() => { set.add(new Uint8Array(31)); }).toThrow(RangeError);
    expect(() => set.has(new Uint8Array(33))).toThrow(RangeError);
    set.add(sha('one'));
    expect(() => { set.add(sha('two')); }).toThrow(/full/);
    expect(() => new LeafSet(-1)).toThrow(RangeError);
    expect(new LeafSet(0).has(sha('x'))).toBe(false);
  });
});
