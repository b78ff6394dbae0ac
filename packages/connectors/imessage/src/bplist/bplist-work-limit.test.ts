import { describe, expect, it } from 'vitest';
import { BplistError } from '../errors.ts';
import { parseSummaryInfo } from '../summary-info.ts';
import { encodeAttributedBody } from '../typedstream/typedstream-writer.ts';
import { bplistWorkLimit, parseBplist } from './bplist-reader.ts';
import { encodeBplist } from './bplist-writer.ts';

const REF_SIZE = 2;

/**
 * A bplist written by hand from its objects' bytes (object references are 2 bytes), so tests
 * can share children and lie about lengths, which our writer never does.
 */
function handPlist(objects: readonly (readonly number[])[], root = 0): Uint8Array {
  const body: number[] = [...new TextEncoder().encode('bplist00')];
  const offsets: number[] = [];
  for (const object of objects) {
    offsets.push(body.length);
    body.push(...object);
  }
  const table = body.length;
  for (const offset of offsets) body.push(...bigEndian(offset, 4));
  body.push(0, 0, 0, 0, 0, 0, 4, REF_SIZE, ...bigEndian(objects.length, 8), ...bigEndian(root, 8), ...bigEndian(table, 8));
  return Uint8Array.from(body);
}

/** An object marker with its length: in the low nibble, or 0xF and an 8-byte integer. */
const marker = (type: number, length: number | bigint): number[] => (length < 15 ? [(type << 4) | Number(length)] : [(type << 4) | 0x0f, 0x13, ...bigEndian(length, 8)]);
const array = (refs: readonly number[]): number[] => [...marker(0xa, refs.length), ...refs.flatMap((ref) => bigEndian(ref, REF_SIZE))];
const dict = (keys: readonly number[], values: readonly number[]): number[] => [...marker(0xd, keys.length), ...[...keys, ...values].flatMap((ref) => bigEndian(ref, REF_SIZE))];
const ascii = (text: string): number[] => [...marker(0x5, text.length), ...new TextEncoder().encode(text)];
const utf16 = (text: string): number[] => [...marker(0x6, text.length), ...Array.from({ length: text.length }, (_, i) => [text.charCodeAt(i) >> 8, text.charCodeAt(i) & 0xff]).flat()];

function rejects(bytes: Uint8Array): BplistError {
  try {
    parseBplist(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(BplistError);
    return error as BplistError;
  }
  throw new Error('parsed without an error');
}

describe('bplistWorkLimit', () => {
  it('grows with the input and has a fixed ceiling', () => {
    expect(bplistWorkLimit(0)).toBe(4096);
    expect(bplistWorkLimit(1000)).toBe(20_096);
    expect(bplistWorkLimit(10 ** 9)).toBe(4_000_000);
  });
});

describe('binary plist decoding has bounded work', () => {
  it('reads containers that share a string (the writer behind real plists dedupes values)', () => {
    const bytes = handPlist([array(Array.from({ length: 30 }, () => 1)), ascii('shared key')]);
    expect(parseBplist(bytes)).toEqual(Array.from({ length: 30 }, () => 'shared key'));
  });

  const bombs: Record<string, Uint8Array> = {
    // 300 × 300 references to one 500-character string: 45 million characters from 2 kB.
    'a UTF-16 string shared by arrays of arrays': handPlist([array(Array.from({ length: 300 }, () => 1)), array(Array.from({ length: 300 }, () => 2)), utf16('ü'.repeat(500))]),
    'an ASCII string shared by arrays of arrays': handPlist([array(Array.from({ length: 30 }, () => 1)), array(Array.from({ length: 30 }, () => 2)), ascii('x'.repeat(2000))]),
    'a dictionary whose values share one long string': handPlist([
      dict(Array.from({ length: 40 }, (_, i) => 2 + i), Array.from({ length: 40 }, () => 1)),
      ascii('y'.repeat(3000)),
      ...Array.from({ length: 40 }, (_, i) => ascii(`k${i}`)),
    ]),
  };
  for (const [name, bytes] of Object.entries(bombs)) {
    it(`rejects ${name} (${bytes.length} bytes) with a typed error`, () => {
      expect(rejects(bytes).message).toMatch(/more work than a plist of \d+ bytes may cost/);
    });
  }

  const hostile: Record<string, Uint8Array> = {
    'arrays nested 40 deep': handPlist([...Array.from({ length: 40 }, (_, i) => array([i + 1])), [0x00]]),
    'a dictionary that holds itself': handPlist([dict([1], [0]), ascii('self')]),
    'a cycle through three arrays': handPlist([array([1]), array([2]), array([0])]),
    'an array claiming 2^40 elements': handPlist([[...marker(0xa, 2n ** 40n), 0, 1], [0x00]]),
    'a string claiming 2^50 characters': handPlist([[...marker(0x5, 2n ** 50n), 0x41]]),
    'UTF-16 claiming 2^52 characters': handPlist([[...marker(0x6, 2n ** 52n), 0, 0x41]]),
    'data longer than 2^53': handPlist([[...marker(0x4, 2n ** 60n), 0]]),
    'a dictionary claiming 2^31 entries': handPlist([[...marker(0xd, 2n ** 31n), 0, 1, 0, 1], ascii('k')]),
    'an object offset past the end': (() => {
      const bytes = handPlist([array([1]), [0x00]]);
      const view = new DataView(bytes.buffer);
      const table = Number(view.getBigUint64(bytes.length - 8));
      view.setUint32(table + 4, 0x7fff_ffff);
      return bytes;
    })(),
    'an offset table past the end': (() => {
      const bytes = handPlist([[0x00]]);
      new DataView(bytes.buffer).setBigUint64(bytes.length - 8, BigInt(bytes.length));
      return bytes;
    })(),
    'a reference past the object count': handPlist([array([7])]),
    'a root past the object count': handPlist([[0x00]], 3),
  };
  for (const [name, bytes] of Object.entries(hostile)) {
    it(`rejects ${name} with a typed error`, () => {
      rejects(bytes);
    });
  }

  it('decodes or rejects with a typed error every truncation of a summary with long values', () => {
    const whole = encodeBplist({ amc: 0, ec: { 0: [{ d: 785000000, t: encodeAttributedBody('First draft '.repeat(20)) }, { d: 785000030.5, t: encodeAttributedBody('Edit') }] }, name: 'é'.repeat(40), long: 'a'.repeat(300), otr: { 0: { lo: 0, le: 240 } }, rp: [0] });
    expect(parseSummaryInfo(whole).retractedParts).toEqual([0]);
    for (let length = 0; length < whole.length; length++) {
      expect(() => parseSummaryInfo(whole.subarray(0, length)), `length ${length}`).toThrow(BplistError);
    }
  });
});

function bigEndian(value: number | bigint, size: number): number[] {
  return Array.from({ length: size }, (_, i) => Number((BigInt(value) >> BigInt(8 * (size - 1 - i))) & 0xffn));
}
