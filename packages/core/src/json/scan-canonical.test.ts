/**
 * The validating scan must never accept what the full RFC 8785 routine rejects, and must
 * accept the records offchannel writes (or it would be no faster). Every case is checked
 * three ways: the scan's own answer, soundness (whatever it accepts re-serializes to exactly
 * the same bytes), and decodeRecord against the reference (parseCanonical + validateRecord,
 * the pre-scan decoder): same record and hash, or the same error.
 */
import { describe, expect, it } from 'vitest';
import { InvalidRecordError, NonCanonicalJsonError } from '../errors/record-errors.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { decodeRecord } from '../record/encode-record.ts';
import { validateRecord } from '../record/validate-record.ts';
import { MAX_JSON_DEPTH, canonicalBytes, canonicalize, parseCanonical } from './canonical-json.ts';
import { scanCanonical } from './scan-canonical.ts';

const encoder = new TextEncoder();

/** A record as the recorder writes it (canonical), with a blob, attachments, meta and unicode text. */
const record = {
  v: 1,
  kind: 'message',
  stream: 'whatsapp:alice',
  seq: 7,
  prev: ZERO_HASH,
  key: 'message:ABC',
  channel: 'whatsapp',
  account: 'alice',
  capturedAt: '2026-11-21T09:30:00.123Z',
  sentAt: '2026-11-21T09:29:59.000Z',
  source: { package: '@offchannel/whatsapp', version: '0.1.0' },
  conversation: { id: '15550100@s.whatsapp.net', type: 'direct', title: 'Bob' },
  sender: { id: '15550100@s.whatsapp.net', name: 'Zoë', aliases: ['123456@lid'] },
  direction: 'inbound',
  native: { id: 'ABC' },
  text: 'Tab\there, "quoted" \\ back\nslash, bell \u0007, escape \u001b, DEL \u007f, line sep \u2028, café, 😀',
  attachments: [{ status: 'stored', sha256: sha256Hex(new Uint8Array([1])), size: 1, mime: 'image/jpeg', name: 'a.jpg' }],
  meta: { ephemeralSeconds: 86400, viewOnce: false, pushName: 'Bob' },
};
const canonical = canonicalize(record);

type Outcome = { ok: true; hash: string; record: unknown } | { ok: false; error: string; message: string };

function outcome(decode: () => { hash: string; record: unknown }): Outcome {
  try {
    const { hash, record: value } = decode();
    return { ok: true, hash, record: value };
  } catch (error) {
    return { ok: false, error: (error as Error).constructor.name, message: (error as Error).message };
  }
}

/** The decoder before the scan: the full RFC 8785 routine, then the schema. */
function reference(bytes: Uint8Array): Outcome {
  return outcome(() => {
    const value = parseCanonical(bytes);
    validateRecord(value);
    return { hash: sha256Hex(bytes), record: value };
  });
}

/** The three checks every input gets. */
function check(bytes: Uint8Array): unknown {
  const scanned = scanCanonical(bytes);
  if (scanned !== undefined) {
    // Sound: accepted bytes are exactly the canonical form of the value returned.
    expect(Buffer.from(canonicalBytes(scanned)).equals(Buffer.from(bytes))).toBe(true);
    expect(scanned).toEqual(JSON.parse(Buffer.from(bytes).toString('utf8')));
  }
  expect(outcome(() => decodeRecord(bytes))).toEqual(reference(bytes));
  return scanned;
}

/** `canonical` with `from` replaced by `to` (which must occur). */
function variant(from: string, to: string): string {
  expect(canonical).toContain(from);
  return canonical.replace(from, to);
}

describe('scanCanonical', () => {
  it('accepts the records offchannel writes and returns their value', () => {
    expect(check(encoder.encode(canonical))).toEqual(record);
  });

  it('accepts canonical JSON of every kind of value', () => {
    for (const value of [{}, [], 0, -1, 9007199254740991, -9007199254740991, true, false, null, '', 'a\u0000b\u001fc', [[[]]], { a: [{ b: null }], b: '\u00e9' }]) {
      expect(check(encoder.encode(canonicalize(value))), JSON.stringify(value)).toEqual(value);
    }
  });

  const notCanonical: Record<string, string> = {
    // Member order and duplicates.
    'two members swapped': variant('"key":"message:ABC","kind":"message"', '"kind":"message","key":"message:ABC"'),
    'nested members out of order': variant('{"package":"@offchannel/whatsapp","version":"0.1.0"}', '{"version":"0.1.0","package":"@offchannel/whatsapp"}'),
    'a duplicate member, adjacent': variant('"account":"alice"', '"account":"alice","account":"alice"'),
    'a duplicate member, later value wins': variant('"account":"alice"', '"account":"mallory","account":"alice"'),
    'a duplicate nested member': variant('{"id":"ABC"}', '{"id":"ABC","id":"ABC"}'),
    'names differing only in case, wrong order': variant('"kind":"message"', '"kind":"message","Kind":"x"'),
    // Whitespace.
    'a space after a colon': variant('"seq":7', '"seq": 7'),
    'a space after a comma': variant(',"seq"', ', "seq"'),
    'a tab between members': variant(',"seq"', ',\t"seq"'),
    'a leading space': ` ${canonical}`,
    'a trailing space': `${canonical} `,
    'a trailing newline': `${canonical}\n`,
    'a carriage return inside': variant(',"seq"', ',\r"seq"'),
    // Escapes.
    'an escaped solidus': variant('a.jpg', 'a\\/b.jpg'),
    'a letter as \\u escape': variant('"alice"', '"\\u0061lice"'),
    'a non-ASCII letter as \\u escape': variant('café', 'caf\\u00e9'),
    'upper-case hex in a control escape': variant('\\u001b', '\\u001B'),
    'a newline as \\u000a': variant('\\n', '\\u000a'),
    'a tab as \\u0009': variant('\\t', '\\u0009'),
    'a backspace as \\u0008': variant('\\u0007', '\\u0008'),
    'a line separator escaped': variant('\u2028', '\\u2028'),
    'DEL escaped': variant('\u007f', '\\u007f'),
    'an emoji as a surrogate pair escape': variant('😀', '\\ud83d\\ude00'),
    'a raw tab': variant('Tab\\t', 'Tab\t'),
    'a raw newline': variant('back\\n', 'back\n'),
    'a raw NUL': variant('Tab', 'T\u0000ab'),
    'a lone backslash': variant('Tab', 'T\\ab'),
    'an escape cut short': variant('\\u0007', '\\u07'),
    // Numbers.
    'a fraction': variant('"seq":7', '"seq":7.0'),
    'an exponent': variant('"seq":7', '"seq":7e0'),
    'an upper-case exponent': variant('"seq":7', '"seq":0.7E1'),
    'a leading zero': variant('"seq":7', '"seq":07'),
    'a plus sign': variant('"seq":7', '"seq":+7'),
    'minus zero': variant('"size":1', '"size":-0'),
    'an unsafe integer': variant('"ephemeralSeconds":86400', '"ephemeralSeconds":9007199254740993'),
    'a huge integer': variant('"ephemeralSeconds":86400', `"ephemeralSeconds":1${'0'.repeat(30)}`),
    // Literals and structure.
    'a misspelt literal': variant('false', 'fals'),
    'a capitalised literal': variant('false', 'False'),
    'a trailing comma': variant('"viewOnce":false}', '"viewOnce":false,}'),
    'a missing closing brace': canonical.slice(0, -1),
    'bytes after the record': `${canonical}{}`,
    'two records on one line': `${canonical}${canonical}`,
    'a single-quoted string': variant('"alice"', "'alice'"),
    'an unquoted name': variant('"seq":', 'seq:'),
    'a name escaped': variant('"seq":', '"s\\u0065q":'),
  };
  // Canonical JSON the scan leaves to the full routine, which accepts it as JSON; the schema refuses it.
  const notValid: Record<string, string> = {
    'an integer past the safe range written exactly': variant('"ephemeralSeconds":86400', '"ephemeralSeconds":9007199254740992'),
    'a __proto__ member': variant('{"id":"ABC"}', '{"__proto__":{},"id":"ABC"}'),
  };

  for (const [name, text] of Object.entries(notCanonical)) {
    it(`does not accept ${name}, and decodeRecord rejects it as before`, () => {
      expect(text).not.toBe(canonical);
      const bytes = encoder.encode(text);
      expect(scanCanonical(bytes)).toBeUndefined();
      check(bytes);
      expect(() => decodeRecord(bytes)).toThrow(NonCanonicalJsonError);
    });
  }

  for (const [name, text] of Object.entries(notValid)) {
    it(`leaves ${name} to the full routine, and decodeRecord rejects it as before`, () => {
      const bytes = encoder.encode(text);
      expect(scanCanonical(bytes)).toBeUndefined();
      expect(parseCanonical(bytes)).toBeDefined();
      check(bytes);
      expect(() => decodeRecord(bytes)).toThrow(InvalidRecordError);
    });
  }

  it('does not normalise Unicode: NFC and NFD text are both canonical, with different hashes', () => {
    const nfc = encoder.encode(variant('café', 'café'.normalize('NFC')));
    const nfd = encoder.encode(variant('café', 'café'.normalize('NFD')));
    expect(Buffer.from(nfc).equals(Buffer.from(nfd))).toBe(false);
    const [a, b] = [decodeRecord(nfc), decodeRecord(nfd)];
    expect(a.hash).toBe(sha256Hex(nfc));
    expect(b.hash).toBe(sha256Hex(nfd));
    expect(a.hash).not.toBe(b.hash);
    expect((b.record as { text: string }).text).toContain('cafe\u0301');
    check(nfc);
    check(nfd);
    // A member name that is not ASCII is left to the full routine (here: NFC and NFD names sort differently).
    for (const form of ['NFC', 'NFD'] as const) {
      const bytes = encoder.encode(canonicalize({ ['é'.normalize(form)]: 1, f: 2 }));
      expect(scanCanonical(bytes)).toBeUndefined();
      expect(parseCanonical(bytes)).toEqual(JSON.parse(Buffer.from(bytes).toString('utf8')));
    }
  });

  it('rejects bytes that are not UTF-8, or carry a byte-order mark, as before', () => {
    const text = encoder.encode(canonical);
    const at = text.indexOf(0x54); // "T" of "Tab"
    const splice = (...bytes: number[]): Uint8Array => Buffer.concat([text.subarray(0, at), Uint8Array.from(bytes), text.subarray(at)]);
    for (const bytes of [
      splice(0xc0, 0xaf), // overlong "/"
      splice(0xed, 0xa0, 0x80), // an encoded surrogate
      splice(0x80), // a lone continuation byte
      splice(0xe2, 0x82), // a truncated sequence
      splice(0xff),
      Buffer.concat([Uint8Array.of(0xef, 0xbb, 0xbf), text]), // a byte-order mark
    ]) {
      expect(scanCanonical(bytes)).toBeUndefined();
      check(bytes);
      expect(() => decodeRecord(bytes)).toThrow(NonCanonicalJsonError);
    }
  });

  it('leaves nesting deeper than the limit to the full routine', () => {
    const deep = (levels: number): Uint8Array => encoder.encode(`${'['.repeat(levels)}${']'.repeat(levels)}`);
    expect(scanCanonical(deep(MAX_JSON_DEPTH))).toEqual(JSON.parse(`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`));
    expect(scanCanonical(deep(MAX_JSON_DEPTH + 1))).toBeUndefined();
    expect(() => parseCanonical(deep(MAX_JSON_DEPTH + 1))).toThrow(NonCanonicalJsonError);
    expect(scanCanonical(deep(100_000))).toBeUndefined();
  });

  it('decides every one-byte change of a record exactly as the full routine does', { timeout: 60_000 }, () => {
    const bytes = encoder.encode(canonical);
    // Every position, with bytes that matter to JSON: structure, quotes, escapes, digits, space, high bytes.
    const replacements = [0x20, 0x22, 0x2c, 0x2d, 0x30, 0x31, 0x3a, 0x5c, 0x5b, 0x5d, 0x61, 0x65, 0x7b, 0x7d, 0x00, 0x0a, 0x7f, 0x80, 0xc3];
    let accepted = 0;
    for (let position = 0; position < bytes.length; position++) {
      for (const replacement of replacements) {
        if (bytes[position] === replacement) continue;
        const changed = Uint8Array.from(bytes);
        changed[position] = replacement;
        const scanned = check(changed);
        if (scanned !== undefined) accepted++;
      }
    }
    // Some changes inside strings stay canonical (another letter): those are accepted, and hash differently.
    expect(accepted).toBeGreaterThan(0);
  });

  it('decides removed and doubled bytes exactly as the full routine does', { timeout: 60_000 }, () => {
    const bytes = encoder.encode(canonical);
    for (let position = 0; position < bytes.length; position++) {
      check(Buffer.concat([bytes.subarray(0, position), bytes.subarray(position + 1)]));
      check(Buffer.concat([bytes.subarray(0, position + 1), bytes.subarray(position)]));
    }
  });
});
