/**
 * A minimal protocol-buffers wire reader and writer (proto2/proto3 wire format), written for
 * the Signal connector's own hand-written schemas. Only what those schemas need: varints,
 * 64-bit fixed, length-delimited and 32-bit fixed fields. Groups (wire types 3 and 4) are
 * rejected. Every read is bounds-checked; malformed input ends in a `SignalError` with code
 * `SIGNAL_PROTOBUF_INVALID`, never in a crash or an out-of-range read.
 */
import { SignalError } from '../signal-error.ts';

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_BYTES = 2;
export const WIRE_FIXED32 = 5;

/** One field as it appeared on the wire. `value` is a bigint for varint/fixed, bytes otherwise. */
export type WireField =
  | { readonly field: number; readonly wire: typeof WIRE_VARINT | typeof WIRE_FIXED64 | typeof WIRE_FIXED32; readonly value: bigint }
  | { readonly field: number; readonly wire: typeof WIRE_BYTES; readonly value: Uint8Array };

export function protobufError(message: string, what: string): SignalError {
  return new SignalError('SIGNAL_PROTOBUF_INVALID', `${what}: ${message}. The bytes are kept as evidence; nothing else to do.`);
}

/** Splits `bytes` into fields in wire order. Throws `SIGNAL_PROTOBUF_INVALID` if malformed. */
export function readFields(bytes: Uint8Array, what: string): WireField[] {
  const fields: WireField[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= bytes.length) throw protobufError('truncated varint', what);
      const byte = bytes[pos++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) {
        if (result >= 1n << 64n) throw protobufError('varint longer than 64 bits', what);
        return result;
      }
    }
    throw protobufError('varint longer than 10 bytes', what);
  };
  const fixed = (size: number): bigint => {
    if (pos + size > bytes.length) throw protobufError(`truncated ${size * 8}-bit field`, what);
    let result = 0n;
    for (let i = size - 1; i >= 0; i--) result = (result << 8n) | BigInt(bytes[pos + i] as number);
    pos += size;
    return result;
  };
  while (pos < bytes.length) {
    const tag = varint();
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (field < 1 || field > 536_870_911) throw protobufError(`invalid field number ${field}`, what);
    switch (wire) {
      case WIRE_VARINT:
        fields.push({ field, wire, value: varint() });
        break;
      case WIRE_FIXED64:
        fields.push({ field, wire, value: fixed(8) });
        break;
      case WIRE_FIXED32:
        fields.push({ field, wire, value: fixed(4) });
        break;
      case WIRE_BYTES: {
        const length = varint();
        if (length > BigInt(bytes.length - pos)) throw protobufError(`field ${field} claims ${length} bytes but ${bytes.length - pos} remain`, what);
        const end = pos + Number(length);
        fields.push({ field, wire, value: bytes.subarray(pos, end) });
        pos = end;
        break;
      }
      default:
        throw protobufError(`field ${field} has unsupported wire type ${wire}`, what);
    }
  }
  return fields;
}

/** Accessors over one decoded message's fields, checking wire types as they are read. */
export class FieldReader {
  readonly what: string;
  readonly fields: readonly WireField[];

  constructor(bytes: Uint8Array, what: string) {
    this.what = what;
    this.fields = readFields(bytes, what);
  }

  /** Field numbers present, sorted and unique (for "unmapped field" notes). */
  numbers(): number[] {
    return [...new Set(this.fields.map((f) => f.field))].sort((a, b) => a - b);
  }

  has(field: number): boolean {
    return this.fields.some((f) => f.field === field);
  }

  /** Last occurrence wins, as protobuf specifies for singular fields. */
  private last(field: number): WireField | undefined {
    for (let i = this.fields.length - 1; i >= 0; i--) if (this.fields[i]?.field === field) return this.fields[i];
    return undefined;
  }

  bytes(field: number): Uint8Array | undefined {
    const f = this.last(field);
    if (f === undefined) return undefined;
    if (f.wire !== WIRE_BYTES) throw protobufError(`field ${field} should be length-delimited`, this.what);
    return f.value;
  }

  repeatedBytes(field: number): Uint8Array[] {
    return this.fields.filter((f) => f.field === field).map((f) => {
      if (f.wire !== WIRE_BYTES) throw protobufError(`field ${field} should be length-delimited`, this.what);
      return f.value;
    });
  }

  string(field: number): string | undefined {
    const b = this.bytes(field);
    if (b === undefined) return undefined;
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      throw protobufError(`field ${field} is not valid UTF-8`, this.what);
    }
  }

  repeatedStrings(field: number): string[] {
    return this.repeatedBytes(field).map((b) => {
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(b);
      } catch {
        throw protobufError(`field ${field} is not valid UTF-8`, this.what);
      }
    });
  }

  /** An unsigned integer field (varint or fixed) as a bigint. */
  big(field: number): bigint | undefined {
    const f = this.last(field);
    if (f === undefined) return undefined;
    if (f.wire === WIRE_BYTES) throw protobufError(`field ${field} should be numeric`, this.what);
    return f.value;
  }

  /** A numeric field that must fit a safe integer (timestamps in ms, sizes, ids). */
  number(field: number): number | undefined {
    const v = this.big(field);
    if (v === undefined) return undefined;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw protobufError(`field ${field} is larger than a safe integer`, this.what);
    return Number(v);
  }

  repeatedNumbers(field: number): number[] {
    const out: number[] = [];
    for (const f of this.fields) {
      if (f.field !== field) continue;
      if (f.wire === WIRE_BYTES) {
        // packed encoding
        for (const inner of readPackedVarints(f.value, this.what)) out.push(safe(inner, field, this.what));
      } else {
        out.push(safe(f.value, field, this.what));
      }
    }
    return out;
  }

  bool(field: number): boolean | undefined {
    const v = this.big(field);
    return v === undefined ? undefined : v !== 0n;
  }
}

function safe(v: bigint, field: number, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw protobufError(`field ${field} is larger than a safe integer`, what);
  return Number(v);
}

function readPackedVarints(bytes: Uint8Array, what: string): bigint[] {
  // A packed run is a sequence of bare varints; reuse the tag reader by prefixing tags.
  const out: bigint[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= bytes.length) throw protobufError('truncated packed varint', what);
      if (shift >= 70n) throw protobufError('packed varint longer than 10 bytes', what);
      const byte = bytes[pos++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      shift += 7n;
      if ((byte & 0x80) === 0) break;
    }
    out.push(result);
  }
  return out;
}

/** Builds protobuf bytes field by field. Used to write requests (and by tests to build inputs). */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];

  private varint(value: bigint): void {
    const out: number[] = [];
    let v = value;
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.parts.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((BigInt(field) << 3n) | BigInt(wire));
  }

  uint(field: number, value: number | bigint | undefined): this {
    if (value === undefined) return this;
    const v = BigInt(value);
    if (v < 0n) throw new RangeError('protobuf writer: negative varint');
    this.tag(field, WIRE_VARINT);
    this.varint(v);
    return this;
  }

  bool(field: number, value: boolean | undefined): this {
    return value === undefined ? this : this.uint(field, value ? 1 : 0);
  }

  fixed64(field: number, value: bigint | undefined): this {
    if (value === undefined) return this;
    this.tag(field, WIRE_FIXED64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    this.parts.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array | undefined): this {
    if (value === undefined) return this;
    this.tag(field, WIRE_BYTES);
    this.varint(BigInt(value.length));
    this.parts.push(value);
    return this;
  }

  string(field: number, value: string | undefined): this {
    return value === undefined ? this : this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: ProtoWriter | undefined): this {
    return value === undefined ? this : this.bytes(field, value.finish());
  }

  finish(): Uint8Array<ArrayBuffer> {
    const total = this.parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let pos = 0;
    for (const p of this.parts) {
      out.set(p, pos);
      pos += p.length;
    }
    return out;
  }
}
