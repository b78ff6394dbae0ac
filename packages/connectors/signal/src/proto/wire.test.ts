import { describe, expect, it } from 'vitest';
import { FieldReader, ProtoWriter, readFields } from './wire.ts';

const invalid = (bytes: number[] | Uint8Array) => () => readFields(Uint8Array.from(bytes), 'Test');

describe('protobuf wire reader', () => {
  it('round-trips every wire type it supports, keeping unknown fields readable', () => {
    const bytes = new ProtoWriter()
      .uint(1, 150)
      .uint(2, 2n ** 64n - 1n)
      .fixed64(3, 0x0102030405060708n)
      .string(4, 'héllo')
      .bytes(5, Uint8Array.of(1, 2, 3))
      .bool(6, true)
      .uint(1, 151)
      .finish();
    const r = new FieldReader(bytes, 'Test');
    expect(r.number(1)).toBe(151); // last one wins
    expect(r.big(2)).toBe(2n ** 64n - 1n);
    expect(r.big(3)).toBe(0x0102030405060708n);
    expect(r.string(4)).toBe('héllo');
    expect([...(r.bytes(5) ?? [])]).toEqual([1, 2, 3]);
    expect(r.bool(6)).toBe(true);
    expect(r.numbers()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(r.string(99)).toBeUndefined();
  });

  it('reads packed and unpacked repeated varints alike', () => {
    const packed = new ProtoWriter().bytes(2, Uint8Array.of(0x01, 0x96, 0x01)).uint(2, 7).finish();
    expect(new FieldReader(packed, 'Test').repeatedNumbers(2)).toEqual([1, 150, 7]);
  });

  it('rejects truncated, malformed and hostile input with SIGNAL_PROTOBUF_INVALID', () => {
    const cases: [string, number[]][] = [
      ['truncated varint', [0x08, 0x96]],
      ['varint longer than 10 bytes', [0x08, ...Array<number>(11).fill(0xff), 0x01]],
      ['varint past 64 bits', [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]],
      ['length beyond the buffer', [0x0a, 0x05, 0x01]],
      ['huge claimed length', [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]],
      ['group wire type', [0x0b]],
      ['end-group wire type', [0x0c]],
      ['field number zero', [0x00, 0x01]],
      ['truncated fixed64', [0x09, 1, 2, 3]],
      ['truncated fixed32', [0x0d, 1]],
    ];
    for (const [name, bytes] of cases) {
      expect(invalid(bytes), name).toThrow(expect.objectContaining({ code: 'SIGNAL_PROTOBUF_INVALID' }));
    }
  });

  it('rejects wrong wire types, invalid UTF-8 and unsafe integers when a field is read', () => {
    const r = new FieldReader(new ProtoWriter().uint(1, 5).bytes(2, Uint8Array.of(0xff, 0xfe)).uint(3, 2n ** 60n).finish(), 'Test');
    expect(() => r.bytes(1)).toThrow(/length-delimited/);
    expect(() => r.number(2)).toThrow(/numeric/);
    expect(() => r.string(2)).toThrow(/UTF-8/);
    expect(() => r.number(3)).toThrow(/safe integer/);
  });

  it('handles a large message of many fields without recursion', () => {
    const w = new ProtoWriter();
    for (let i = 0; i < 100_000; i++) w.uint(1 + (i % 50), i);
    expect(readFields(w.finish(), 'Test')).toHaveLength(100_000);
  });
});
