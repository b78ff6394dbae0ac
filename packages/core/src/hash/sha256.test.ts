import { describe, expect, it } from 'vitest';
import { ZERO_HASH, isSha256Hex, sha256Hex } from './sha256.ts';

describe('isSha256Hex', () => {
  it('accepts 64 lowercase hex characters', () => {
    expect(isSha256Hex(ZERO_HASH)).toBe(true);
    expect(isSha256Hex(sha256Hex(new Uint8Array([1, 2, 3])))).toBe(true);
    expect(isSha256Hex('0123456789abcdef'.repeat(4))).toBe(true);
  });

  it('refuses anything else, including the characters next to the hex ranges', () => {
    const good = sha256Hex(new Uint8Array([1]));
    for (const value of [good.toUpperCase(), good.slice(1), `${good}0`, '', undefined, null, 64, [good], { length: 64 }]) {
      expect(isSha256Hex(value), JSON.stringify(value) ?? 'undefined').toBe(false);
    }
    for (const character of ['/', ':', '`', 'g', 'A', 'F', ' ', '\u0660', '\uff10']) {
      for (const at of [0, 31, 63]) expect(isSha256Hex(good.slice(0, at) + character + good.slice(at + 1)), `${character} at ${at}`).toBe(false);
    }
  });

  it('agrees with the pattern /^[0-9a-f]{64}$/ on every character code at every end', () => {
    const pattern = /^[0-9a-f]{64}$/;
    for (let code = 0; code < 0x10000; code += code < 0x200 ? 1 : 97) {
      const character = String.fromCharCode(code);
      for (const value of [character + ZERO_HASH.slice(1), ZERO_HASH.slice(1) + character]) expect(isSha256Hex(value)).toBe(pattern.test(value));
    }
  });
});
