/**
 * A complete reader for NSArchiver "typedstream" data (`streamtyped`, the format of chat.db's
 * `attributedBody`), written from the format rules: a header, then typed groups. Each group
 * names its type encoding (`@`, `iI`, `+`…) and holds one value per type. Objects hold their
 * class chain and their own groups up to an END tag, so the format is self-describing and this
 * reader needs no knowledge of Foundation classes; `attributed-body.ts` interprets the result.
 *
 * Hostile input: every loop consumes at least one byte or fails, lengths are checked against
 * the bytes left before anything is sliced, nesting is capped, and every failure is a
 * {@link TypedstreamError} naming the byte offset. Some values cost no input at all (`[0c]`,
 * an array of those, a struct of those), so the total number of values a decode may produce
 * is bounded too, by {@link typedstreamWorkLimit}: a 150-byte `[100[100[100[100[0c]]]]]`
 * would otherwise ask for 10^8 values. Back-references return the object already read (no
 * copy); whoever expands them into copies (`attributed-body.ts`) spends the same budget.
 */
import { TypedstreamError } from '../errors.ts';
import { parseTypeEncoding, type TypeNode } from './type-encoding.ts';

/** A class in the stream, with its superclass chain (`undefined` past the root class). */
export interface TsClass {
  readonly kind: 'class';
  readonly name: string;
  readonly version: number;
  superclass: TsClass | undefined;
}

/** An archived object: its class and the groups it wrote, in order. */
export interface TsObject {
  readonly kind: 'object';
  cls: TsClass | undefined;
  readonly groups: TsGroup[];
}

/** One typed group: the type encoding as written and one value per type in it. */
export interface TsGroup {
  readonly encoding: string;
  readonly types: readonly TypeNode[];
  readonly values: TsValue[];
}

/**
 * A decoded value. Integers are numbers (64-bit ones outside the safe range are bigints);
 * strings and byte arrays are the bytes as written (`+` strings are UTF-8); structs and
 * non-byte arrays are arrays; `null` is NIL.
 */
export type TsValue = number | bigint | Uint8Array | TsObject | TsClass | null | TsValue[];

/** Deepest object/struct nesting accepted; iMessage bodies nest about 5 levels. */
export const MAX_TYPEDSTREAM_DEPTH = 64;
/** Values any decode may produce, however large the blob; real bodies produce a few thousand. */
export const MAX_TYPEDSTREAM_VALUES = 1_000_000;
/** Values allowed per input byte, on top of {@link TYPEDSTREAM_VALUE_ALLOWANCE}. */
const VALUES_PER_BYTE = 4;
const TYPEDSTREAM_VALUE_ALLOWANCE = 4096;

/**
 * The most values (decoded values, or attribute values expanded from references) a blob of
 * `byteLength` bytes may yield: 4 per byte plus 4,096, never more than 1,000,000. Every real
 * value but an empty array costs at least one byte, so honest blobs stay far below it.
 */
export function typedstreamWorkLimit(byteLength: number): number {
  return Math.min(MAX_TYPEDSTREAM_VALUES, TYPEDSTREAM_VALUE_ALLOWANCE + VALUES_PER_BYTE * byteLength);
}

const SIGNATURE = 'streamtyped';
const TAG_INT16 = 0x81;
const TAG_INT32 = 0x82;
const TAG_FLOAT = 0x83;
const TAG_NEW = 0x84;
const TAG_NIL = 0x85;
const TAG_END = 0x86;
const TAG_INT64 = 0x87;
const FIRST_TAG = 0x80;
const LAST_TAG = 0x91;
/** A reference number is written as `index + REFERENCE_BASE`, so index 0 is the byte 0x92. */
export const REFERENCE_BASE = -110;

/** Decodes a whole typedstream into its top-level groups. Throws {@link TypedstreamError}. */
export function decodeTypedstream(bytes: Uint8Array): TsGroup[] {
  return new TypedstreamReader(bytes).readAll();
}

class TypedstreamReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #pos = 0;
  #depth = 0;
  /** Values still allowed in this decode. */
  #budget: number;
  /** Shared-string table: type encodings and class names. */
  readonly #shared: Uint8Array[] = [];
  /** Object table: objects, classes and C strings in order of first appearance. */
  readonly #objects: (TsObject | TsClass | Uint8Array)[] = [];
  /** Parsed type encodings, by the shared string's bytes (a group reuses the same array). */
  readonly #encodings = new Map<Uint8Array, { readonly encoding: string; readonly types: readonly TypeNode[] }>();

  constructor(bytes: Uint8Array) {
    if (!(bytes instanceof Uint8Array)) throw new TypedstreamError('TYPEDSTREAM_INVALID', 'input is not a byte array');
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#budget = typedstreamWorkLimit(bytes.length);
  }

  readAll(): TsGroup[] {
    this.#header();
    const groups: TsGroup[] = [];
    while (this.#pos < this.#bytes.length) groups.push(this.#group());
    if (groups.length === 0) this.#fail('TYPEDSTREAM_TRUNCATED', 'no content after the header');
    return groups;
  }

  #header(): void {
    const version = this.#byte();
    const length = this.#byte();
    if (version !== 4 || length !== SIGNATURE.length) this.#fail('TYPEDSTREAM_INVALID', 'not a streamtyped header (version 4, 11-byte signature)');
    const signature = this.#take(length);
    for (let i = 0; i < length; i++) {
      if (signature[i] !== SIGNATURE.charCodeAt(i)) this.#fail('TYPEDSTREAM_INVALID', 'signature is not "streamtyped"');
    }
    this.#integer(this.#byte(), true); // system version, 1000 on every known Mac
  }

  #group(): TsGroup {
    const start = this.#pos;
    const encoding = this.#sharedString();
    if (encoding === null) this.#fail('TYPEDSTREAM_INVALID', 'group without a type encoding', start);
    let parsed = this.#encodings.get(encoding);
    if (parsed === undefined) {
      parsed = { encoding: latin1(encoding), types: parseTypeEncoding(encoding, (problem) => this.#fail('TYPEDSTREAM_INVALID', problem, start)) };
      this.#encodings.set(encoding, parsed);
    }
    const { types } = parsed;
    const values = types.map((type) => this.#value(type));
    return { encoding: parsed.encoding, types, values };
  }

  #value(type: TypeNode): TsValue {
    if (--this.#budget < 0) this.#overBudget();
    if (typeof type !== 'string') return type.kind === 'array' ? this.#array(type.count, type.of) : this.#nested(() => type.fields.map((field) => this.#value(field)));
    switch (type) {
      case '@':
        return this.#object();
      case '#':
        return this.#classChain();
      case '*':
        return this.#cString();
      case '+':
        return this.#unsharedString();
      case ':':
      case '%':
        return this.#sharedString();
      case 'c':
        return (this.#byte() << 24) >> 24;
      case 'C':
      case 'B':
        return this.#byte();
      case 'i':
      case 's':
      case 'l':
      case 'q':
        return this.#integer(this.#byte(), true);
      case 'I':
      case 'S':
      case 'L':
      case 'Q':
        return this.#integer(this.#byte(), false);
      case 'f':
      case 'd':
        return this.#float(type);
      default:
        return this.#fail('TYPEDSTREAM_INVALID', 'unsupported value type');
    }
  }

  #array(count: number, of: TypeNode): TsValue {
    if (of === 'c' || of === 'C') return this.#take(count);
    // An element takes at least one byte unless it is made of empty arrays (`[0c]`), so a count
    // beyond the bytes left is a lie; the budget bounds what empty arrays nested in arrays multiply.
    if (count > this.#bytes.length - this.#pos) this.#fail('TYPEDSTREAM_TRUNCATED', 'array longer than the bytes left');
    if (count > this.#budget) this.#overBudget();
    return this.#nested(() => Array.from({ length: count }, () => this.#value(of)));
  }

  #object(): TsObject | TsClass | Uint8Array | null {
    const head = this.#byte();
    if (head === TAG_NIL) return null;
    if (head !== TAG_NEW) return this.#reference(head);
    const object: TsObject = { kind: 'object', cls: undefined, groups: [] };
    this.#objects.push(object); // numbered before its class chain is read
    return this.#nested(() => {
      object.cls = this.#classChain() ?? undefined;
      while (this.#peek() !== TAG_END) object.groups.push(this.#group());
      this.#pos++;
      return object;
    });
  }

  /** A class chain, most-derived first, ending at NIL or at a class seen before. Iterative. */
  #classChain(): TsClass | null {
    let first: TsClass | null = null;
    let last: TsClass | null = null;
    for (;;) {
      const start = this.#pos;
      const head = this.#byte();
      let end: TsClass | null;
      if (head === TAG_NEW) {
        const name = this.#sharedString();
        if (name === null) this.#fail('TYPEDSTREAM_INVALID', 'class without a name', start);
        const version = this.#integer(this.#byte(), true);
        const cls: TsClass = { kind: 'class', name: latin1(name), version: Number(version), superclass: undefined };
        this.#objects.push(cls);
        if (last) last.superclass = cls;
        first ??= cls;
        last = cls;
        continue;
      } else if (head === TAG_NIL) {
        end = null;
      } else {
        const target = this.#reference(head, start);
        if (!isClass(target)) this.#fail('TYPEDSTREAM_INVALID', 'class reference names something that is not a class', start);
        end = target;
      }
      if (last) last.superclass = end ?? undefined;
      return first ?? end;
    }
  }

  #cString(): Uint8Array | null {
    const start = this.#pos;
    const head = this.#byte();
    if (head === TAG_NIL) return null;
    if (head !== TAG_NEW) {
      const target = this.#reference(head, start);
      if (!(target instanceof Uint8Array)) this.#fail('TYPEDSTREAM_INVALID', 'C-string reference names an object', start);
      return target;
    }
    const value = this.#sharedString();
    if (value === null) this.#fail('TYPEDSTREAM_INVALID', 'C string without a value', start);
    this.#objects.push(value);
    return value;
  }

  #sharedString(): Uint8Array | null {
    const start = this.#pos;
    const head = this.#byte();
    if (head === TAG_NIL) return null;
    if (head === TAG_NEW) {
      const value = this.#unsharedString();
      if (value === null) this.#fail('TYPEDSTREAM_INVALID', 'new shared string without a value', start);
      this.#shared.push(value);
      return value;
    }
    const index = this.#referenceIndex(head);
    const value = this.#shared[index];
    if (value === undefined) this.#fail('TYPEDSTREAM_INVALID', 'reference to a shared string not yet defined', start);
    return value;
  }

  #unsharedString(): Uint8Array | null {
    const head = this.#byte();
    if (head === TAG_NIL) return null;
    const length = this.#integer(head, false);
    if (typeof length !== 'number') this.#fail('TYPEDSTREAM_TRUNCATED', 'string longer than the bytes left');
    return this.#take(length);
  }

  #reference(head: number, start = this.#pos - 1): TsObject | TsClass | Uint8Array {
    const target = this.#objects[this.#referenceIndex(head)];
    if (target === undefined) this.#fail('TYPEDSTREAM_INVALID', 'reference to an object not yet defined', start);
    return target;
  }

  /** Index 0–109 is 0x92–0xFF, 110–237 is 0x00–0x7F, beyond that an int16/int32 tag. */
  #referenceIndex(head: number): number {
    const value = this.#integer(head, true);
    const index = Number(value) - REFERENCE_BASE;
    if (typeof value !== 'number' || index < 0) this.#fail('TYPEDSTREAM_INVALID', 'bad reference number');
    return index;
  }

  #integer(head: number, signed: boolean): number | bigint {
    switch (head) {
      case TAG_INT16:
        return signed ? this.#view.getInt16(this.#advance(2), true) : this.#view.getUint16(this.#advance(2), true);
      case TAG_INT32:
        return signed ? this.#view.getInt32(this.#advance(4), true) : this.#view.getUint32(this.#advance(4), true);
      case TAG_INT64: {
        const value = signed ? this.#view.getBigInt64(this.#advance(8), true) : this.#view.getBigUint64(this.#advance(8), true);
        return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
      }
      default:
        if (head >= FIRST_TAG && head <= LAST_TAG) this.#fail('TYPEDSTREAM_INVALID', 'tag where an integer was expected', this.#pos - 1);
        return signed ? (head << 24) >> 24 : head;
    }
  }

  #float(type: 'f' | 'd'): number {
    const head = this.#byte();
    if (head !== TAG_FLOAT) return Number(this.#integer(head, true));
    return type === 'f' ? this.#view.getFloat32(this.#advance(4), true) : this.#view.getFloat64(this.#advance(8), true);
  }

  #overBudget(): never {
    return this.#fail('TYPEDSTREAM_INVALID', `more values than a blob of ${this.#bytes.length} bytes may hold (${typedstreamWorkLimit(this.#bytes.length)})`);
  }

  #nested<T>(read: () => T): T {
    if (++this.#depth > MAX_TYPEDSTREAM_DEPTH) this.#fail('TYPEDSTREAM_INVALID', `nesting deeper than ${MAX_TYPEDSTREAM_DEPTH}`);
    const value = read();
    this.#depth--;
    return value;
  }

  #byte(): number {
    const value = this.#bytes[this.#pos];
    if (value === undefined) this.#fail('TYPEDSTREAM_TRUNCATED', 'ends in the middle of a value');
    this.#pos++;
    return value;
  }

  #peek(): number {
    const value = this.#bytes[this.#pos];
    if (value === undefined) this.#fail('TYPEDSTREAM_TRUNCATED', 'object has no END tag');
    return value;
  }

  #advance(count: number): number {
    const at = this.#pos;
    if (count > this.#bytes.length - at) this.#fail('TYPEDSTREAM_TRUNCATED', 'ends in the middle of a value');
    this.#pos += count;
    return at;
  }

  #take(count: number): Uint8Array {
    const at = this.#advance(count);
    return this.#bytes.subarray(at, at + count);
  }

  #fail(code: 'TYPEDSTREAM_TRUNCATED' | 'TYPEDSTREAM_INVALID', problem: string, offset = this.#pos): never {
    throw new TypedstreamError(code, problem, offset);
  }
}

function isClass(value: unknown): value is TsClass {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'class';
}

/** Class names and type encodings are ASCII; decode them byte for byte. */
export function latin1(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += String.fromCharCode(byte);
  return out;
}
