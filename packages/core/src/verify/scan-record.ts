/**
 * Internal: what parallel verification needs from one stored record (seq, where `prev` is, the
 * key's fingerprint, the blobs it names), read from its bytes in one pass that also proves them
 * the canonical (RFC 8785) form of a valid schema v1 record of the expected stream — without
 * decoding the line to a string, building its object or serializing anything again.
 *
 * Like scan-canonical.ts, it only ever *accepts*: whatever it cannot prove — a kind or field
 * it does not know (membership and system details), a fraction, a negative number, an escape
 * JSON.stringify would not write, invalid UTF-8, an order problem, a stream other than the
 * one being verified, anything wrong at all — makes it return `undefined`, and the caller
 * decodes the line with `decodeRecord`, which decides and names the problem. So it can make
 * verification faster but never changes what is accepted: it accepts only bytes that
 * `decodeRecord` accepts, with the same seq, prev, key and blobs (scan-record.test.ts checks
 * this against `decodeRecord` on valid records and hostile mutations of them).
 *
 * The rules it checks are validate-record.ts's, field by field, on the bytes:
 * - structure: no whitespace; member names ASCII without escapes, strictly ascending;
 * - strings: valid UTF-8 (checked per sequence, as WHATWG's decoder does), no raw control
 *   character, only the escapes JSON.stringify writes; lengths counted in UTF-16 units;
 * - numbers: non-negative integers in canonical form within the safe range.
 *
 * A rule added to validate-record.ts must be added here too, or its field left to
 * `decodeRecord` (a `case` that calls `undecided()`); a new field name already is.
 */
import { MAX_RECORD_BYTES, COMMON_FIELDS, KIND_RULES, RECORD_KINDS, RECORD_VERSION } from '../record/record.ts';
import { MAX_SHORT_STRING } from '../record/validate-record.ts';
import { STREAM_PATTERN } from '../record/stream-name.ts';
import { keyFingerprint, keyFingerprintOfAscii } from './key-fingerprints.ts';

/** A blob a record names: field (as `blobRefs` names it), SHA-256 hex, size. */
export type ScannedBlob = readonly [field: string, sha256: string, size: number];

export interface ScannedRecord {
  readonly seq: number;
  /** Offset in the bytes scanned of `prev`'s 64 lowercase hex characters. */
  readonly prevAt: number;
  /** `keyFingerprint(record.key)`. */
  readonly keyFingerprint: number;
  /** The blobs `blobRefs(record)` lists, in its order; `undefined` for none. */
  readonly blobs: readonly ScannedBlob[] | undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;

/** Byte classes inside a string: 0 plain ASCII, 1 quote, 2 backslash, 3 control, 4 non-ASCII. */
const CLASS = new Uint8Array(256);
for (let byte = 0; byte < 256; byte++) CLASS[byte] = byte < 0x20 ? 3 : byte === QUOTE ? 1 : byte === BACKSLASH ? 2 : byte >= 0x80 ? 4 : 0;

/** 1 for the lowercase hex digits 0-9 a-f. */
const HEX = new Uint8Array(256);
for (let byte = 0; byte < 256; byte++) HEX[byte] = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) ? 1 : 0;

/** Thrown (never out of this file) when the scan cannot prove the line valid; made once. */
class Undecided extends Error {}
const UNDECIDED = new Undecided('not decided by the record scan');
function undecided(): never {
  throw UNDECIDED;
}

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');
/** The text of each name buffer of the lists below (handed to `fixed`'s callbacks without decoding). */
const NAME_TEXT = new Map<Buffer, string>();
const names = (list: readonly string[]): Buffer[] =>
  [...list].sort().map((name) => {
    const bytes = ascii(name);
    NAME_TEXT.set(bytes, name);
    return bytes;
  });

const TOP = [...new Set<string>([...COMMON_FIELDS, ...RECORD_KINDS.flatMap((kind) => [...KIND_RULES[kind].allowed, ...KIND_RULES[kind].required])])].sort();
const TOP_NAMES = TOP.map(ascii);
const bit = (name: string): number => 1 << TOP.indexOf(name);
const maskOf = (list: readonly string[]): number => list.reduce((mask, name) => mask | bit(name), 0);
/** Per kind: [allowed, required] field masks. */
const KIND_MASKS = new Map(RECORD_KINDS.map((kind) => [kind, [maskOf([...COMMON_FIELDS, ...KIND_RULES[kind].allowed]), maskOf([...COMMON_FIELDS, ...KIND_RULES[kind].required])] as const]));
const TEXT = bit('text');
const TEXT_BLOB = bit('textBlob');
const ATTACHMENTS = bit('attachments');
const MESSAGE = KIND_MASKS.get('message');
const KIND_NAMES = RECORD_KINDS.map(ascii);
const KIND_MASK_LIST = RECORD_KINDS.map((kind) => KIND_MASKS.get(kind));

/** The kind's masks. */
function kindMasks(): readonly [number, number] {
  string();
  if (!spanPlain) undecided();
  for (const [index, name] of KIND_NAMES.entries()) if (equalAt(name, spanStart, spanEnd)) return KIND_MASK_LIST[index] as readonly [number, number];
  return undecided();
}

/** The masks need one bit per field. */
const USABLE = TOP.length <= 31;

const SOURCE = names(['package', 'version', 'upstream', 'policy']);
const CONVERSATION = names(['id', 'type', 'title']);
const PARTY = names(['id', 'name', 'aliases']);
const BLOB_REF = names(['sha256', 'size']);
const RAW = names(['sha256', 'size', 'format']);
const ATTACHMENT = names(['status', 'sha256', 'size', 'mime', 'name', 'reason']);
const REACTION = names(['value', 'action']);
const DELETION = names(['scope', 'admin']);
const RECEIPT = names(['status']);
const PROBLEM = names(['reason', 'detail']);
const GAP = names(['reason', 'from', 'to', 'missing']);
const ADD_REMOVE = ['add', 'remove'].map(ascii);
const DELIVERED_READ_PLAYED = ['delivered', 'read', 'played'].map(ascii);
const DIRECT_GROUP_CHANNEL = ['direct', 'group', 'channel'].map(ascii);
const EVERYONE_ME = ['everyone', 'me'].map(ascii);
const INBOUND_OUTBOUND = ['inbound', 'outbound'].map(ascii);
const TRUE = ascii('true');
const FALSE = ascii('false');

// The bytes being scanned, the position in them, and the span of the last string read.
const EMPTY = Buffer.alloc(0);
let line: Buffer = EMPTY;
let at = 0;
/** Where the record being scanned ends (its newline, or the end of the bytes). */
let lineEnd = 0;
/**
 * The bytes' whole buffer as 32-bit words, for {@link plainRun}; `wordBase` is where `line`
 * starts in it. Made once per buffer (verification scans a chunk's records from one buffer).
 */
let words: Int32Array = new Int32Array(0);
let wordsOf: ArrayBufferLike | undefined;
let wordBase = 0;
let spanStart = 0;
let spanEnd = 0;
/** The last string was ASCII without escapes: its bytes are its UTF-16 code units. */
let spanPlain = true;

/** Scans the records of one stream. */
export class RecordScanner {
  private readonly stream: Buffer | undefined;
  private readonly channel: Buffer;
  private readonly account: Buffer;

  constructor(stream: string) {
    const parts = STREAM_PATTERN.exec(stream);
    // A stream name that is no valid record stream: every record of it goes to decodeRecord.
    const usable = USABLE && parts !== null && !(parts[2] as string).includes('..');
    this.stream = usable ? ascii(stream) : undefined;
    this.channel = ascii(parts?.[1] ?? '');
    this.account = ascii(parts?.[2] ?? '');
  }

  /**
   * The facts of the record in `bytes` from `start` to `end` (one stored record, without its
   * newline; offsets in the result are in `bytes`), or `undefined`: decode it with
   * `decodeRecord`. Nothing past `end` is accepted as part of the record.
   */
  scan(bytes: Buffer, start = 0, end = bytes.length): ScannedRecord | undefined {
    if (!this.stream || end - start > MAX_RECORD_BYTES || start < 0 || end > bytes.length) return undefined;
    line = bytes;
    at = start;
    lineEnd = end;
    // Same buffer object and same length (a resizable buffer that changed size is re-viewed).
    if (bytes.buffer !== wordsOf || words.length !== bytes.buffer.byteLength >>> 2) {
      wordsOf = bytes.buffer;
      words = new Int32Array(bytes.buffer, 0, bytes.buffer.byteLength >>> 2);
    }
    wordBase = bytes.byteOffset;
    try {
      const facts = this.record();
      return at === end ? facts : undefined;
    } catch {
      // UNDECIDED, or anything unforeseen: decodeRecord decides.
      return undefined;
    } finally {
      line = EMPTY;
    }
  }

  private record(): ScannedRecord {
    expect(0x7b);
    let present = 0;
    let next = 0;
    let seq = 0;
    let prevAt = -1;
    let fingerprint = 0;
    let kind: readonly [number, number] | undefined;
    let attachments: ScannedBlob[] | undefined;
    let raw: ScannedBlob | undefined;
    let textBlob: ScannedBlob | undefined;
    for (;;) {
      const index = member(TOP_NAMES, next);
      next = index + 1;
      present |= 1 << index;
      switch (TOP[index]) {
        case 'account':
          same(this.account);
          break;
        case 'attachments':
          attachments = attachmentList();
          break;
        case 'capturedAt':
        case 'sentAt':
          timestamp();
          break;
        case 'channel':
          same(this.channel);
          break;
        case 'conversation':
          conversation();
          break;
        case 'deletion':
          fixed(DELETION, 0b10, (name) => {
    if (name === 'admin') boolean();
    else oneOf(EVERYONE_ME);
  });
          break;
        case 'direction':
          oneOf(INBOUND_OUTBOUND);
          break;
        case 'forwarded':
          literal(TRUE);
          break;
        case 'gap':
          fixed(GAP, 0b0100, (name) => {
    if (name === 'missing') integer();
    else shortString();
  });
          break;
        case 'key':
          fingerprint = key();
          break;
        case 'kind':
          kind = kindMasks();
          break;
        case 'mentions':
          stringList(1024);
          break;
        case 'meta':
          meta();
          break;
        case 'native':
        case 'replyTo':
        case 'target':
          nativeRef();
          break;
        case 'prev':
          sha256();
          prevAt = spanStart;
          break;
        case 'problem':
          fixed(PROBLEM, 0b10, shortString);
          break;
        case 'raw':
          raw = blobRef('raw', RAW, 0b111);
          break;
        case 'reaction':
          fixed(REACTION, 0b11, (name) => {
    if (name === 'action') oneOf(ADD_REMOVE);
    else shortString();
  });
          break;
        case 'receipt':
          fixed(RECEIPT, 0b1, () => { oneOf(DELIVERED_READ_PLAYED); });
          break;
        case 'sender':
          party();
          break;
        case 'seq':
          seq = integer();
          if (seq < 1) undecided();
          break;
        case 'source':
          fixed(SOURCE, 0b1001, shortString);
          break;
        case 'stream':
          same(this.stream as Buffer);
          break;
        case 'text':
          string();
          break;
        case 'textBlob':
          textBlob = blobRef('textBlob', BLOB_REF, 0b11);
          break;
        case 'v':
          if (integer() !== RECORD_VERSION) undecided();
          break;
        default:
          // membership, system: decodeRecord checks them.
          undecided();
      }
      if (line[at] === 0x7d) break;
      expect(COMMA);
    }
    at++;
    if (!kind || (present & ~kind[0]) !== 0 || (present & kind[1]) !== kind[1]) undecided();
    if ((present & TEXT) !== 0 && (present & TEXT_BLOB) !== 0) undecided();
    if (kind === MESSAGE && (present & (TEXT | TEXT_BLOB | ATTACHMENTS)) === 0) undecided();
    const blobs = raw || textBlob || attachments ? [...(raw ? [raw] : []), ...(textBlob ? [textBlob] : []), ...(attachments ?? [])] : undefined;
    return { seq, prevAt, keyFingerprint: fingerprint, blobs };
  }
}

function expect(byte: number): void {
  if (line[at] !== byte) undecided();
  at++;
}

/**
 * A member name (and its colon) from the ascending list `list`, at index `from` or later: so
 * the names of an object are strictly ascending, none repeats and none is unknown.
 */
function member(list: readonly Buffer[], from: number): number {
  expect(QUOTE);
  const start = at;
  // The names are ASCII without quotes: a name followed by a quote is the whole member name.
  for (let index = from; index < list.length; index++) {
    const name = list[index] as Buffer;
    const end = start + name.length;
    if (line[end] === QUOTE && equalAt(name, start, end)) {
      at = end + 1;
      expect(COLON);
      return index;
    }
  }
  return undecided();
}

/** True when the line's bytes from `start` to `end` are `expected`. */
function equalAt(expected: Buffer, start: number, end: number): boolean {
  if (expected.length !== end - start) return false;
  const bytes = line;
  for (let index = 0; index < expected.length; index++) if (bytes[start + index] !== expected[index]) return false;
  return true;
}

/** A free member name matching `^[A-Za-z][A-Za-z0-9_<extra>]{0,max-1}$`, above the previous one (`previous` = [start, end] or empty). */
function freeName(max: number, dotDash: boolean, previous: number[]): void {
  expect(QUOTE);
  const start = at;
  for (let code = line[at] as number; code !== QUOTE; code = line[++at] as number) {
    const letter = (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);
    const other = (code >= 0x30 && code <= 0x39) || code === 0x5f || (dotDash && (code === 0x2e || code === 0x2d));
    if (!(letter || (other && at > start))) undecided();
  }
  const end = at;
  if (end === start || end - start > max) undecided();
  // Strictly above the previous name (compare() is 1 when this one sorts after it).
  if (previous.length === 2 && !after(previous[0] as number, previous[1] as number, start, end)) undecided();
  previous[0] = start;
  previous[1] = end;
  at++;
  expect(COLON);
}

/** True when the name from `start` to `end` sorts strictly after the one from `a` to `aEnd` (byte order). */
function after(a: number, aEnd: number, start: number, end: number): boolean {
  const bytes = line;
  for (let index = 0; ; index++) {
    if (start + index === end) return false;
    if (a + index === aEnd) return true;
    const x = bytes[a + index] as number;
    const y = bytes[start + index] as number;
    if (x !== y) return y > x;
  }
}

/** A string: sets its span, returns its length in UTF-16 code units. */
function string(): number {
  expect(QUOTE);
  spanStart = at;
  let units = 0;
  let plain = true;
  const bytes = line;
  for (;;) {
    const from = at;
    let index = plainRun(at);
    while (CLASS[bytes[index] as number] === 0) index++;
    at = index;
    units += index - from;
    const code = bytes[index];
    if (code === QUOTE) break;
    plain = false;
    units++;
    if (code === BACKSLASH) at = escape(at + 1);
    else if (code !== undefined && code >= 0x80) units += utf8(code) - 1;
    else undecided(); // a raw control character, or the end of the line
  }
  spanEnd = at;
  spanPlain = plain;
  at++;
  return units;
}

/** Bytes in a run before {@link plainRun} reads words: shorter runs are cheaper byte by byte. */
const WORD_RUN = 16;

/**
 * Where the run of plain string bytes (printable ASCII other than quote and backslash, class 0)
 * that starts at `index` ends, or an earlier position — never a later one: the caller reads
 * on byte by byte from there. Reads four bytes at a time (a long text is most of a record),
 * only whole words before the record's end. A word is skipped only when none of its bytes is
 * ≥ 0x80 (its sign bits), < 0x20, a quote or a backslash: the last three by the exact
 * "has a byte below n" / "has a zero byte" tests on 32 bits — `(x - 0x01…01) & ~x` — whose
 * `& ~x` can go: it only clears sign bits of bytes ≥ 0x80, and a word with one already stops
 * the run (a borrow can only follow a byte that matched, so no match is missed; a false match
 * only stops the run early).
 */
function plainRun(index: number): number {
  if (lineEnd - index < WORD_RUN) return index;
  const bytes = line;
  while (((wordBase + index) & 3) !== 0) {
    if (CLASS[bytes[index] as number] !== 0) return index;
    index++;
  }
  let word = (wordBase + index) >>> 2;
  const last = (wordBase + lineEnd) >>> 2;
  for (; word < last; word++) {
    const value = words[word] as number;
    if (((value | (value - 0x20202020) | ((value ^ 0x22222222) - 0x01010101) | ((value ^ 0x5c5c5c5c) - 0x01010101)) & 0x80808080) !== 0) break;
  }
  return word * 4 - wordBase;
}

/** After a backslash: the escapes JSON.stringify writes (short forms, `\u00xx` for other control characters). */
function escape(position: number): number {
  const code = line[position];
  if (code === QUOTE || code === BACKSLASH || code === 0x62 || code === 0x66 || code === 0x6e || code === 0x72 || code === 0x74) return position + 1;
  if (code !== 0x75 || line[position + 1] !== 0x30 || line[position + 2] !== 0x30) undecided();
  const high = line[position + 3];
  const low = lowerHex(line[position + 4]);
  if ((high !== 0x30 && high !== 0x31) || low < 0) undecided();
  const value = (high === 0x31 ? 16 : 0) + low;
  if (value === 0x08 || value === 0x09 || value === 0x0a || value === 0x0c || value === 0x0d) undecided();
  return position + 5;
}

function lowerHex(code: number | undefined): number {
  if (code === undefined) return -1;
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

/** One UTF-8 sequence at `at` (lead byte `lead`), as the Unicode standard's table 3-7 allows: its UTF-16 length. */
function utf8(lead: number): number {
  let low = 0x80;
  let high = 0xbf;
  let more: number;
  if (lead >= 0xc2 && lead <= 0xdf) more = 1;
  else if (lead >= 0xe0 && lead <= 0xef) {
    more = 2;
    if (lead === 0xe0) low = 0xa0;
    if (lead === 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    more = 3;
    if (lead === 0xf0) low = 0x90;
    if (lead === 0xf4) high = 0x8f;
  } else return undecided();
  for (let index = 1; index <= more; index++) {
    const code = line[at + index];
    if (code === undefined || code < low || code > high) undecided();
    low = 0x80;
    high = 0xbf;
  }
  at += more + 1;
  return more === 3 ? 2 : 1;
}

/** The last string's text (it is plain ASCII). */
function spanText(): string {
  if (!spanPlain) undecided();
  return line.toString('latin1', spanStart, spanEnd);
}

/** A string of 1 to 1024 UTF-16 units (validate-record's short string). */
function shortString(): void {
  const units = string();
  if (units === 0 || units > MAX_SHORT_STRING) undecided();
}

/** The string `expected` (quoted, plain ASCII). */
function same(expected: Buffer): void {
  string();
  if (!spanPlain || !equalAt(expected, spanStart, spanEnd)) undecided();
}

/** One of the strings `options` (plain ASCII). */
function oneOf(options: readonly Buffer[]): void {
  string();
  if (!spanPlain) undecided();
  for (const option of options) if (equalAt(option, spanStart, spanEnd)) return;
  undecided();
}

function literal(word: Buffer): void {
  if (!equalAt(word, at, at + word.length)) undecided();
  at += word.length;
}

function boolean(): void {
  literal(line[at] === 0x74 ? TRUE : FALSE);
}

/** A non-negative safe integer in canonical form. */
function integer(): number {
  const start = at;
  let value = 0;
  for (let code = line[at] as number; code >= 0x30 && code <= 0x39; code = line[++at] as number) value = value * 10 + (code - 0x30);
  const digits = at - start;
  if (digits === 0 || digits > 16 || (line[start] === 0x30 && digits > 1)) undecided();
  const next = line[at];
  if (next === 0x2e || next === 0x65 || next === 0x45 || !Number.isSafeInteger(value)) undecided();
  return value;
}

/** 64 lowercase hex characters. */
function sha256(): void {
  string();
  if (spanEnd - spanStart !== 64) undecided();
  const bytes = line;
  for (let index = spanStart; index < spanEnd; index++) if (HEX[bytes[index] as number] === 0) undecided();
}

/** {@link sha256}, as a string. */
function sha256Text(): string {
  sha256();
  return line.toString('latin1', spanStart, spanEnd);
}

/** `YYYY-MM-DDTHH:MM:SS(.f{1,9})?Z` naming a real UTC date and time. */
function timestamp(): void {
  string();
  const s = spanStart;
  const length = spanEnd - s;
  if (!spanPlain || length < 20 || length > 30) undecided();
  const digits = (from: number, count: number): number => {
    let value = 0;
    for (let index = s + from; index < s + from + count; index++) {
      const code = line[index] as number;
      if (code < 0x30 || code > 0x39) undecided();
      value = value * 10 + code - 0x30;
    }
    return value;
  };
  const punctuation = line[s + 4] === 0x2d && line[s + 7] === 0x2d && line[s + 10] === 0x54 && line[s + 13] === 0x3a && line[s + 16] === 0x3a && line[spanEnd - 1] === 0x5a;
  if (!punctuation) undecided();
  if (length > 20) {
    if (line[s + 19] !== 0x2e || length === 21) undecided();
    digits(20, length - 21);
  }
  const year = digits(0, 4);
  const month = digits(5, 2);
  const day = digits(8, 2);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  if (month < 1 || month > 12 || day < 1 || day > days || digits(11, 2) > 23 || digits(14, 2) > 59 || digits(17, 2) > 59) undecided();
}

/** The key (a short string) and its fingerprint. */
function key(): number {
  const units = string();
  if (units === 0 || units > MAX_SHORT_STRING) undecided();
  if (!spanPlain) return keyFingerprint(JSON.parse(line.toString('utf8', spanStart - 1, spanEnd + 1)) as string);
  return keyFingerprintOfAscii(line, spanStart, spanEnd);
}

/**
 * An object whose names come from `list` (ascending); `required` has bit i set for each
 * `list[i]` that must be present; `value` reads the value of the member named.
 */
function fixed(list: readonly Buffer[], required: number, value: (name: string) => void): number {
  expect(0x7b);
  let present = 0;
  let next = 0;
  if (line[at] !== 0x7d) {
    for (;;) {
      const index = member(list, next);
      next = index + 1;
      present |= 1 << index;
      value(NAME_TEXT.get(list[index] as Buffer) as string);
      if (line[at] === 0x7d) break;
      expect(COMMA);
    }
  }
  at++;
  if ((present & required) !== required) undecided();
  return present;
}

function conversationMember(name: string): void {
  if (name === 'type') oneOf(DIRECT_GROUP_CHANNEL);
  else shortString();
}

function partyMember(name: string): void {
  if (name === 'aliases') stringList(64);
  else shortString();
}

function conversation(): void {
  // names: id, title, type
  fixed(CONVERSATION, 0b101, conversationMember);
}

function party(): void {
  // names: aliases, id, name
  fixed(PARTY, 0b010, partyMember);
}

/** A blob reference (`raw`: format, sha256, size; `textBlob`: sha256, size). */
function blobRef(field: string, list: readonly Buffer[], required: number): ScannedBlob {
  let hash = '';
  let size = 0;
  fixed(list, required, (name) => {
    if (name === 'sha256') hash = sha256Text();
    else if (name === 'size') size = integer();
    else shortString();
  });
  return [field, hash, size];
}

function stringList(max: number): void {
  expect(0x5b);
  for (let count = 1; ; count++) {
    if (count > max) undecided();
    shortString();
    if (line[at] === 0x5d) break;
    expect(COMMA);
  }
  at++;
}

/** 1 to 256 attachments; the stored ones as blobs. */
function attachmentList(): ScannedBlob[] {
  const blobs: ScannedBlob[] = [];
  expect(0x5b);
  for (let index = 0; ; index++) {
    if (index === 256) undecided();
    let hash = '';
    let size = 0;
    let status = '';
    // names: mime, name, reason, sha256, size, status
    const present = fixed(ATTACHMENT, 0b100000, (name) => {
      if (name === 'sha256') hash = sha256Text();
      else if (name === 'size') size = integer();
      else if (name === 'status') {
        string();
        status = spanText();
      } else shortString();
    });
    if (status === 'stored') {
      // status, sha256, size, mime required; no reason
      if ((present & 0b111001) !== 0b111001 || (present & 0b100) !== 0) undecided();
      blobs.push([`attachments[${index}]`, hash, size]);
    } else if (status === 'unavailable') {
      if ((present & 0b100) === 0) undecided();
    } else undecided();
    if (line[at] === 0x5d) break;
    expect(COMMA);
  }
  at++;
  return blobs;
}

/** `native`, `target`, `replyTo`: scope names → short strings, `id` among them, at most 16. */
function nativeRef(): void {
  expect(0x7b);
  const previous: number[] = [];
  let id = false;
  for (let count = 1; ; count++) {
    if (count > 16) undecided();
    freeName(32, false, previous);
    const start = previous[0] as number;
    if ((previous[1] as number) - start === 2 && line[start] === 0x69 && line[start + 1] === 0x64) id = true;
    shortString();
    if (line[at] === 0x7d) break;
    expect(COMMA);
  }
  at++;
  if (!id) undecided();
}

/** `meta`: 1 to 64 names → a short string, a boolean or a non-negative safe integer. */
function meta(): void {
  expect(0x7b);
  const previous: number[] = [];
  for (let count = 1; ; count++) {
    if (count > 64) undecided();
    freeName(64, true, previous);
    const code = line[at];
    if (code === QUOTE) shortString();
    else if (code === 0x74 || code === 0x66) boolean();
    else integer();
    if (line[at] === 0x7d) break;
    expect(COMMA);
  }
  at++;
}
