/**
 * A validating scan of stored JSON: one pass over the bytes that decides whether they are
 * *certainly* RFC 8785 canonical and, if so, returns the value they hold — without building
 * the canonical text again to compare (see canonical-json.ts for the scheme).
 *
 * It accepts only what it can prove canonical from the bytes alone:
 *
 * - valid UTF-8 (checked natively first);
 * - no whitespace anywhere outside strings;
 * - object member names that are ASCII without escapes, each strictly greater than the one
 *   before (ASCII byte order is UTF-16 code-unit order; strictly greater rules out duplicate
 *   names), never `__proto__`;
 * - strings whose escapes are exactly the ones `JSON.stringify` writes (`\" \\ \b \f \n \r \t`,
 *   and lowercase `\u00xx` for the other control characters); a raw control character is
 *   not JSON, so the native parser that then builds the value refuses it;
 * - integers in canonical form (`0`, or an optional `-` and digits without a leading zero;
 *   not `-0`) within the safe range, whose `Number#toString` is their own digits;
 * - `true`, `false`, `null`; nesting up to {@link MAX_JSON_DEPTH} levels.
 *
 * Anything else — fractions, exponents, non-ASCII member names, an escape JSON.stringify
 * would not write, a raw control character, whitespace, an order problem, trailing bytes —
 * makes it return `undefined`: not "not canonical" but "not decided here". The caller then
 * decides with {@link parseCanonical}, which also words the error. So the scan can make
 * verification faster but never changes what is accepted: everything it accepts is exactly
 * the canonical serialization of what it returns. Unicode text is not normalised (RFC 8785
 * does not): the stored bytes are what is hashed.
 */
import { isUtf8 } from 'node:buffer';
import { type JsonValue, MAX_JSON_DEPTH } from './canonical-json.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;

/**
 * The value `bytes` hold when they are certainly the RFC 8785 canonical form of it;
 * `undefined` when the scan cannot tell (the caller falls back to `parseCanonical`).
 */
export function scanCanonical(bytes: Uint8Array): JsonValue | undefined {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Valid UTF-8 decodes without replacement characters, so the text is exactly the bytes.
  if (buffer.length === 0 || !isUtf8(buffer)) return undefined;
  const text = buffer.toString('utf8');
  backslash = -1;
  backslashFrom = Number.POSITIVE_INFINITY;
  if (value(text, 0, 0) !== text.length) return undefined;
  try {
    // Canonical JSON without duplicate names: the native parser builds exactly its value
    // (and throws on a raw control character in a string, which the scan does not look for).
    return JSON.parse(text) as JsonValue;
  } catch {
    return undefined;
  }
}

/*
 * Each scanner below reads one canonical element of `text` starting at `at` and returns the
 * position after it, or -1 when it is not decided here. (`charCodeAt` past the end is NaN,
 * which fails every comparison, so running off the end is refused too.)
 */

function value(text: string, at: number, depth: number): number {
  const code = text.charCodeAt(at);
  if (code === QUOTE) return string(text, at);
  if (code === 0x7b) return depth < MAX_JSON_DEPTH ? object(text, at, depth + 1) : -1;
  if (code === 0x5b) return depth < MAX_JSON_DEPTH ? array(text, at, depth + 1) : -1;
  if (code === 0x74) return text.startsWith('true', at) ? at + 4 : -1;
  if (code === 0x66) return text.startsWith('false', at) ? at + 5 : -1;
  if (code === 0x6e) return text.startsWith('null', at) ? at + 4 : -1;
  return integer(text, at);
}

/** `0`, or `-`? then 1-9 then digits: at most 16 digits and a safe integer. */
function integer(text: string, at: number): number {
  const negative = text.charCodeAt(at) === 0x2d;
  const first = negative ? at + 1 : at;
  let index = first;
  let number = 0;
  for (let code = text.charCodeAt(index); code >= 0x30 && code <= 0x39; code = text.charCodeAt(++index)) number = number * 10 + (code - 0x30);
  const digits = index - first;
  if (digits === 0 || digits > 16) return -1;
  // A leading zero (`01`, `-0`) is not canonical; `0` alone is.
  if (text.charCodeAt(first) === 0x30 && (digits > 1 || negative)) return -1;
  // A fraction or exponent follows: not decided here.
  const next = text.charCodeAt(index);
  if (next === 0x2e || next === 0x65 || next === 0x45) return -1;
  return Number.isSafeInteger(number) ? index : -1;
}

/** Escapes `JSON.stringify` writes with a short form, by the character after the backslash. */
function shortEscape(code: number): boolean {
  return code === QUOTE || code === BACKSLASH || code === 0x62 || code === 0x66 || code === 0x6e || code === 0x72 || code === 0x74;
}

function lowerHex(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

/** `u00xx` (after a backslash) as JSON.stringify writes it: a control character without a short form, lowercase hex. */
function unicodeEscape(text: string, at: number): boolean {
  if (text.charCodeAt(at) !== 0x75 || text.charCodeAt(at + 1) !== 0x30 || text.charCodeAt(at + 2) !== 0x30) return false;
  const high = lowerHex(text.charCodeAt(at + 3));
  const low = lowerHex(text.charCodeAt(at + 4));
  if (high < 0 || low < 0) return false;
  const code = high * 16 + low;
  return code < 0x20 && code !== 0x08 && code !== 0x09 && code !== 0x0a && code !== 0x0c && code !== 0x0d;
}

/** The first backslash at or after `backslashFrom` (-1: none): kept per scan, so strings do not search the rest of the text again each. */
let backslash = -1;
let backslashFrom = 0;

/** The first backslash at or after `from` (-1: none); `from` only grows during a scan. */
function nextBackslash(text: string, from: number): number {
  if (backslashFrom > from || (backslash !== -1 && backslash < from)) {
    backslash = text.indexOf('\\', from);
    backslashFrom = from;
  }
  return backslash;
}

/**
 * A string (at its opening quote): its end found by native searches for the quote and the
 * backslash. A raw control character inside is not looked for here: the native parser that
 * builds the value refuses it (it is not JSON), which leaves the line to the full routine.
 */
function string(text: string, at: number): number {
  let index = at + 1;
  for (;;) {
    const quote = text.indexOf('"', index);
    if (quote === -1) return -1;
    const slash = nextBackslash(text, index);
    if (slash === -1 || slash > quote) return quote + 1;
    index = slash;
    if (shortEscape(text.charCodeAt(index + 1))) index += 2;
    else if (unicodeEscape(text, index + 1)) index += 6;
    else return -1;
  }
}

/** A member name: ASCII without escapes, not `__proto__`. */
function name(text: string, at: number): number {
  if (text.charCodeAt(at) !== QUOTE) return -1;
  let index = at + 1;
  for (let code = text.charCodeAt(index); code !== QUOTE; code = text.charCodeAt(++index)) {
    if (!(code >= 0x20 && code < 0x80) || code === BACKSLASH) return -1;
  }
  return index - at === 10 && text.startsWith('"__proto__"', at) ? -1 : index + 1;
}

/** True when the quoted name at `a` (ending at `aEnd`) is strictly less than the one at `b`. */
function before(text: string, a: number, aEnd: number, b: number, bEnd: number): boolean {
  for (let index = 1; ; index++) {
    const x = a + index === aEnd - 1 ? -1 : text.charCodeAt(a + index);
    const y = b + index === bEnd - 1 ? -1 : text.charCodeAt(b + index);
    if (x !== y) return x < y;
    if (x === -1) return false;
  }
}

/** An object (at its `{`): names strictly ascending, so none repeats. */
function object(text: string, at: number, depth: number): number {
  let index = at + 1;
  if (text.charCodeAt(index) === 0x7d) return index + 1;
  let previous = -1;
  let previousEnd = -1;
  for (;;) {
    const end = name(text, index);
    if (end === -1 || text.charCodeAt(end) !== COLON) return -1;
    if (previous !== -1 && !before(text, previous, previousEnd, index, end)) return -1;
    previous = index;
    previousEnd = end;
    index = value(text, end + 1, depth);
    if (index === -1) return -1;
    const code = text.charCodeAt(index++);
    if (code === 0x7d) return index;
    if (code !== COMMA) return -1;
  }
}

/** An array (at its `[`). */
function array(text: string, at: number, depth: number): number {
  let index = at + 1;
  if (text.charCodeAt(index) === 0x5d) return index + 1;
  for (;;) {
    index = value(text, index, depth);
    if (index === -1) return -1;
    const code = text.charCodeAt(index++);
    if (code === 0x5d) return index;
    if (code !== COMMA) return -1;
  }
}
