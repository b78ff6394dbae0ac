import { describe, expect, it } from 'vitest';
import { NonCanonicalJsonError } from '../errors/record-errors.ts';
import { canonicalBytes, canonicalMembers, canonicalRecordParts, canonicalize, canonicalizeRecord, parseCanonical } from './canonical-json.ts';

const encoder = new TextEncoder();

describe('RFC 8785 examples', () => {
  // RFC 8785 §3.2.2: the sample input (as JSON text) and its canonical output.
  const sampleInput = `{
    "numbers": [333333333.33333329, 1E30, 4.50,
                2e-3, 0.000000000000000000000000001],
    "string": "\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\"\\/",
    "literals": [null, true, false]
  }`;
  const sampleOutput = `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA'B\\"\\\\\\\\\\"/"}`;

  it('§3.2.2 reproduces the sample output', () => {
    expect(canonicalize(JSON.parse(sampleInput))).toBe(sampleOutput);
  });

  it('§3.2.4 reproduces the UTF-8 bytes of the sample output', () => {
    const hex = `7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
      75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
      5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
      65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
      5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
      30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d`.replace(/\s+/g, '');
    expect(Buffer.from(canonicalBytes(JSON.parse(sampleInput))).toString('hex')).toBe(hex);
  });

  it('§3.2.3 sorts keys by UTF-16 code units', () => {
    const input = `{
      "\\u20ac": "Euro Sign",
      "\\r": "Carriage Return",
      "\\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\\ud83d\\ude00": "Emoji: Grinning Face",
      "\\u0080": "Control",
      "\\u00f6": "Latin Small Letter O With Diaeresis"
    }`;
    // Parsing back into an object would reorder the integer-like key "1", so compare text.
    expect(canonicalize(JSON.parse(input))).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  // Appendix B: IEEE 754 bit patterns and their canonical text.
  const numbers: [string, string][] = [
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ];
  it.each(numbers)('Appendix B: %s serializes as %s', (bits, expected) => {
    const value = Buffer.from(bits, 'hex').readDoubleBE(0);
    expect(canonicalize(value)).toBe(expected);
    expect(canonicalize([value])).toBe(`[${expected}]`);
  });

  it.each([
    ['7fffffffffffffff', 'NaN'],
    ['7ff0000000000000', 'Infinity'],
  ])('Appendix B: %s (%s) is rejected', (bits) => {
    expect(() => canonicalize(Buffer.from(bits, 'hex').readDoubleBE(0))).toThrow(NonCanonicalJsonError);
  });
});

describe('canonicalize', () => {
  it('escapes control characters the ECMAScript way', () => {
    expect(canonicalize('\b\t\n\f\r\u0000\u001f"\\/\u007f\u2028')).toBe('"\\b\\t\\n\\f\\r\\u0000\\u001f\\"\\\\/\u007f\u2028"');
  });

  it('quotes every UTF-16 code unit as JSON.stringify does, short and long strings alike, and refuses lone surrogates', () => {
    for (let code = 0; code <= 0xffff; code++) {
      const unit = String.fromCharCode(code);
      for (const text of [unit, `ab${unit}cd`, `${'x'.repeat(70)}${unit}`]) {
        if (code >= 0xd800 && code <= 0xdfff) expect(() => canonicalize(text)).toThrow(NonCanonicalJsonError);
        else expect(canonicalize(text)).toBe(JSON.stringify(text));
      }
    }
    expect(canonicalize('\ud83d\ude00 ok')).toBe('"\ud83d\ude00 ok"');
  });

  it('sorts nested objects and keeps array order', () => {
    expect(canonicalize({ b: [3, { z: 1, a: 2 }], a: null, c: { y: true, x: false } })).toBe('{"a":null,"b":[3,{"a":2,"z":1}],"c":{"x":false,"y":true}}');
  });

  it.each([
    ['undefined', undefined],
    ['a function', () => 1],
    ['a bigint', 10n],
    ['a symbol', Symbol('x')],
    ['a lone high surrogate', '\ud800'],
    ['a lone low surrogate in a key', { '\udc00': 1 }],
    ['a Date', new Date(0)],
    ['a Uint8Array', new Uint8Array(1)],
    ['a Map', new Map()],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['undefined in an object', { a: undefined }],
  ])('rejects %s', (_name, value) => {
    expect(() => canonicalize(value)).toThrow(NonCanonicalJsonError);
  });

  it('rejects nesting deeper than 64 levels instead of overflowing the stack', () => {
    let deep: unknown = 1;
    for (let index = 0; index < 100_000; index++) deep = [deep];
    expect(() => canonicalize(deep)).toThrow(/deeper than 64/);
    let ok: unknown = 1;
    for (let index = 0; index < 63; index++) ok = [ok];
    expect(canonicalize(ok)).toBe(`${'['.repeat(63)}1${']'.repeat(63)}`);
  });

  it('accepts objects with a null prototype', () => {
    const value = Object.assign(Object.create(null) as object, { b: 1, a: 2 });
    expect(canonicalize(value)).toBe('{"a":2,"b":1}');
  });
});

describe('parseCanonical', () => {
  it('accepts canonical bytes and returns the value', () => {
    expect(parseCanonical(encoder.encode('{"a":[1,"x"],"b":{}}'))).toEqual({ a: [1, 'x'], b: {} });
  });

  it.each([
    ['whitespace', '{"a": 1}'],
    ['a trailing newline', '{"a":1}\n'],
    ['unsorted keys', '{"b":1,"a":2}'],
    ['a duplicate key', '{"a":1,"a":1}'],
    ['an unnecessary escape', '{"a":"\\u0041"}'],
    ['an escaped solidus', '{"a":"\\/"}'],
    ['uppercase hex escapes', '{"a":"\\u001F"}'],
    ['a non-canonical number', '{"a":1.0}'],
    ['an exponent form', '{"a":1E3}'],
    ['an escaped lone surrogate', '{"a":"\\ud800"}'],
    ['a byte-order mark', '\ufeff{"a":1}'],
    ['truncated JSON', '{"a":'],
    ['empty input', ''],
  ])('rejects %s', (_name, text) => {
    expect(() => parseCanonical(encoder.encode(text))).toThrow(NonCanonicalJsonError);
  });

  it('rejects invalid UTF-8', () => {
    expect(() => parseCanonical(Uint8Array.from([0x22, 0xc3, 0x28, 0x22]))).toThrow(/not valid UTF-8/);
    expect(() => parseCanonical(Uint8Array.from([0x22, 0xed, 0xa0, 0x80, 0x22]))).toThrow(/not valid UTF-8/);
  });
});

/** What a serializer made of `value`: its text, or the error's class and message. */
function outcome(serialize: (value: unknown) => string, value: unknown): string {
  try {
    return `ok ${serialize(value)}`;
  } catch (error) {
    return `${(error as Error).constructor.name} ${(error as Error).message}`;
  }
}

/** Hostile JSON-ish values from a seeded generator: shapes repeat, in every member order. */
function hostileValues(seed: number, count: number): unknown[] {
  let state = seed;
  const next = (): number => {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    return state / 2 ** 32;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const names = ['a', 'b', 'id', 'type', 'text', '10', '2', '', '\u00e9', '\ud83d\ude00', 'é', 'Z', '__proto__', 'constructor', 'a'.repeat(70), '\ud800'];
  const strings = ['', 'x', 'line\nbreak', '\u0000\u001f"\\', '\u2028', '\ud800', 'tail \udc00', '😀', 'é'.repeat(300), '"\n😀'.repeat(100), `${'x'.repeat(300)}\ud800`, 'y'.repeat(255), 'z'.repeat(256)];
  const scalars: unknown[] = [0, -0, 1, -1.5, 1e21, 5e-324, Number.NaN, Number.POSITIVE_INFINITY, true, false, null, undefined, 10n, Symbol('s'), () => 1, new Date(0), new Uint8Array(2), new Map()];
  const value = (depth: number): unknown => {
    const roll = next();
    if (depth > 6 || roll < 0.35) return next() < 0.5 ? pick(strings) : pick(scalars);
    if (roll < 0.5) return Array.from({ length: Math.floor(next() * 4) }, () => value(depth + 1));
    if (roll < 0.53) {
      let deep: unknown = {};
      for (let level = 0; level < 60 + Math.floor(next() * 8); level++) deep = next() < 0.5 ? [deep] : { a: deep };
      return deep;
    }
    if (roll < 0.55) return Object.fromEntries(Array.from({ length: 65 + Math.floor(next() * 3) }, (_, index) => [`k${index}`, index]));
    const keys = [...new Set(Array.from({ length: Math.floor(next() * 5) }, () => pick(names)))];
    // The same key sets again and again, in shuffled orders.
    for (let index = keys.length - 1; index > 0; index--) {
      const other = Math.floor(next() * (index + 1));
      [keys[index], keys[other]] = [keys[other] as string, keys[index] as string];
    }
    const target: Record<string, unknown> = next() < 0.1 ? (Object.create(null) as Record<string, unknown>) : {};
    for (const key of keys) Object.defineProperty(target, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
    return target;
  };
  return Array.from({ length: count }, () => value(0));
}

describe('canonicalMembers', () => {
  it('gives member texts that, joined in braces, are exactly what canonicalize gives — text or error — for hostile objects', () => {
    const objects = hostileValues(29, 4000).filter((value) => typeof value === 'object' && value !== null && !Array.isArray(value));
    expect(objects.length).toBeGreaterThan(500);
    for (const pass of [1, 2]) {
      for (const [index, value] of objects.entries()) {
        const joined = (input: unknown): string => {
          const { names, texts } = canonicalMembers(input as object);
          expect(texts.map((text, at) => text.startsWith(`${JSON.stringify(names[at])}:`))).not.toContain(false);
          return `{${texts.join(',')}}`;
        };
        expect(outcome(joined, value), `value ${index}, pass ${pass}`).toBe(outcome(canonicalize, value));
      }
    }
  });

  it('refuses arrays and class instances at the top', () => {
    expect(() => canonicalMembers([1, 2])).toThrow(/is an array, not a JSON object/);
    expect(() => canonicalMembers(new Date(0))).toThrow(/not a plain JSON object/);
    expect(canonicalMembers(Object.assign(Object.create(null) as object, { b: 1, a: [true] }))).toEqual({ names: ['a', 'b'], texts: ['"a":[true]', '"b":1'] });
  });
});

describe('canonicalizeRecord', () => {
  it('gives exactly what canonicalize gives — text or error — for hostile values, first sight and remembered', () => {
    const values = hostileValues(17, 4000);
    for (const pass of [1, 2]) {
      for (const [index, value] of values.entries()) {
        expect(outcome(canonicalizeRecord, value), `value ${index}, pass ${pass}`).toBe(outcome(canonicalize, value));
      }
    }
  });

  it('gives parts that join to that text, each long top-level string member a part of its own', () => {
    const values = hostileValues(23, 4000);
    let split = 0;
    for (const [index, value] of values.entries()) {
      const parts = outcome((input) => JSON.stringify(canonicalRecordParts(input)), value);
      const text = outcome(canonicalize, value);
      if (!parts.startsWith('ok ')) {
        expect(parts, `value ${index}`).toBe(text);
        continue;
      }
      const list = JSON.parse(parts.slice(3)) as string[];
      expect(`ok ${list.join('')}`, `value ${index}`).toBe(text);
      if (list.length > 1) split++;
    }
    expect(split).toBeGreaterThan(10);
    const record = { a: 'short', text: 'é'.repeat(300), z: { long: 'q'.repeat(400) }, zz: 'w'.repeat(256) };
    expect(canonicalRecordParts(record)).toEqual(['{"a":"short","text":', `"${'é'.repeat(300)}"`, `,"z":{"long":"${'q'.repeat(400)}"},"zz":`, `"${'w'.repeat(256)}"`, '}']);
  });

  it('asks an object for its keys once, as canonicalize does (an object whose key list changes between calls)', () => {
    const many = Array.from({ length: 65 }, (_, index) => `k${index}`);
    // A fresh proxy per call: 65 keys (too many to remember) on the first ask, one key after.
    const shifty = (): object => {
      let asked = 0;
      return new Proxy({}, {
        ownKeys: () => (asked++ === 0 ? many : ['a']),
        getOwnPropertyDescriptor: (_, key) => ({ value: String(key), enumerable: true, configurable: true, writable: true }),
        get: (_, key) => String(key),
      });
    };
    expect(canonicalizeRecord({ x: shifty() })).toBe(canonicalize({ x: shifty() }));
  });

  it('keeps the order of objects that have the same names in another order apart', () => {
    expect(canonicalizeRecord({ b: 1, a: 2 })).toBe('{"a":2,"b":1}');
    expect(canonicalizeRecord({ a: 3, b: 4 })).toBe('{"a":3,"b":4}');
    expect(canonicalizeRecord({ b: 5, a: 6, c: { b: 7, a: 8 } })).toBe('{"a":6,"b":5,"c":{"a":8,"b":7}}');
  });

  it('serializes each member\'s own value when values change under a remembered shape', () => {
    const values = ['ab', 'ac', 'ab', 'a"', 'a\n', ['a', 'b'].join(''), 'ab'.repeat(40), 'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(63) + 'y', '\ud800', 'ab'];
    for (const [index, value] of values.entries()) {
      const record = { s: value, n: index, t: { id: value } };
      expect(outcome(canonicalizeRecord, record), `value ${index}`).toBe(outcome(canonicalize, record));
    }
  });

  it('reports the path of a problem as canonicalize does', () => {
    const record = { text: 'ok', sender: { id: '\ud800' } };
    canonicalizeRecord({ text: 'ok', sender: { id: 'x' } });
    expect(() => canonicalizeRecord(record)).toThrow(new NonCanonicalJsonError('$.sender.id contains a lone surrogate'));
  });
});
