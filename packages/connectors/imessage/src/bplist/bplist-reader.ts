/**
 * A minimal reader for Apple binary property lists (`bplist00`), enough for chat.db's
 * `message_summary_info`: null, booleans, integers, reals, dates, data, ASCII and UTF-16
 * strings, UIDs, arrays, sets and dictionaries. Layout: header, objects, an offset table, and
 * a 32-byte trailer giving the offset size, reference size, object count, root object and
 * offset-table position.
 *
 * Hostile input: every offset and length is checked against the buffer, object references
 * against the object count, nesting is capped and a container that contains itself is
 * rejected; failures are {@link BplistError}. Containers may share children, so one small
 * object can be read many times: the reads, and the characters of the strings they build,
 * are bounded by the input size ({@link bplistWorkLimit}) and a fixed cap.
 */
import { BplistError } from '../errors.ts';

/** A property-list value. Integers beyond 2^53 are bigints; dates are JS `Date`s. */
export type PlistValue = null | boolean | number | bigint | string | Uint8Array | Date | PlistUid | readonly PlistValue[] | PlistDict;

/** A dictionary: string keys only. */
export interface PlistDict {
  readonly [key: string]: PlistValue;
}

/** A keyed-archiver object reference (`CF$UID`). */
export class PlistUid {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

/** Seconds between 1970-01-01 and 2001-01-01, the plist date epoch. */
const PLIST_EPOCH_MS = 978_307_200_000;

const MAX_DEPTH = 32;
/** Objects read in total: stops a small file whose containers share children from expanding exponentially. */
const MAX_READS = 100_000;
/** Work (objects read plus string characters built) any plist may cost, however large. */
const MAX_WORK = 4_000_000;

/**
 * The most work a plist of `byteLength` bytes may cost: one unit per object read and per
 * string character built, 16 per input byte plus 4,096, at most 4,000,000. A string shared
 * by many containers is built once per reference, so this stops a few kilobytes from
 * becoming gigabytes of strings; honest summaries cost a few units per byte.
 */
export function bplistWorkLimit(byteLength: number): number {
  return Math.min(MAX_WORK, 4096 + 16 * byteLength);
}
const TRAILER = 32;
const utf16be = new TextDecoder('utf-16be', { fatal: true });

/** Parses a `bplist00` buffer and returns its root object. */
export function parseBplist(bytes: Uint8Array): PlistValue {
  if (!(bytes instanceof Uint8Array) || bytes.length < 8 + TRAILER) throw new BplistError('too short');
  if (String.fromCharCode(...bytes.subarray(0, 8)) !== 'bplist00') throw new BplistError('not a bplist00 header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const t = bytes.length - TRAILER;
  const offsetSize = view.getUint8(t + 6);
  const refSize = view.getUint8(t + 7);
  const count = bigToIndex(view.getBigUint64(t + 8), 'object count');
  const root = bigToIndex(view.getBigUint64(t + 16), 'root object');
  const tableAt = bigToIndex(view.getBigUint64(t + 24), 'offset table');
  if (![1, 2, 4, 8].includes(offsetSize) || ![1, 2, 4, 8].includes(refSize)) throw new BplistError('bad offset or reference size');
  if (count === 0 || root >= count || tableAt < 8 || tableAt + count * offsetSize > t) throw new BplistError('trailer points outside the file');

  const uint = (at: number, size: number): number => {
    if (at + size > t) throw new BplistError('value runs past the object area');
    let value = 0;
    for (let i = 0; i < size; i++) value = value * 256 + (bytes[at + i] ?? 0);
    if (!Number.isSafeInteger(value)) throw new BplistError('offset or length too large');
    return value;
  };
  const offsetOf = (ref: number): number => {
    if (ref >= count) throw new BplistError('object reference out of range');
    const offset = uint(tableAt + ref * offsetSize, offsetSize);
    if (offset < 8 || offset >= tableAt) throw new BplistError('object offset outside the object area');
    return offset;
  };
  const active = new Set<number>();
  let reads = 0;
  let work = bplistWorkLimit(bytes.length);
  const spend = (units: number): void => {
    work -= units;
    if (work < 0) throw new BplistError(`more work than a plist of ${bytes.length} bytes may cost (${bplistWorkLimit(bytes.length)}): shared objects expand too far`);
  };

  const read = (ref: number, depth: number): PlistValue => {
    if (depth > MAX_DEPTH) throw new BplistError('nested too deeply');
    if (active.has(ref)) throw new BplistError('a container contains itself');
    if (++reads > MAX_READS) throw new BplistError(`more than ${MAX_READS} objects to read`);
    spend(1);
    const at = offsetOf(ref);
    const marker = bytes[at] ?? 0;
    const type = marker >> 4;
    const info = marker & 0x0f;
    // Length of a sized object: low nibble, or 0xF then an int object holding it.
    const sized = (): { length: number; start: number } => {
      if (info !== 0x0f) return { length: info, start: at + 1 };
      const intMarker = bytes[at + 1] ?? 0;
      if (intMarker >> 4 !== 1) throw new BplistError('bad extended length');
      const size = 1 << (intMarker & 0x0f);
      if (size > 8) throw new BplistError('bad extended length');
      return { length: uint(at + 2, size), start: at + 2 + size };
    };
    const span = (start: number, length: number): Uint8Array => {
      if (start + length > tableAt) throw new BplistError('object runs past the object area');
      return bytes.subarray(start, start + length);
    };
    switch (type) {
      case 0x0:
        if (marker === 0x00) return null;
        if (marker === 0x08 || marker === 0x09) return marker === 0x09;
        throw new BplistError('unknown simple value');
      case 0x1: {
        const size = 1 << info;
        if (size > 16) throw new BplistError('integer too wide');
        const raw = span(at + 1, size);
        let value = 0n;
        for (const byte of raw.subarray(size === 16 ? 8 : 0)) value = (value << 8n) | BigInt(byte);
        if (size >= 8) value = BigInt.asIntN(64, value);
        return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
      }
      case 0x2:
      case 0x3: {
        const size = 1 << (type === 0x3 ? 3 : info);
        if (size !== 4 && size !== 8) throw new BplistError('bad real size');
        const raw = span(at + 1, size);
        const number = size === 4 ? new DataView(raw.buffer, raw.byteOffset, 4).getFloat32(0) : new DataView(raw.buffer, raw.byteOffset, 8).getFloat64(0);
        return type === 0x3 ? new Date(PLIST_EPOCH_MS + number * 1000) : number;
      }
      case 0x4: {
        const { length, start } = sized();
        return span(start, length);
      }
      case 0x5: {
        const { length, start } = sized();
        const raw = span(start, length);
        spend(length);
        let out = '';
        for (const byte of raw) {
          if (byte > 0x7f) throw new BplistError('ASCII string with a non-ASCII byte');
          out += String.fromCharCode(byte);
        }
        return out;
      }
      case 0x6: {
        const { length, start } = sized();
        const raw = span(start, length * 2);
        spend(length);
        try {
          return utf16be.decode(raw);
        } catch {
          throw new BplistError('UTF-16 string is not well formed');
        }
      }
      case 0x8:
        return new PlistUid(uint(at + 1, info + 1));
      case 0xa:
      case 0xc:
      case 0xd: {
        const { length, start } = sized();
        const refs = type === 0xd ? length * 2 : length;
        span(start, refs * refSize);
        spend(refs);
        const refAt = (i: number): number => uint(start + i * refSize, refSize);
        active.add(ref);
        try {
          if (type !== 0xd) return Array.from({ length }, (_, i) => read(refAt(i), depth + 1));
          const out: Record<string, PlistValue> = {};
          for (let i = 0; i < length; i++) {
            const key = read(refAt(i), depth + 1);
            if (typeof key !== 'string') throw new BplistError('dictionary key is not a string');
            if (Object.hasOwn(out, key)) throw new BplistError('dictionary key appears twice');
            Object.defineProperty(out, key, { value: read(refAt(length + i), depth + 1), enumerable: true });
          }
          return out;
        } finally {
          active.delete(ref);
        }
      }
      default:
        throw new BplistError('unknown object type');
    }
  };
  return read(root, 0);
}

function bigToIndex(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new BplistError(`${what} out of range`);
  return Number(value);
}
