/**
 * A minimal, strict DER reader and writer — just enough ASN.1 for RFC 3161 timestamps.
 * Every read is bounds-checked against its parent; indefinite lengths, non-minimal lengths and
 * multi-byte tags are refused, so hostile input ends in a `TIMESTAMP_INVALID` error, not a
 * crash or an out-of-bounds read.
 */
import { NoteError } from '../errors/note-errors.ts';

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
  GENERALIZED_TIME: 0x18,
} as const;

/** One DER element: its tag and where its header and content lie in `bytes`. */
export interface DerNode {
  readonly bytes: Uint8Array;
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

function invalid(why: string): NoteError {
  return new NoteError('TIMESTAMP_INVALID', `malformed DER: ${why}`);
}

/** Reads the element at `offset`, which must end by `limit`. */
export function readNode(bytes: Uint8Array, offset = 0, limit = bytes.length): DerNode {
  if (offset + 2 > limit) throw invalid('truncated header');
  const tag = bytes[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw invalid('multi-byte tags are not supported');
  let length = bytes[offset + 1] as number;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0) throw invalid('indefinite length');
    if (count > 4) throw invalid('length too large');
    if (contentStart + count > limit) throw invalid('truncated length');
    length = 0;
    for (let index = 0; index < count; index++) length = length * 256 + (bytes[contentStart + index] as number);
    if (bytes[contentStart] === 0 || length < 0x80) throw invalid('non-minimal length');
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw invalid('element runs past its container');
  return { bytes, tag, start: offset, contentStart, end };
}

/** Reads a whole buffer as exactly one element. */
export function readRoot(bytes: Uint8Array): DerNode {
  const node = readNode(bytes, 0, bytes.length);
  if (node.end !== bytes.length) throw invalid('trailing bytes after the element');
  return node;
}

/** The elements inside a constructed element, in order. */
export function children(node: DerNode): DerNode[] {
  if ((node.tag & 0x20) === 0) throw invalid(`element 0x${node.tag.toString(16)} is not constructed`);
  const out: DerNode[] = [];
  for (let offset = node.contentStart; offset < node.end; ) {
    const child = readNode(node.bytes, offset, node.end);
    out.push(child);
    offset = child.end;
    if (out.length > 10_000) throw invalid('too many elements');
  }
  return out;
}

/** Content bytes of `node`. */
export function content(node: DerNode): Uint8Array {
  return node.bytes.subarray(node.contentStart, node.end);
}

/** Header and content bytes of `node`. */
export function encoded(node: DerNode): Uint8Array {
  return node.bytes.subarray(node.start, node.end);
}

/** Checks `node`'s tag, naming `what` in the error. */
export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node?.tag !== tag) throw invalid(`${what} is missing or has the wrong type`);
  return node;
}

/** Dotted OID of an OBJECT IDENTIFIER element. */
export function readOid(node: DerNode | undefined, what: string): string {
  const bytes = content(expectTag(node, TAG.OID, what));
  if (bytes.length === 0 || bytes.length > 64) throw invalid(`${what} has a bad length`);
  const arcs: number[] = [];
  let value = 0;
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw invalid(`${what} has an arc too large`);
    if ((byte & 0x80) === 0) {
      if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else arcs.push(value);
      value = 0;
    }
  }
  if ((bytes[bytes.length - 1] as number) & 0x80) throw invalid(`${what} is truncated`);
  return arcs.join('.');
}

/** An INTEGER's value as a bigint (two's complement). */
export function readInteger(node: DerNode | undefined, what: string): bigint {
  const bytes = content(expectTag(node, TAG.INTEGER, what));
  if (bytes.length === 0 || bytes.length > 64) throw invalid(`${what} has a bad length`);
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  if ((bytes[0] as number) & 0x80) value -= 1n << BigInt(bytes.length * 8);
  return value;
}

/** A GeneralizedTime (`YYYYMMDDHHMMSS[.f…]Z`) as a Date. */
export function readGeneralizedTime(node: DerNode | undefined, what: string): Date {
  const text = Buffer.from(content(expectTag(node, TAG.GENERALIZED_TIME, what))).toString('latin1');
  const match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z$/.exec(text);
  if (!match) throw invalid(`${what} is not a UTC GeneralizedTime`);
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const millis = Math.floor(Number(`0.${match[7] ?? '0'}`) * 1000);
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, millis));
  // Date.UTC maps years 0–99 to 1900–1999; set the year explicitly.
  date.setUTCFullYear(year, month - 1, day);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) throw invalid(`${what} is not a real time`);
  return date;
}

/** Encodes one element. */
export function encode(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(parts);
  const length = body.length;
  let header: number[];
  if (length < 0x80) header = [tag, length];
  else {
    const lengthBytes: number[] = [];
    for (let value = length; value > 0; value = Math.floor(value / 256)) lengthBytes.unshift(value % 256);
    header = [tag, 0x80 | lengthBytes.length, ...lengthBytes];
  }
  return Buffer.concat([Uint8Array.from(header), body]);
}

/** Encodes a dotted OID. */
export function encodeOid(oid: string): Uint8Array {
  const arcs = oid.split('.').map(Number);
  const [first, second, ...rest] = arcs as [number, number, ...number[]];
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const chunk: number[] = [arc % 128];
    for (let value = Math.floor(arc / 128); value > 0; value = Math.floor(value / 128)) chunk.unshift(0x80 | value % 128);
    bytes.push(...chunk);
  }
  return encode(TAG.OID, Uint8Array.from(bytes));
}

/** Encodes a non-negative INTEGER from big-endian magnitude bytes. */
export function encodeUnsignedInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return encode(TAG.INTEGER, (trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Uint8Array.from([0]), trimmed]) : trimmed);
}
