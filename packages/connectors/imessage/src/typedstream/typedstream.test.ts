import { OffchannelError } from '@offchannel/core';
import { Unarchiver } from 'node-typedstream';
import { describe, expect, it } from 'vitest';
import { TypedstreamError } from '../errors.ts';
import { decodeAttributedBody } from './attributed-body.ts';
import { decodeTypedstream } from './typedstream-reader.ts';
import { encodeAttributedBody, type WritableRun } from './typedstream-writer.ts';

const ascii = (text: string): number[] => [...new TextEncoder().encode(text)];
const HEADER = [4, 11, ...ascii('streamtyped'), 0x81, 0xe8, 0x03];
const blob = (...bytes: number[]): Uint8Array => Uint8Array.from([...HEADER, ...bytes]);
const named = (name: string): number[] => [0x84, 0x84, name.length, ...ascii(name)];
const PART = '__kIMMessagePartAttributeName';

/** `bytes` with the first occurrence of `from` replaced by `to` (same length). */
function patch(bytes: Uint8Array, from: number[], to: number[]): Uint8Array {
  const at = Buffer.from(bytes).indexOf(Buffer.from(from));
  if (at < 0) throw new Error('pattern not found');
  const out = Uint8Array.from(bytes);
  out.set(to, at);
  return out;
}

/** Deterministic PRNG (mulberry32) for the fuzz loop and generated texts. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The other implementation's reading of the same bytes (MIT `node-typedstream`). */
function otherText(bytes: Uint8Array): string | undefined {
  try {
    const root = (Unarchiver.open(Buffer.from(bytes)).decodeAll() as { values: { string?: unknown }[] }[])[0]?.values[0];
    return typeof root?.string === 'string' ? root.string : undefined;
  } catch {
    return undefined;
  }
}

const texts: Record<string, string> = {
  empty: '',
  short: 'Noter test',
  'exactly 127 bytes': 'x'.repeat(127),
  'exactly 128 bytes': 'y'.repeat(128),
  '300 bytes': 'Please confirm the allocation. '.repeat(10),
  'over 65,536 bytes': 'Long disclosure paragraph, repeated. '.repeat(2000),
  'emoji and astral characters': '👍🏽 deal 𝕳𝖊𝖑𝖑𝖔 👨‍👩‍👧 \u{1F600}\u{10FFFD} done',
  'right-to-left': 'مرحبا بالعالم',
  'attachment placeholder': '\uFFFC see attached',
};

describe('typedstream attributedBody', () => {
  it('writes the byte layout NSArchiver writes for a one-part message', () => {
    // The annotated Apple blob for "Noter test" (shared research notes, §2.6), written out by hand.
    const expected = blob(
      0x84, 0x01, 0x40, 0x84, ...named('NSMutableAttributedString'), 0x00, ...named('NSAttributedString'), 0x00, ...named('NSObject'), 0x00, 0x85,
      0x92, 0x84, ...named('NSMutableString'), 0x01, ...named('NSString'), 0x01, 0x95, 0x84, 0x01, 0x2b, 0x0a, ...ascii('Noter test'), 0x86,
      0x84, 0x02, 0x69, 0x49, 0x01, 0x0a,
      0x92, 0x84, ...named('NSDictionary'), 0x00, 0x95, 0x84, 0x01, 0x69, 0x01,
      0x92, 0x84, 0x98, 0x98, 0x1d, ...ascii(PART), 0x86,
      0x92, 0x84, ...named('NSNumber'), 0x00, ...named('NSValue'), 0x00, 0x95, 0x84, 0x01, 0x2a, 0x84, 0x9b, 0x9b, 0x00, 0x86,
      0x86, 0x86,
    );
    expect(expected.length).toBe(233);
    expect(encodeAttributedBody('Noter test')).toEqual(expected);
    expect(decodeAttributedBody(expected)).toEqual({ text: 'Noter test', runs: [{ start: 0, length: 10, attributes: { [PART]: 0 } }] });
  });

  for (const [name, text] of Object.entries(texts)) {
    it(`round-trips ${name} (mutable and immutable), and node-typedstream reads the same text`, () => {
      for (const mutable of [true, false]) {
        const bytes = encodeAttributedBody(text, { mutable });
        const decoded = decodeAttributedBody(bytes);
        expect(decoded.text).toBe(text);
        expect(decoded.runs.reduce((sum, run) => sum + run.length, 0)).toBe(text.length);
        // node-typedstream 1.4.1 reads only 2 of the 4 bytes after 0x82 (stream.js, TAG_INTEGER_4),
        // so it cannot read strings of 32,768 bytes or more; where it can read, it must agree.
        if (text.length > 0 && new TextEncoder().encode(text).length < 32_768) expect(otherText(bytes)).toBe(text);
        else if (text.length > 0) expect(otherText(bytes)).toBeUndefined();
      }
    });
  }

  it('decodes a huge (4 MiB) body', () => {
    const text = 'Ω'.repeat(2 * 1024 * 1024);
    expect(decodeAttributedBody(encodeAttributedBody(text)).text).toBe(text);
  });

  it('uses 0x81 + int16 for lengths of 128 and more (where the split-on-NSString shortcut breaks)', () => {
    const bytes = encodeAttributedBody('y'.repeat(128));
    const at = Buffer.from(bytes).indexOf(Buffer.from([0x2b, 0x81, 0x80, 0x00]));
    expect(at).toBeGreaterThan(0);
  });

  it('keeps many attribute runs, reusing dictionaries by id', () => {
    const next = random(7);
    const runs: WritableRun[] = [];
    let text = '';
    for (let i = 0; i < 600; i++) {
      const piece = ['a', 'bc', '👍', 'd👍e'][Math.floor(next() * 4)] as string;
      text += piece;
      runs.push({ length: piece.length, attributes: i % 3 === 0 ? { [PART]: 0 } : { [PART]: 0, __kIMTextBoldAttributeName: 1, __kIMLinkAttributeName: { url: `https://example.com/${i % 5}` } } });
    }
    const decoded = decodeAttributedBody(encodeAttributedBody(text, { runs }));
    expect(decoded.text).toBe(text);
    expect(decoded.runs).toHaveLength(600);
    expect(decoded.runs[4]?.attributes).toEqual({ [PART]: 0, __kIMTextBoldAttributeName: 1, __kIMLinkAttributeName: { url: 'https://example.com/4' } });
    expect(decoded.runs[598]?.start).toBe(runs.slice(0, 598).reduce((sum, run) => sum + run.length, 0));
  });

  it('resolves back-references far past index 110 and 237 (0x00–0x7F and 0x81 + int16 forms)', () => {
    const runs: WritableRun[] = Array.from({ length: 400 }, (_, i) => ({ length: 1, attributes: { [PART]: i, tag: `value-${i % 150}` } }));
    const bytes = encodeAttributedBody('z'.repeat(400), { runs });
    const decoded = decodeAttributedBody(bytes);
    decoded.runs.forEach((run, i) => { expect(run.attributes).toEqual({ [PART]: i, tag: `value-${i % 150}` }); });
    expect(otherText(bytes)).toBe('z'.repeat(400));
  });

  it('decodes NSNumber (int, int64, double, bool), NSURL, NSData and mentions', () => {
    const attributes = { small: -1, big: 2 ** 40, ratio: 0.25, flag: true, link: { url: 'https://example.com/a?b=c' }, data: Uint8Array.from([0, 255, 7]), __kIMMentionConfirmedMention: 'bob@client.example' };
    const decoded = decodeAttributedBody(encodeAttributedBody('@Bob', { runs: [{ length: 4, attributes }] }));
    expect(decoded.runs[0]?.attributes).toEqual({ ...attributes, flag: 1 });
  });

  it('rejects every truncation of a real blob with a typed error', () => {
    const whole = encodeAttributedBody('truncate me 👍', { runs: [{ length: 6, attributes: { [PART]: 0 } }, { length: 8, attributes: { [PART]: 1, link: { url: 'https://x.example' } } }] });
    for (let length = 0; length < whole.length; length++) {
      expect(() => decodeAttributedBody(whole.subarray(0, length)), `length ${length}`).toThrow(TypedstreamError);
    }
  });

  const hostile: Record<string, Uint8Array> = {
    'not a typedstream': Uint8Array.from(ascii('bplist00 not typedstream')),
    'wrong signature': Uint8Array.from([4, 11, ...ascii('typedstream'), 0x81, 0xe8, 0x03, 0x84, 0x01, 0x40, 0x85]),
    'header only': blob(),
    'reference to an object never defined': blob(0x84, 0x01, 0x40, 0xa0),
    'reference to a shared string never defined': blob(0x99),
    'class reference naming a C string': blob(0x84, 0x01, 0x2a, 0x84, 0x84, 0x01, 0x69, 0x84, 0x01, 0x40, 0x84, 0x92),
    'string length beyond the blob': blob(0x84, 0x01, 0x2b, 0x82, 0xff, 0xff, 0xff, 0x7f),
    'array of a billion ints': blob(0x84, 0x0c, ...ascii('[1000000000i'), 0x5d, 0x01),
    'empty struct': blob(0x84, 0x02, 0x7b, 0x7d),
    'unsupported type': blob(0x84, 0x01, 0x76),
    'a tag where an integer belongs': blob(0x84, 0x01, 0x69, 0x86),
    'nesting deeper than the limit': blob(...Array.from({ length: 200 }, () => [0x84, 0x01, 0x40, 0x84, ...named('X'), 0x00, 0x85]).flat()),
    'dictionary count that lies': patch(encodeAttributedBody('ok'), [0x84, 0x01, 0x69, 0x01], [0x84, 0x01, 0x69, 0x05]),
    'duplicate dictionary keys': patch(encodeAttributedBody('ok', { runs: [{ length: 2, attributes: { k1: 1, k2: 2 } }] }), [0x02, ...ascii('k2')], [0x02, ...ascii('k1')]),
    'invalid UTF-8 in the string': blob(0x84, 0x01, 0x40, 0x84, ...named('NSString'), 0x01, 0x85, 0x84, 0x01, 0x2b, 0x02, 0xc3, 0x28, 0x86),
    'root is not an attributed string': blob(0x84, 0x01, 0x69, 0x05),
  };
  for (const [name, bytes] of Object.entries(hostile)) {
    it(`rejects ${name} with a typed error`, () => {
      let caught: unknown;
      try {
        decodeAttributedBody(bytes);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(TypedstreamError);
      expect(OffchannelError.hasCode(caught, 'TYPEDSTREAM_INVALID') || OffchannelError.hasCode(caught, 'TYPEDSTREAM_TRUNCATED')).toBe(true);
    });
  }

  it('handles a class chain that names itself as its superclass without looping', () => {
    const bytes = blob(0x84, 0x01, 0x40, 0x84, 0x84, 0x84, 0x01, ...ascii('A'), 0x00, 0x93, 0x86);
    const [group] = decodeTypedstream(bytes);
    expect(group?.encoding).toBe('@');
    expect(() => decodeAttributedBody(bytes)).toThrow(TypedstreamError);
  });

  it('agrees with node-typedstream on the text of every generated and mutated blob both can read', () => {
    const next = random(42);
    const alphabet = ['a', 'Z', ' ', '👍', 'é', '\uFFFC', '𝕳', '中', '\n'];
    let compared = 0;
    for (let i = 0; i < 400; i++) {
      const text = Array.from({ length: Math.floor(next() * 200) + 1 }, () => alphabet[Math.floor(next() * alphabet.length)]).join('');
      const bytes = encodeAttributedBody(text, { mutable: next() < 0.5 });
      if (i % 2 === 1) bytes[HEADER.length + Math.floor(next() * (bytes.length - HEADER.length))] = Math.floor(next() * 256);
      let ours: string | undefined;
      try {
        ours = decodeAttributedBody(bytes).text;
      } catch (error) {
        expect(error).toBeInstanceOf(TypedstreamError);
      }
      const theirs = otherText(bytes);
      if (ours !== undefined && theirs !== undefined) {
        expect(ours).toBe(theirs);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(250);
  });

  it('survives a deterministic fuzz loop: every mutated blob decodes or fails with a typed error', () => {
    const next = random(20261121);
    const seeds = [encodeAttributedBody('fuzz 👍 seed'), encodeAttributedBody('x'.repeat(300), { runs: [{ length: 150, attributes: { [PART]: 0 } }, { length: 150, attributes: { [PART]: 1, link: { url: 'https://a.example' } } }] })];
    let decoded = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = Uint8Array.from(seeds[i % seeds.length] as Uint8Array);
      const edits = 1 + Math.floor(next() * 4);
      for (let e = 0; e < edits; e++) bytes[HEADER.length + Math.floor(next() * (bytes.length - HEADER.length))] = Math.floor(next() * 256);
      try {
        decodeAttributedBody(bytes);
        decoded++;
      } catch (error) {
        if (!(error instanceof TypedstreamError)) throw error;
      }
    }
    expect(decoded).toBeGreaterThan(0);
  });
});
