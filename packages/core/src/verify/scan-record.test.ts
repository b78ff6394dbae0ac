/**
 * The record scan (scan-record.ts) against the decoder it stands in for: for valid records of
 * every kind and for thousands of hostile mutations of them (structural: every member removed,
 * retyped, duplicated, reordered, an extra one added; textual: whitespace, escapes
 * JSON.stringify would not write, non-shortest numbers, invalid UTF-8, lone surrogates, every
 * truncation, random byte damage), verification with the scan gives the same verdict, error
 * class and facts (seq, prev, key fingerprint, blobs) as `decodeRecord` alone.
 */
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../hash/sha256.ts';
import { canonicalize } from '../json/canonical-json.ts';
import { decodeRecord } from '../record/encode-record.ts';
import { blobRefs } from './blob-refs.ts';
import { keyFingerprint, keyFingerprintOfAscii } from './key-fingerprints.ts';
import { RecordScanner } from './scan-record.ts';

const STREAM = 'whatsapp:alice';
const PREV = sha256Hex(Buffer.from('previous'));
const BLOB = sha256Hex(Buffer.from('blob'));
const BLOB2 = sha256Hex(Buffer.from('blob2'));

const common = { v: 1, stream: STREAM, seq: 7, prev: PREV, channel: 'whatsapp', account: 'alice', capturedAt: '2026-11-21T09:30:00.123Z', source: { package: '@offchannel/whatsapp', version: '0.1.0' } };
const context = { sentAt: '2026-11-21T09:29:59Z', conversation: { id: '15550100@s.whatsapp.net', type: 'group', title: 'Desk' }, sender: { id: '15550100@s.whatsapp.net', name: 'Zoë', aliases: ['123456@lid', 'b'] }, direction: 'inbound' };

/** Valid records of every kind, with every optional field somewhere. */
const VALID: Record<string, unknown>[] = [
  { ...common, ...context, kind: 'message', key: 'message:ABC', native: { id: 'ABC', chat: 'x', participant: 'y' }, text: 'plain text' },
  {
    ...common,
    ...context,
    kind: 'message',
    key: 'm:😀:é',
    native: { id: 'A' },
    text: 'Tab\there, "quoted" \\ back\nslash, bell \u0007, escape \u001b, DEL \u007f, sep \u2028, café, 😀, 中文, \uffff',
    attachments: [
      { status: 'stored', sha256: BLOB, size: 1, mime: 'image/jpeg', name: 'a.jpg' },
      { status: 'unavailable', reason: 'expired', mime: 'video/mp4', size: 9, sha256: BLOB2, name: 'v' },
      { status: 'stored', sha256: BLOB2, size: 0, mime: 'x/y' },
    ],
    raw: { sha256: BLOB, size: 12, format: 'whatsapp.proto' },
    meta: { ephemeralSeconds: 86400, viewOnce: false, pushName: 'Bob', 'a.b-c_d': true, zero: 0 },
    mentions: ['1@s', '2@s'],
    replyTo: { id: 'Q', participant: 'p' },
    forwarded: true,
  },
  { ...common, kind: 'message', key: 'k', native: { id: 'B' }, textBlob: { sha256: BLOB, size: 100000 }, sentAt: '2024-02-29T23:59:59.123456789Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 's' }, direction: 'outbound' },
  { ...common, ...context, kind: 'message', key: 'e', native: { id: 'E' }, text: '' },
  { ...common, ...context, kind: 'edit', key: 'edit:1', target: { id: 'ABC' }, text: 'changed', native: { id: 'N' } },
  { ...common, ...context, kind: 'delete', key: 'del:1', target: { id: 'ABC' }, deletion: { scope: 'everyone', admin: true } },
  { ...common, ...context, kind: 'delete', key: 'del:2', target: { id: 'ABC' }, deletion: { scope: 'me' } },
  { ...common, ...context, kind: 'reaction', key: 'r:1', target: { id: 'ABC' }, reaction: { value: '👍', action: 'add' } },
  { ...common, ...context, kind: 'receipt', key: 'rc:1', target: { id: 'ABC' }, receipt: { status: 'played' } },
  { ...common, kind: 'membership', key: 'mb:1', sentAt: '2026-11-21T09:29:59Z', conversation: { id: 'c', type: 'group' }, membership: { action: 'add', members: [{ id: 'p' }], value: 'v' } },
  { ...common, kind: 'undecryptable', key: 'u:1', problem: { reason: 'no session', detail: 'd' }, raw: { sha256: BLOB, size: 3, format: 'f' }, target: { id: 't' } },
  { ...common, kind: 'unsupported', key: 'u:2', problem: { reason: 'r' }, raw: { sha256: BLOB, size: 3, format: 'f' } },
  { ...common, kind: 'gap', key: 'g:1', gap: { reason: 'offline', from: 'a', to: 'b', missing: 12 } },
  { ...common, kind: 'gap', key: 'g:2', gap: { reason: 'offline' }, meta: { n: 9007199254740991 } },
  { ...common, kind: 'system', key: 's:1', system: { event: 'started', fields: { a: 'b' } } },
  { ...common, kind: 'policy', key: 'p:1', system: { event: 'policy' } },
];

interface Facts {
  readonly seq: number;
  readonly prev: string;
  readonly fingerprint: number;
  readonly blobs: readonly (readonly [string, string, number])[];
}
type Verdict = { readonly ok: true; readonly facts: Facts } | { readonly ok: false; readonly error: string };

/** What verify-chunk concluded before the scan: decodeRecord, then the stream. */
function reference(line: Buffer): Verdict {
  try {
    const { record } = decodeRecord(line);
    if (record.stream !== STREAM) return { ok: false, error: 'wrong stream' };
    const blobs = blobRefs(record).map(([field, ref]) => [field, ref.sha256, ref.size] as const);
    return { ok: true, facts: { seq: record.seq, prev: record.prev, fingerprint: keyFingerprint(record.key), blobs } };
  } catch (error) {
    return { ok: false, error: (error as Error).constructor.name };
  }
}

const scanner = new RecordScanner(STREAM);
let decided = 0;

/** What verify-chunk concludes now: the scan, or decodeRecord where it does not decide. */
function current(line: Buffer): Verdict {
  // Scanned where verify-chunk finds it: between other records' bytes.
  const bytes = Buffer.concat([Buffer.from('{"x":1}\n'), line, Buffer.from('\n,"x":1}\n')]);
  const scanned = scanner.scan(bytes, 8, 8 + line.length);
  expect(scanner.scan(line), 'same answer without the bytes around').toEqual(scanned && { ...scanned, prevAt: scanned.prevAt - 8 });
  if (!scanned) return reference(line);
  decided++;
  const prev = bytes.toString('latin1', scanned.prevAt, scanned.prevAt + 64);
  return { ok: true, facts: { seq: scanned.seq, prev, fingerprint: scanned.keyFingerprint, blobs: scanned.blobs ?? [] } };
}

function check(line: Buffer): void {
  expect(current(line), line.toString('latin1')).toEqual(reference(line));
}

const line = (value: unknown): Buffer => Buffer.from(canonicalize(value), 'utf8');

/** Every path to a value in `value` (members and array items). */
function paths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (typeof value !== 'object' || value === null) return [at];
  const entries = Array.isArray(value) ? value.map((item, index) => [index, item] as const) : Object.entries(value);
  return [at, ...entries.flatMap(([name, item]) => paths(item, [...at, name]))];
}

/** A deep copy of `value` with `change` applied to the member or item at `path` (its parent and name). */
function mutate(value: unknown, path: readonly (string | number)[], change: (parent: Record<string | number, unknown>, name: string | number) => void): unknown {
  const copy = structuredClone(value);
  let parent = copy as Record<string | number, unknown>;
  for (const name of path.slice(0, -1)) parent = parent[name] as Record<string | number, unknown>;
  change(parent, path.at(-1) as string | number);
  return copy;
}

const REPLACEMENTS: unknown[] = [0, 1, -1, 1.5, 2 ** 53, 1e21, '', 'x', 'x'.repeat(1024), 'x'.repeat(1025), 'é'.repeat(1024), '😀'.repeat(512), '😀'.repeat(513), 'a\u0000b', true, false, null, [], {}, ['a'], { a: 'b' }, { id: 'x' }, [{ a: 1 }], PREV, PREV.toUpperCase(), '2026-02-29T00:00:00Z', '2026-13-01T00:00:00Z', '2026-11-21T24:00:00Z', '2026-11-21T09:30:00.Z', '2026-11-21T09:30:00.1234567890Z', 'stored', 'unavailable', 'bench:alice', 'whatsapp', 'alice', 'message', 'system'];

// Thousands of cases each: ample time on a busy machine.
describe('RecordScanner', { timeout: 120_000 }, () => {
  it('decides every valid record it knows (all but membership and system details), with the same facts', () => {
    for (const record of VALID) {
      const bytes = line(record);
      expect(reference(bytes).ok).toBe(true);
      const before = decided;
      check(bytes);
      expect(decided - before, String(record.kind)).toBe(['membership', 'system', 'policy'].includes(record.kind as string) ? 0 : 1);
    }
  });

  it('agrees with decodeRecord on every member removed, retyped or added, at every depth', () => {
    let cases = 0;
    for (const record of VALID) {
      for (const path of paths(record)) {
        if (path.length === 0) continue;
        check(line(mutate(record, path, (parent, name) => {
          if (Array.isArray(parent)) parent.splice(name as number, 1);
          else Reflect.deleteProperty(parent, name);
        })));
        for (const replacement of REPLACEMENTS) check(line(mutate(record, path, (parent, name) => (parent[name] = replacement))));
        if (!Array.isArray(mutate(record, path, () => undefined))) {
          for (const extra of ['aa', 'zz', 'id', 'Id', '__proto__', 'a'.repeat(33), 'a'.repeat(65), '1a', 'a b', 'é']) {
            check(line(mutate(record, path.slice(0, -1).length ? [...path.slice(0, -1), extra] : [extra], (parent, name) => (parent[name] = 'x'))));
          }
        }
        cases += REPLACEMENTS.length + 11;
      }
    }
    expect(cases).toBeGreaterThan(5000);
    expect(decided).toBeGreaterThan(1000); // the scan decided many of them itself
  });

  it('agrees on non-canonical text: whitespace, key order, duplicate keys, escapes, numbers, UTF-8', () => {
    for (const record of VALID) {
      const text = canonicalize(record);
      const variants: string[] = [
        ` ${text}`,
        `${text} `,
        `${text}\n`,
        text.replace('":', '": '),
        text.replace(',"', ', "'),
        text.replace('"v":1', '"v":1.0'),
        text.replace('"v":1', '"v":1e0'),
        text.replace('"v":1', '"v":01'),
        text.replace('"seq":7', '"seq":7.0'),
        text.replace('"seq":7', '"seq":07'),
        text.replace('"seq":7', '"seq":-0'),
        text.replace('"seq":7', '"seq":7E0'),
        text.replace('"seq":7', '"seq":-7'),
        text.replace('"seq":7', '"seq":9007199254740992'),
        text.replace('"seq":7', '"seq":99999999999999999'),
        text.replace('"seq":7', '"seq":7,"seq":7'),
        text.replace('"account":"alice"', '"account":"alice","account":"alice"'),
        text.replace('{"account":"alice",', '{').replace('"capturedAt"', '"account":"alice","capturedAt"'),
        text.replace('"key":"', '"key":"\\u0041'),
        text.replace('"key":"', '"key":"\\/'),
        text.replace('"key":"', '"key":"\\u001B'),
        text.replace('"key":"', '"key":"\\u001b'),
        text.replace('"key":"', '"key":"\\u000a'),
        text.replace('"key":"', '"key":"\\n'),
        text.replace('"key":"', '"key":"\\ud800'),
        text.replace('"key":"', '"key":"\\ud83d\\ude00'),
        text.replace('"key":"', '"key":"\\x'),
        text.replace('"key":"', '"key":"\t'),
        text.replace('"key":"', '"key":"\u007f'),
        text.replace('"stream":"whatsapp:alice"', '"stream":"whatsapp:alic\\u0065"'),
        text.replace('"channel":"whatsapp"', '"channel":"\\u0077hatsapp"'),
        text.replace('"kind":"', '"kind":"\\u006d'),
        text.replace('"stream":"whatsapp:alice"', '"stream":"whatsapp:bob"'),
        text.replace('"account":"alice"', '"account":"bob"'),
        text.replace('"prev":"', '"prev":"\\u0030').replace(`${PREV}"`, `${PREV.slice(1)}"`),
      ];
      for (const variant of variants) check(Buffer.from(variant, 'utf8'));
      const bytes = Buffer.from(text, 'utf8');
      const key = bytes.indexOf('"key":"') + 7;
      for (const insert of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0x80], [0xef, 0xbb, 0xbf], [0xc3, 0xa9], [0xf0, 0x9f, 0x98, 0x80], [0x00], [0x1f]]) {
        check(Buffer.concat([bytes.subarray(0, key), Buffer.from(insert), bytes.subarray(key)]));
        check(Buffer.concat([Buffer.from(insert), bytes]));
        const text = bytes.indexOf('"text":"');
        if (text !== -1) check(Buffer.concat([bytes.subarray(0, text + 8), Buffer.from(insert), bytes.subarray(text + 8)]));
      }
    }
  });

  it('agrees on every truncation and on random damage', () => {
    let seed = 17;
    const random = (below: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % below;
    };
    for (const record of VALID) {
      const bytes = line(record);
      for (let end = 0; end < bytes.length; end++) check(bytes.subarray(0, end));
      for (let round = 0; round < 300; round++) {
        const damaged = Buffer.from(bytes);
        const at = random(damaged.length);
        const choice = random(3);
        if (choice === 0) damaged[at] = random(256);
        else if (choice === 1) damaged[at] = '{}[],:"\\ 0123456789-.eEtfn'.charCodeAt(random(26));
        else damaged[at] = (damaged[at] as number) ^ (1 << random(8));
        check(damaged);
      }
    }
  });

  it('agrees on deep nesting, huge strings and the size limit', () => {
    const base = VALID[0] as Record<string, unknown>;
    for (const depth of [1, 3, 63, 64, 70]) {
      const deep = `${'{"a":'.repeat(depth)}"x"${'}'.repeat(depth)}`;
      const nested = `${'['.repeat(depth)}${']'.repeat(depth)}`;
      for (const value of [deep, nested]) {
        check(Buffer.from(canonicalize({ ...base, meta: { a: 'DEEP' } }).replace('"DEEP"', value)));
        check(Buffer.from(canonicalize({ ...base, native: { a: 'DEEP', id: 'x' } }).replace('"DEEP"', value)));
        check(Buffer.from(canonicalize({ ...base, text: 'DEEP' }).replace('"DEEP"', value)));
      }
    }
    for (const size of [65_000, 65_535, 66_000, 200_000]) {
      const record = { ...base, text: '' };
      const room = size - line(record).length;
      check(line({ ...record, text: 'y'.repeat(Math.max(0, room)) }));
    }
    check(line({ ...base, key: 'k'.repeat(1024) }));
    check(line({ ...base, key: 'k'.repeat(1025) }));
    check(line({ ...base, key: '😀'.repeat(512) }));
    check(line({ ...base, key: '😀'.repeat(512) + 'k' }));
    check(line({ ...base, mentions: Array.from({ length: 1024 }, () => 'm') }));
    check(line({ ...base, mentions: Array.from({ length: 1025 }, () => 'm') }));
    check(line({ ...base, sender: { id: 's', aliases: Array.from({ length: 65 }, () => 'a') } }));
    check(line({ ...base, native: Object.fromEntries(Array.from({ length: 16 }, (_, index) => [index ? `s${index}` : 'id', 'v'])) }));
    check(line({ ...base, native: Object.fromEntries(Array.from({ length: 17 }, (_, index) => [index ? `s${index}` : 'id', 'v'])) }));
    check(line({ ...base, meta: Object.fromEntries(Array.from({ length: 64 }, (_, index) => [`m${index}`, index])) }));
    check(line({ ...base, meta: Object.fromEntries(Array.from({ length: 65 }, (_, index) => [`m${index}`, index])) }));
    const { text: _text, ...bodiless } = base;
    check(line({ ...bodiless, attachments: Array.from({ length: 256 }, () => ({ status: 'stored', sha256: BLOB, size: 1, mime: 'a/b' })) }));
    check(line({ ...bodiless, attachments: Array.from({ length: 257 }, () => ({ status: 'stored', sha256: BLOB, size: 1, mime: 'a/b' })) }));
  });

  it('reads long strings four bytes at a time yet stops at every byte that matters, at every alignment', () => {
    const base = VALID[0] as Record<string, unknown>;
    const text = 'Indicative levels for the 5y: 4.12 / 4.15, size up to 50m. '.repeat(2);
    const plain = line({ ...base, text });
    const textAt = plain.indexOf(text);
    // Raw bytes a string may not hold (or that need their own checks), in place of one text byte.
    const inserts = [[0x00], [0x01], [0x1f], [0x20], [0x22], [0x5c], [0x5c, 0x75], [0x7f], [0x80], [0xc3, 0xa9], [0xc3], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x98, 0x80], [0xff], [0x0a]];
    let cases = 0;
    for (let position = 0; position < 40; position++) {
      for (const insert of inserts) {
        const bytes = Buffer.concat([plain.subarray(0, textAt + position), Buffer.from(insert), plain.subarray(textAt + position + 1)]);
        // The record at each offset in its buffer: the words fall differently on the string.
        for (let offset = 0; offset < 4; offset++) {
          const buffer = Buffer.alloc(offset + bytes.length + 8, 0x61);
          bytes.copy(buffer, offset);
          const scanned = scanner.scan(buffer, offset, offset + bytes.length);
          const expected = reference(bytes);
          expect(scanned !== undefined && { seq: scanned.seq, fingerprint: scanned.keyFingerprint }, `${insert.join(',')} at ${position}+${offset}`).toEqual(expected.ok && { seq: expected.facts.seq, fingerprint: expected.facts.fingerprint });
          cases++;
        }
      }
    }
    expect(cases).toBe(40 * inserts.length * 4);
    // A string the record does not close, followed in the buffer by plain bytes and a quote: never read past the record's end.
    for (let cut = 1; cut <= 24; cut++) {
      const open = plain.subarray(0, textAt + text.length - cut);
      const buffer = Buffer.concat([open, Buffer.from(`${'a'.repeat(cut)}","v":1}`)]);
      expect(scanner.scan(buffer, 0, open.length)).toBeUndefined();
    }
  });

  it('never decides for a stream name that is no valid record stream', () => {
    for (const stream of ['Bad:alice', 'whatsapp:a..b', 'whatsapp', '']) {
      expect(new RecordScanner(stream).scan(line({ ...(VALID[0] as object), stream }))).toBeUndefined();
    }
  });

  it('fingerprints an ASCII key from its bytes as keyFingerprint does from its string', () => {
    for (const key of ['', 'a', 'message:0', 'x'.repeat(1024), '~!@#$%^&*()']) {
      const bytes = Buffer.from(`"${key}"`, 'latin1');
      expect(keyFingerprintOfAscii(bytes, 1, bytes.length - 1)).toBe(keyFingerprint(key));
    }
  });
});
