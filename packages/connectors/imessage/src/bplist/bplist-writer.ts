/**
 * A minimal `bplist00` writer, used only to build `message_summary_info` fixtures for tests
 * and the demo. Writes null, booleans, integers (bigint for 64-bit), reals, `{date}`, data,
 * strings (ASCII or UTF-16), arrays and dictionaries; every value is its own object.
 */
import { PlistUid, type PlistDict, type PlistValue } from './bplist-reader.ts';

/** Serializes `root` as a binary property list. */
export function encodeBplist(root: PlistValue): Uint8Array {
  const objects: number[][] = [];
  const refSize = 2;

  const add = (value: PlistValue): number => {
    const index = objects.length;
    const out: number[] = [];
    objects.push(out);
    const header = (type: number, length: number): void => {
      if (length < 15) return void out.push((type << 4) | length);
      out.push((type << 4) | 0x0f, 0x13, ...bigEndian(BigInt(length), 8));
    };
    const refs = (values: readonly PlistValue[]): number[] => values.map((v) => add(v));
    if (value === null) out.push(0x00);
    else if (typeof value === 'boolean') out.push(value ? 0x09 : 0x08);
    else if (typeof value === 'number' && Number.isInteger(value)) out.push(0x13, ...bigEndian(BigInt(value), 8));
    else if (typeof value === 'bigint') out.push(0x13, ...bigEndian(value, 8));
    else if (typeof value === 'number') out.push(0x23, ...float64(value));
    else if (typeof value === 'string') {
      if (isAscii(value)) {
        header(0x5, value.length);
        for (const char of value) out.push(char.charCodeAt(0));
      } else {
        header(0x6, value.length);
        for (let i = 0; i < value.length; i++) out.push(value.charCodeAt(i) >> 8, value.charCodeAt(i) & 0xff);
      }
    } else if (value instanceof Uint8Array) {
      header(0x4, value.length);
      for (const byte of value) out.push(byte);
    } else if (Array.isArray(value)) {
      const items = value as readonly PlistValue[];
      header(0xa, items.length);
      for (const ref of refs(items)) out.push(...bigEndian(BigInt(ref), refSize));
    } else if (value instanceof Date) out.push(0x33, ...float64((value.getTime() - 978_307_200_000) / 1000));
    else if (value instanceof PlistUid) out.push(0x80, value.value & 0xff);
    else {
      const entries = Object.entries(value as PlistDict);
      header(0xd, entries.length);
      const keyRefs = refs(entries.map(([key]) => key));
      const valueRefs = refs(entries.map(([, v]) => v));
      for (const ref of [...keyRefs, ...valueRefs]) out.push(...bigEndian(BigInt(ref), refSize));
    }
    return index;
  };
  add(root);

  const body: number[] = [...new TextEncoder().encode('bplist00')];
  const offsets: number[] = [];
  for (const object of objects) {
    offsets.push(body.length);
    for (const byte of object) body.push(byte);
  }
  const tableAt = body.length;
  for (const offset of offsets) body.push(...bigEndian(BigInt(offset), 4));
  body.push(0, 0, 0, 0, 0, 0, 4, refSize, ...bigEndian(BigInt(objects.length), 8), ...bigEndian(0n, 8), ...bigEndian(BigInt(tableAt), 8));
  return Uint8Array.from(body);
}

function isAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return false;
  return true;
}

function bigEndian(value: bigint, size: number): number[] {
  const out: number[] = [];
  const unsigned = BigInt.asUintN(size * 8, value);
  for (let i = size - 1; i >= 0; i--) out.push(Number((unsigned >> BigInt(8 * i)) & 0xffn));
  return out;
}

function float64(value: number): number[] {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setFloat64(0, value);
  return [...bytes];
}
