import { describe, expect, it } from 'vitest';
import { BplistError } from '../errors.ts';
import { parseSummaryInfo } from '../summary-info.ts';
import { decodeAttributedBody } from '../typedstream/attributed-body.ts';
import { encodeAttributedBody } from '../typedstream/typedstream-writer.ts';
import { PlistUid, parseBplist, type PlistValue } from './bplist-reader.ts';
import { encodeBplist } from './bplist-writer.ts';

// Written by an independent encoder, CPython's plistlib (FMT_BINARY), so the reader is not only
// checked against our own writer. Shapes as chat.db's message_summary_info holds them.
const PYTHON_UNSEND = '62706c6973743030d40102030405060c0d53616d63536f7472527270537573741000d107085130d2090a050b526c6f526c65100da10509081115191c202225272c2f3234360000000000000101000000000000000e00000000000000000000000000000037';
const PYTHON_EDIT =
  '62706c6973743030d801020304050607080916181d1e1f2021526563526570536f747253757374546e616d6553626967536e6567547768656ed10a0b5130a20c11d20d0e0f10516451742341c76513204000004d040b73747265616d7479706564d30d0e12131415536263672341c765133e2000004201025d32393242463943362d30303030a1171000d10a19d21a1b171c526c6f526c65100f096700630061006600e90020d83ddc4d13400000000000000013fffffffffffffffb3341c858ce0c00000008191c1f23272c3034393c3e4146484a5361686c757886888a8d9295989a9baab3bc00000000000001010000000000000022000000000000000000000000000000c5';
const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'));

describe('binary plist reader', () => {
  it('reads plists written by CPython plistlib', () => {
    expect(parseBplist(hex(PYTHON_UNSEND))).toEqual({ amc: 0, otr: { 0: { lo: 0, le: 13 } }, rp: [0], ust: true });
    const edit = parseBplist(hex(PYTHON_EDIT)) as Record<string, PlistValue>;
    expect(edit['ec']).toEqual({ 0: [{ d: 785000000.5, t: Uint8Array.from([4, 11, ...new TextEncoder().encode('streamtyped')]) }, { d: 785000060.25, t: Uint8Array.from([1, 2]), bcg: '292BF9C6-0000' }] });
    expect(edit).toMatchObject({ ep: [0], ust: true, name: 'café 👍', big: 2n ** 62n, neg: -5 });
    expect(edit['when']).toEqual(new Date('2026-11-21T09:30:00Z'));
  });

  it('round-trips every type through our writer', () => {
    const value: PlistValue = { n: null, t: true, f: false, i: 42, neg: -7, big: 2n ** 60n, real: 1.5, s: 'ascii', u: 'ünïcödé 👍', d: Uint8Array.from([1, 2, 3]), when: new Date('2026-01-02T03:04:05Z'), uid: new PlistUid(7), a: [1, 'two', [3]], long: 'x'.repeat(300), many: Array.from({ length: 40 }, (_, i) => i) };
    expect(parseBplist(encodeBplist(value))).toEqual(value);
  });

  const hostile: Record<string, Uint8Array> = {
    empty: new Uint8Array(0),
    'wrong magic': new TextEncoder().encode('bplist01'.padEnd(60, '\0')),
    'trailer pointing outside': (() => {
      const b = encodeBplist({ a: 1 });
      new DataView(b.buffer).setBigUint64(b.length - 8, 10n ** 12n);
      return b;
    })(),
    'object count of 2^63': (() => {
      const b = encodeBplist([1]);
      new DataView(b.buffer).setBigUint64(b.length - 24, 2n ** 63n);
      return b;
    })(),
    'bad offset size': (() => {
      const b = encodeBplist([1]);
      b[b.length - 26] = 3;
      return b;
    })(),
    'array that contains itself': (() => {
      const b = encodeBplist([[0]]);
      // object 1 is the inner array; point its single ref (2 bytes) at object 0, the outer array.
      const at = Buffer.from(b).indexOf(Buffer.from([0xa1, 0x00, 0x02]));
      b[at + 2] = 0;
      return b;
    })(),
    'string running past the objects': (() => {
      const b = encodeBplist('abc');
      b[8] = 0x5e; // claims 14 characters
      return b;
    })(),
    'non-string dictionary key': encodeBplist([1]).map((byte) => (byte === 0xa1 ? 0xd1 : byte)),
  };
  for (const [name, bytes] of Object.entries(hostile)) {
    it(`rejects ${name} with a typed error`, () => { expect(() => parseBplist(bytes)).toThrow(BplistError); });
  }

  it('refuses a small file whose shared children would expand exponentially', () => {
    // 30 levels, each an array holding the level below twice: 2^30 reads if followed naively.
    const pair = ['x', 'x'];
    expect(parseBplist(sharedChain(3))).toEqual([[pair, pair], [pair, pair]]);
    expect(() => parseBplist(sharedChain(30))).toThrow(BplistError);
  });

  it('rejects every truncation and survives a fuzz loop with typed errors only', () => {
    const whole = hex(PYTHON_EDIT);
    for (let length = 0; length < whole.length; length++) expect(() => parseBplist(whole.subarray(0, length))).toThrow(BplistError);
    let seed = 99;
    const next = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from(whole);
      bytes[8 + Math.floor(next() * (bytes.length - 8))] = Math.floor(next() * 256);
      try {
        parseBplist(bytes);
      } catch (error) {
        expect(error).toBeInstanceOf(BplistError);
      }
    }
  });
});

describe('message_summary_info', () => {
  it('reads an edit history: the original and each version, with dates and bodies', () => {
    const info = encodeBplist({ amc: 0, ec: { 0: [{ d: 785000000, t: encodeAttributedBody('First draft') }, { d: 785000030.5, t: encodeAttributedBody('Edit 1') }] }, ep: [0], otr: { 0: { lo: 0, le: 11 } }, ust: true });
    const summary = parseSummaryInfo(info);
    const versions = summary.edits.get(0) ?? [];
    expect(versions.map((v) => [v.index, v.seconds, v.body && decodeAttributedBody(v.body).text])).toEqual([
      [0, 785000000, 'First draft'],
      [1, 785000030.5, 'Edit 1'],
    ]);
    expect(summary.retractedParts).toEqual([]);
    expect(summary.originalParts).toEqual([0]);
  });

  it('reads unsent parts (the macOS 26 unsend) from a plist written by plistlib', () => {
    expect(parseSummaryInfo(hex(PYTHON_UNSEND))).toMatchObject({ retractedParts: [0], originalParts: [0] });
  });

  it('rejects a summary whose parts are not small integers', () => {
    expect(() => parseSummaryInfo(encodeBplist({ rp: ['zero'] }))).toThrow(BplistError);
    expect(() => parseSummaryInfo(encodeBplist({ ec: { x: [] } }))).toThrow(BplistError);
    expect(() => parseSummaryInfo(encodeBplist([1]))).toThrow(BplistError);
  });
});

/** A bplist of `levels` arrays where each array holds the next one twice (shared, not copied). */
function sharedChain(levels: number): Uint8Array {
  const body: number[] = [...new TextEncoder().encode('bplist00')];
  const offsets: number[] = [];
  for (let i = 0; i < levels; i++) {
    offsets.push(body.length);
    body.push(0xa2, i + 1, i + 1);
  }
  offsets.push(body.length);
  body.push(0x51, 0x78); // "x"
  const table = body.length;
  body.push(...offsets);
  body.push(0, 0, 0, 0, 0, 0, 1, 1, ...bigEndian(levels + 1), ...bigEndian(0), ...bigEndian(table));
  return Uint8Array.from(body);
}

function bigEndian(value: number): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((BigInt(value) >> BigInt(8 * (7 - i))) & 0xffn));
}
