import { OffchannelError } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { TypedstreamError } from '../errors.ts';
import { decodeAttributedBody } from './attributed-body.ts';
import { MAX_TYPEDSTREAM_VALUES, REFERENCE_BASE, decodeTypedstream, typedstreamWorkLimit } from './typedstream-reader.ts';
import { encodeAttributedBody } from './typedstream-writer.ts';

const ascii = (text: string): number[] => [...new TextEncoder().encode(text)];
const HEADER = [4, 11, ...ascii('streamtyped'), 0x81, 0xe8, 0x03];
const PART = '__kIMMessagePartAttributeName';

/** One group with type `encoding` and the value bytes that follow it (none for `[0c]` arrays). */
const group = (encoding: string, ...values: number[]): number[] => [0x84, encoding.length, ...ascii(encoding), ...values];
const blob = (...bytes: number[]): Uint8Array => Uint8Array.from([...HEADER, ...bytes]);
/**
 * A byte-array group of `count` bytes. An array's count may not exceed the bytes left, so a
 * bomb needs this much input after it; the review's 150-byte example has it.
 */
const padding = (count: number): number[] => group(`[${count}c]`, ...new Array<number>(count).fill(0x20));

/**
 * A typedstream written by hand, numbering objects and shared strings as the format does, so
 * tests can write what our fixture writer never would: NSArrays of back-references.
 */
class HandWrittenStream {
  readonly #out: number[] = [...HEADER];
  readonly #shared = new Map<string, number>();
  readonly #classes = new Map<string, number>();
  #objects = 0;

  int(value: number): void {
    if (value >= -110 && value <= 127) this.#out.push(value & 0xff);
    else this.#out.push(0x81, value & 0xff, (value >> 8) & 0xff);
  }

  reference(index: number): void {
    this.int(index + REFERENCE_BASE);
  }

  nil(): void {
    this.#out.push(0x85);
  }

  shared(value: string): void {
    const known = this.#shared.get(value);
    if (known !== undefined) { this.reference(known); return; }
    this.#out.push(0x84);
    this.int(value.length);
    this.#out.push(...ascii(value));
    this.#shared.set(value, this.#shared.size);
  }

  group(encoding: string, write: () => void): void {
    this.shared(encoding);
    write();
  }

  /** A new object; returns its number for later references. */
  object(chain: readonly string[], write: () => void): number {
    this.#out.push(0x84);
    const index = this.#objects++;
    for (const name of chain) {
      const known = this.#classes.get(name);
      if (known !== undefined) {
        this.reference(known);
        break;
      }
      this.#out.push(0x84);
      this.shared(name);
      this.int(0);
      this.#classes.set(name, this.#objects++);
      if (name === chain.at(-1)) this.nil();
    }
    write();
    this.#out.push(0x86);
    return index;
  }

  string(text: string): number {
    return this.object(['NSString', 'NSObject'], () => {
      this.group('+', () => {
        this.int(text.length);
        this.#out.push(...ascii(text));
      });
    });
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.#out);
  }
}

/** An attributed string "ab" whose one run has the attribute `k` = whatever `value` writes. */
function bodyWithAttribute(value: (ts: HandWrittenStream) => void): Uint8Array {
  const ts = new HandWrittenStream();
  ts.group('@', () => {
    ts.object(['NSAttributedString', 'NSObject'], () => {
      ts.group('@', () => ts.string('ab'));
      ts.group('iI', () => {
        ts.int(1);
        ts.int(2);
      });
      ts.group('@', () => {
        ts.object(['NSDictionary', 'NSObject'], () => {
          ts.group('i', () => { ts.int(1); });
          ts.group('@', () => ts.string('k'));
          ts.group('@', () => { value(ts); });
        });
      });
    });
  });
  return ts.bytes();
}

/** `levels` NSArrays, each holding `width` copies of the one below: the first new, the rest references. */
function arrayOfReferences(ts: HandWrittenStream, levels: number, width: number): number {
  return ts.object(['NSArray', 'NSObject'], () => {
    ts.group('i', () => { ts.int(width); });
    let inner: number | undefined;
    for (let i = 0; i < width; i++) {
      ts.group('@', () => {
        if (levels === 0) ts.nil();
        else if (inner === undefined) inner = arrayOfReferences(ts, levels - 1, width);
        else ts.reference(inner);
      });
    }
  });
}

function typedError(read: () => unknown): TypedstreamError {
  try {
    read();
  } catch (error) {
    expect(error).toBeInstanceOf(TypedstreamError);
    expect(OffchannelError.hasCode(error, 'TYPEDSTREAM_INVALID') || OffchannelError.hasCode(error, 'TYPEDSTREAM_TRUNCATED')).toBe(true);
    return error as TypedstreamError;
  }
  throw new Error('decoded without an error');
}

describe('typedstreamWorkLimit', () => {
  it('grows with the input and has a fixed ceiling', () => {
    expect(typedstreamWorkLimit(0)).toBe(4096);
    expect(typedstreamWorkLimit(1000)).toBe(8096);
    expect(typedstreamWorkLimit(10 ** 9)).toBe(MAX_TYPEDSTREAM_VALUES);
  });
});

describe('typedstream decoding has bounded work', () => {
  const bombs: Record<string, Uint8Array> = {
    // The review's example: 10^8 empty arrays from about 150 bytes.
    'nested empty arrays [100[100[100[100[0c]]]]]': blob(...group('[100[100[100[100[0c]]]]]'), ...padding(100)),
    'nested empty arrays [100[100[100[0c]]]] (10^6 values)': blob(...group('[100[100[100[0c]]]]'), ...padding(100)),
    'arrays of structs of arrays': blob(...group('[100{a=[100{b=[100[0c]]}]}]'), ...padding(100)),
    'a struct of empty arrays, many times': blob(...group(`[1000{s=${'[0c]'.repeat(20)}}]`), ...padding(1000)),
    'an empty-array encoding reused by one-byte references': blob(...group('[30[30[0c]]]'), ...Array.from({ length: 1000 }, () => 0x92), ...padding(30)),
    'arrays of arrays inside nested objects': blob(
      ...group('@'), 0x84, 0x84, 0x84, 0x01, ...ascii('A'), 0x00, 0x85,
      ...group('@'), 0x84, 0x93,
      ...group('[200[200[0c]]]'), 0x86, 0x86,
      ...padding(200),
    ),
  };
  for (const [name, bytes] of Object.entries(bombs)) {
    it(`rejects ${name} (${bytes.length} bytes) with a typed error, not out of memory`, () => {
      const error = typedError(() => decodeTypedstream(bytes));
      expect(error.message).toMatch(/more values than a blob of \d+ bytes may hold/);
      expect(() => decodeAttributedBody(bytes)).toThrow(TypedstreamError);
    });
  }

  it('rejects huge declared counts over short input and deep struct nesting', () => {
    typedError(() => decodeTypedstream(blob(...group('[1000000000[0c]]'))));
    typedError(() => decodeTypedstream(blob(...group('[1000000000{a=[0c]}]'))));
    typedError(() => decodeTypedstream(blob(...group(`${'{a='.repeat(40)}i${'}'.repeat(40)}`), 0x01)));
    typedError(() => decodeTypedstream(blob(...group('[16777216c]'), 0x00)));
  });

  it('still reads honest values right up to the limit', () => {
    const ints = Array.from({ length: 5000 }, (_, i) => i % 100);
    const [values] = decodeTypedstream(blob(...group('[5000i]'), ...ints));
    expect(values?.values[0]).toEqual(ints);
    expect(decodeTypedstream(blob(...group('[10[10[0c]]]'), ...padding(10)))[0]?.values[0]).toHaveLength(10);
  });

  it('decodes or rejects with a typed error every truncation of a rich real blob', () => {
    const whole = encodeAttributedBody('\uFFFC see https://x.example @Bob', {
      runs: [
        { length: 1, attributes: { [PART]: 0, __kIMFileTransferGUIDAttributeName: 'at_0_G', __kIMFilenameAttributeName: 'a.jpg' } },
        { length: 5, attributes: { [PART]: 1 } },
        { length: 17, attributes: { [PART]: 1, __kIMLinkAttributeName: { url: 'https://x.example' }, data: Uint8Array.from([1, 2, 3]), ratio: 0.5, big: 2 ** 40 } },
        { length: 5, attributes: { [PART]: 1, __kIMMentionConfirmedMention: 'bob@client.example' } },
      ],
    });
    expect(decodeAttributedBody(whole).text).toBe('\uFFFC see https://x.example @Bob');
    let rejected = 0;
    for (let length = 0; length < whole.length; length++) {
      const prefix = whole.subarray(0, length);
      for (const read of [() => decodeTypedstream(prefix), () => decodeAttributedBody(prefix)]) {
        try {
          read();
        } catch (error) {
          expect(error, `length ${length}`).toBeInstanceOf(TypedstreamError);
          rejected++;
        }
      }
    }
    expect(rejected).toBeGreaterThan(whole.length);
  });
});

describe('attribute values expanded from back-references have bounded work', () => {
  it('reads an attribute written by hand (the builder writes what Messages writes)', () => {
    expect(decodeAttributedBody(bodyWithAttribute((ts) => ts.string('v'))).runs).toEqual([{ start: 0, length: 2, attributes: { k: 'v' } }]);
    const small = decodeAttributedBody(bodyWithAttribute((ts) => arrayOfReferences(ts, 1, 20)));
    expect(small.runs[0]?.attributes['k']).toEqual(Array.from({ length: 20 }, () => Array.from({ length: 20 }, () => null)));
  });

  it('rejects arrays of references to arrays of references (exponential copies) with a typed error', () => {
    for (const [levels, width] of [[3, 20], [6, 50], [15, 100]] as const) {
      const bytes = bodyWithAttribute((ts) => arrayOfReferences(ts, levels, width));
      expect(bytes.length).toBeLessThan(4000);
      expect(typedError(() => decodeAttributedBody(bytes)).message).toMatch(/expand to more copies than the blob may hold/);
    }
  });

  it('decodes each string once however often it is referenced', () => {
    const long = 'L'.repeat(10_000);
    const bytes = bodyWithAttribute((ts) => {
      ts.object(['NSArray', 'NSObject'], () => {
        ts.group('i', () => { ts.int(1000); });
        let first: number | undefined;
        for (let i = 0; i < 1000; i++) {
          ts.group('@', () => {
            if (first === undefined) first = ts.string(long);
            else ts.reference(first);
          });
        }
      });
    });
    const values = decodeAttributedBody(bytes).runs[0]?.attributes['k'] as string[];
    expect(values).toHaveLength(1000);
    expect(values.every((value) => value === long)).toBe(true);
  });
});
