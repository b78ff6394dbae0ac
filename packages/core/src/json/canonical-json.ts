/**
 * RFC 8785 JSON Canonicalization Scheme (JCS).
 *
 * The archive stores every record as the canonical form of its JSON, so that anyone can
 * re-derive the exact bytes — and therefore the hash — from the parsed value:
 *
 * - objects: members sorted by key, comparing keys as sequences of UTF-16 code units
 *   (JavaScript's default `Array.prototype.sort` order); no whitespace;
 * - strings: ECMAScript `JSON.stringify` escaping (only `"`, `\`, and U+0000–U+001F are
 *   escaped, with `\b \t \n \f \r` short forms and lowercase `\u00xx` otherwise);
 *   strings must be well-formed Unicode (I-JSON: no lone surrogates);
 * - numbers: ECMAScript `Number.prototype.toString` form (what `JSON.stringify` emits);
 *   NaN and ±Infinity are not JSON and are rejected; −0 becomes `0`;
 * - `true`, `false`, `null` as literals.
 *
 * Records never contain fractional numbers (schema v1 allows only safe integers), but the
 * routine implements the full scheme and is tested on the RFC's own examples.
 */
import { NonCanonicalJsonError } from '../errors/record-errors.ts';

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** Deepest nesting accepted, so hostile input cannot exhaust the stack. */
export const MAX_JSON_DEPTH = 64;

const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Returns the RFC 8785 canonical text of `value`.
 * Throws {@link NonCanonicalJsonError} for anything that is not plain JSON data: `undefined`,
 * functions, symbols, bigints, non-finite numbers, lone surrogates, class instances (Dates,
 * Buffers, Maps…) and nesting deeper than {@link MAX_JSON_DEPTH}.
 */
export function canonicalize(value: unknown): string {
  const path: (string | number)[] = [];
  try {
    return serialize(value, path);
  } catch (error) {
    if (error instanceof Problem) throw new NonCanonicalJsonError(`${formatPath(path)} ${error.message}`);
    throw error;
  }
}

/** UTF-8 bytes of {@link canonicalize}. */
export function canonicalBytes(value: unknown): Uint8Array {
  return Buffer.from(canonicalize(value), 'utf8');
}

/**
 * Parses `bytes` and checks that they are exactly the canonical form of what they contain
 * (strict UTF-8, no byte-order mark, no whitespace, sorted keys, no duplicate keys, canonical
 * escapes and numbers). Returns the parsed value; throws {@link NonCanonicalJsonError} otherwise.
 */
export function parseCanonical(bytes: Uint8Array): JsonValue {
  let text: string;
  try {
    text = strictDecoder.decode(bytes);
  } catch {
    throw new NonCanonicalJsonError('bytes are not valid UTF-8');
  }
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch {
    throw new NonCanonicalJsonError('bytes are not valid JSON');
  }
  if (canonicalize(value) !== text) {
    throw new NonCanonicalJsonError('bytes differ from the canonical serialization of their content');
  }
  return value;
}

/**
 * {@link canonicalize} for many values of the same few shapes (the recorder's records): the
 * same text, and the same errors, for any value. The sorted member order of each object, with
 * each member's quoted name, is remembered for the last few key lists seen, so an object of a
 * known shape is not sorted again.
 */
export function canonicalizeRecord(value: unknown): string {
  const path: (string | number)[] = [];
  try {
    return serializeShaped(value, path);
  } catch (error) {
    if (error instanceof Problem) throw new NonCanonicalJsonError(`${formatPath(path)} ${error.message}`);
    throw error;
  }
}

/** {@link serialize} with remembered member orders for objects; everything else as `serialize`. */
function serializeShaped(value: unknown, path: (string | number)[]): string {
  if (typeof value !== 'object' || value === null) return serialize(value, path);
  if (path.length >= MAX_JSON_DEPTH) throw new Problem(`nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(value)) {
    let out = '[';
    for (let index = 0; index < value.length; index++) {
      if (index > 0) out += ',';
      path.push(index);
      out += serializeShaped(value[index], path);
      path.pop();
    }
    return `${out}]`;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) throw new Problem('is a class instance, not a plain JSON object');
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object);
  const order = memberOrder(keys);
  // A shape not worth remembering (or with a malformed name): sorted and checked as canonicalize
  // does, from the keys already read (an object is asked for its keys once, as canonicalize asks).
  if (order === undefined) return serializeMembers(object, keys.sort(), path);
  const { names, prefixes } = order;
  let out = '{';
  for (let index = 0; index < names.length; index++) {
    const key = names[index] as string;
    path.push(key);
    out += prefixes[index] as string;
    out += serializeShaped(object[key], path);
    path.pop();
  }
  return `${out}}`;
}

/** A key list's sorted names, each with what precedes its value: `,"name":` (no comma first). */
interface MemberOrder {
  /** The key list as `Object.keys` gave it (compared name by name). */
  readonly keys: readonly string[];
  readonly names: readonly string[];
  readonly prefixes: readonly string[];
}

/** Remembered key lists: a record and its nested objects are a handful of shapes. */
const memberOrders: MemberOrder[] = [];
const MEMBER_ORDERS = 32;
let nextSlot = 0;
/** Only small shapes with short names are remembered (hostile input cannot make it hold much). */
const MAX_REMEMBERED_KEYS = 64;
const MAX_REMEMBERED_NAME = 64;

/** The sorted order of `keys` (remembered), or `undefined` when not remembered. */
function memberOrder(keys: readonly string[]): MemberOrder | undefined {
  for (let slot = 0; slot < memberOrders.length; slot++) {
    const known = memberOrders[slot] as MemberOrder;
    if (sameKeys(known.keys, keys)) return known;
  }
  if (keys.length > MAX_REMEMBERED_KEYS) return undefined;
  for (const key of keys) if (key.length > MAX_REMEMBERED_NAME || !key.isWellFormed()) return undefined;
  const names = [...keys].sort();
  const order: MemberOrder = { keys: [...keys], names, prefixes: names.map((name, index) => `${index > 0 ? ',' : ''}${JSON.stringify(name)}:`) };
  memberOrders[nextSlot] = order;
  nextSlot = (nextSlot + 1) % MEMBER_ORDERS;
  return order;
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/** A serialization problem; `canonicalize` adds where it happened. */
class Problem extends Error {}

function formatPath(path: readonly (string | number)[]): string {
  return `$${path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${/^[A-Za-z0-9_]{1,64}$/.test(part) ? part : '<key>'}`)).join('')}`;
}

/**
 * Serializes `value`; `path` is the position being serialized (pushed and popped as it goes,
 * so it names the offending member when a Problem is thrown).
 */
function serialize(value: unknown, path: (string | number)[]): string {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) throw new Problem('contains a lone surrogate');
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new Problem(`is ${String(value)}, which JSON cannot represent`);
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      throw new Problem(`is a ${typeof value}, which JSON cannot represent`);
  }
  if (value === null) return 'null';
  if (path.length >= MAX_JSON_DEPTH) throw new Problem(`nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(value)) {
    let out = '[';
    for (let index = 0; index < value.length; index++) {
      if (index > 0) out += ',';
      path.push(index);
      out += serialize(value[index], path);
      path.pop();
    }
    return `${out}]`;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) throw new Problem('is a class instance, not a plain JSON object');
  return serializeMembers(value as Record<string, unknown>, Object.keys(value).sort(), path);
}

/** A plain object's members in the order of `keys` (sorted), each value as {@link serialize}. */
function serializeMembers(object: Record<string, unknown>, keys: readonly string[], path: (string | number)[]): string {
  let out = '{';
  for (let index = 0; index < keys.length; index++) {
    const key = keys[index] as string;
    if (index > 0) out += ',';
    path.push(key);
    out += quoteKey(key);
    out += ':';
    out += serialize(object[key], path);
    path.pop();
  }
  return `${out}}`;
}

/** Quoted member names, memoized: records reuse the same few dozen names millions of times. */
const quotedKeys = new Map<string, string>();

function quoteKey(key: string): string {
  let quoted = quotedKeys.get(key);
  if (quoted === undefined) {
    if (!key.isWellFormed()) throw new Problem('is a key with a lone surrogate');
    quoted = JSON.stringify(key);
    if (quotedKeys.size < 4096) quotedKeys.set(key, quoted);
  }
  return quoted;
}
