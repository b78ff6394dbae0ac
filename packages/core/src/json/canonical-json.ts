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
    return serialize(value, path, false);
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
  return canonicalRecordParts(value).join('');
}

/**
 * {@link canonicalizeRecord}'s text in parts whose concatenation is the text: each long string
 * member of a top-level object (a message's text) is a part of its own, so a caller writing
 * the parts into a buffer copies it once, instead of first flattening the whole text into one
 * new string.
 */
export function canonicalRecordParts(value: unknown): string[] {
  const path: (string | number)[] = [];
  const parts: string[] = [];
  try {
    parts.push(serialize(value, path, true, parts));
  } catch (error) {
    if (error instanceof Problem) throw new NonCanonicalJsonError(`${formatPath(path)} ${error.message}`);
    throw error;
  }
  return parts;
}

/**
 * The members of a plain JSON object, each as canonical text `"name":value`, in canonical
 * order: `{` + their texts joined by `,` + `}` is exactly {@link canonicalize}'s text of the
 * object (same errors too). The recorder splits a record there, to set its sequencing fields
 * into text it serialized once.
 */
export function canonicalMembers(value: object): { readonly names: readonly string[]; readonly texts: readonly string[] } {
  const path: (string | number)[] = [];
  try {
    const prototype: unknown = Object.getPrototypeOf(value);
    if (Array.isArray(value)) throw new Problem('is an array, not a JSON object');
    if (prototype !== Object.prototype && prototype !== null) throw new Problem('is a class instance, not a plain JSON object');
    const object = value as Record<string, unknown>;
    // Asked for its keys once, as serialize does. A remembered shape (records of a stream share
    // a few) is not sorted again, and its names are quoted already.
    const keys = Object.keys(object);
    const order = memberOrder(keys);
    const names = order === undefined ? keys.sort() : order.names;
    const texts: string[] = [];
    for (let index = 0; index < names.length; index++) {
      const name = names[index] as string;
      path.push(name);
      const head = order === undefined ? `${quoteKey(name)}:` : (order.heads[index] as string);
      texts.push(head + serialize(object[name], path, true));
      path.pop();
    }
    return { names, texts };
  } catch (error) {
    if (error instanceof Problem) throw new NonCanonicalJsonError(`${formatPath(path)} ${error.message}`);
    throw error;
  }
}

/** A top-level string member at least this long is a part of its own (see canonicalRecordParts). */
const LONG_STRING = 256;

/** A key list's sorted names, each with what precedes its value: `,"name":` (no comma first). */
interface MemberOrder {
  /** The key list as `Object.keys` gave it (compared name by name). */
  readonly keys: readonly string[];
  readonly names: readonly string[];
  readonly prefixes: readonly string[];
  /** Per member, `"name":` (a prefix without its comma). */
  readonly heads: readonly string[];
  /**
   * Per member, the last short string value serialized there and its JSON text: records of a
   * stream repeat most of theirs (stream, account, source, kind, conversation type, a capture
   * time within one millisecond), and a string's JSON text depends only on the string.
   */
  readonly lastValues: (string | undefined)[];
  readonly lastTexts: string[];
  /** Per member, false for a content member (message text, names, titles): never remembered. */
  readonly remember: readonly boolean[];
}

/**
 * Members whose values are message content or people's names: not kept in module memory after
 * the record is written (a heap dump of a capture host must not yield recent message text).
 */
const CONTENT_MEMBERS: ReadonlySet<string> = new Set(['text', 'title', 'name', 'caption', 'body', 'subject', 'value']);

/** Longest string value remembered per member (see MemberOrder.lastValues). */
const MAX_REMEMBERED_VALUE = 64;

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
  const order: MemberOrder = {
    keys: [...keys],
    names,
    prefixes: names.map((name, index) => `${index > 0 ? ',' : ''}${JSON.stringify(name)}:`),
    heads: names.map((name) => `${JSON.stringify(name)}:`),
    lastValues: names.map(() => undefined),
    lastTexts: names.map(() => ''),
    remember: names.map((name) => !CONTENT_MEMBERS.has(name)),
  };
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
 * so it names the offending member when a Problem is thrown). `shaped`: objects use remembered
 * member orders ({@link memberOrder}). `parts` (top level only): long string members of an
 * object are pushed to it, with the text before them, and the rest is returned.
 */
function serialize(value: unknown, path: (string | number)[], shaped: boolean, parts?: string[]): string {
  switch (typeof value) {
    case 'string':
      if (value.length <= PLAIN_STRING && isPlain(value)) return `"${value}"`;
      if (!value.isWellFormed()) throw new Problem('contains a lone surrogate');
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new Problem(`is ${String(value)}, which JSON cannot represent`);
      // What JSON.stringify gives a finite number (ECMA-262 SerializeJSONProperty), without its call.
      return String(value);
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
      out += serialize(value[index], path, shaped);
      path.pop();
    }
    return `${out}]`;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) throw new Problem('is a class instance, not a plain JSON object');
  const object = value as Record<string, unknown>;
  // An object is asked for its keys once (a proxy could answer differently each time).
  const keys = Object.keys(object);
  // A shape not remembered (or with a malformed name) is sorted here, and its names checked.
  const order = shaped ? memberOrder(keys) : undefined;
  const names = order === undefined ? keys.sort() : order.names;
  let out = '{';
  for (let index = 0; index < names.length; index++) {
    const key = names[index] as string;
    path.push(key);
    if (order === undefined) {
      if (index > 0) out += ',';
      out += quoteKey(key);
      out += ':';
    } else {
      out += order.prefixes[index] as string;
    }
    const member = object[key];
    if (typeof member !== 'string') {
      out += serialize(member, path, shaped);
    } else if (order !== undefined && member.length <= MAX_REMEMBERED_VALUE && order.remember[index] === true) {
      if (order.lastValues[index] !== member) {
        order.lastTexts[index] = serialize(member, path, shaped);
        order.lastValues[index] = member;
      }
      out += order.lastTexts[index] as string;
    } else if (parts !== undefined && member.length >= LONG_STRING) {
      parts.push(out, serialize(member, path, shaped));
      out = '';
    } else {
      out += serialize(member, path, shaped);
    }
    path.pop();
  }
  return `${out}}`;
}

/** Longest string checked by {@link isPlain} (a longer one is quoted by JSON.stringify, faster per character). */
const PLAIN_STRING = 64;

/**
 * True when `text` has nothing JSON escapes and no surrogate: its JSON text is then the text
 * in quotes. A short string is checked faster here than JSON.stringify is called.
 */
function isPlain(text: string): boolean {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x20 || code === 0x22 || code === 0x5c || (code >= 0xd800 && code <= 0xdfff)) return false;
  }
  return true;
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
