import { describe, expect, it } from 'vitest';
import { KeyFingerprints, keyFingerprint } from './key-fingerprints.ts';

describe('KeyFingerprints', () => {
  it('finds a repeated key among 200,000, and no candidate for distinct keys', () => {
    const set = new KeyFingerprints();
    let candidates = 0;
    for (let seq = 1; seq <= 200_000; seq++) if (set.add(`message:{"chat":"c${seq % 97}","id":"m-${seq}"}`, seq)) candidates++;
    expect(candidates).toBe(0);
    expect(set.add('message:{"chat":"c5","id":"m-5"}', 200_001)).toEqual([5]);
    expect(set.size).toBe(200_001);
  });

  it('keeps every key when fingerprints collide, so a later real duplicate is still found', () => {
    const set = new KeyFingerprints(4, () => 42);
    expect(set.add('a', 1)).toBeUndefined();
    expect(set.add('b', 2)).toEqual([1]); // collision: the caller compares keys and finds none
    expect(set.add('b', 3)).toEqual([1, 2]); // the real duplicate of b is among the candidates
  });

  it('returns seqs beyond 2^32 exactly, and the smaller ones kept before them', () => {
    const set = new KeyFingerprints(4, () => 7);
    expect(set.add('a', 4_294_967_295)).toBeUndefined();
    expect(set.add('b', 4_294_967_296)).toEqual([4_294_967_295]);
    for (let seq = 4_294_967_297; seq < 4_294_967_307; seq++) set.add(`k${seq}`, seq); // grows the table
    expect(set.add('a', 2 ** 53 - 1)?.sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, index) => 4_294_967_295 + index));
  });

  it('fingerprints are non-zero integers below 2^53', () => {
    for (const key of ['', 'a', 'ä', '😀', 'x'.repeat(10_000)]) {
      const value = keyFingerprint(key);
      expect(Number.isSafeInteger(value) && value > 0).toBe(true);
    }
  });
});
