/**
 * Reads chat.db's `attributedBody`: an NSAttributedString archived as a typedstream. The
 * string comes first (UTF-8), then runs of `(attribute-dictionary id, length in UTF-16 code
 * units)`; a dictionary is written the first time its id appears and reused by id after that.
 * Attributes carry the message part index, attachment transfer GUIDs (at U+FFFC), mentions,
 * links and data-detector results.
 */
import { TypedstreamError } from '../errors.ts';
import { decodeTypedstream, type TsClass, type TsObject, type TsValue } from './typedstream-reader.ts';

/** An attribute value as plain data. */
export type AttributeValue =
  | string
  | number
  | bigint
  | null
  | Uint8Array
  | { readonly url: string }
  | { readonly className: string }
  | readonly AttributeValue[]
  | { readonly [key: string]: AttributeValue };

/** A stretch of text with one set of attributes; `start` and `length` in UTF-16 code units. */
export interface AttributeRun {
  readonly start: number;
  readonly length: number;
  readonly attributes: { readonly [key: string]: AttributeValue };
}

/** The decoded body: the text and its attribute runs. */
export interface AttributedBody {
  readonly text: string;
  readonly runs: readonly AttributeRun[];
}

const MAX_VALUE_DEPTH = 16;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes an `attributedBody` blob. Throws {@link TypedstreamError} on anything it cannot read. */
export function decodeAttributedBody(bytes: Uint8Array): AttributedBody {
  const groups = decodeTypedstream(bytes);
  const root = groups[0]?.values[0];
  if (!isObject(root)) throw invalid('root is not an object');
  if (isKindOf(root.cls, 'NSString')) return { text: stringOf(root), runs: [] };
  if (!isKindOf(root.cls, 'NSAttributedString')) throw invalid('root is not an NSAttributedString');

  const [first, ...rest] = root.groups;
  const string = first?.values[0];
  if (first?.encoding !== '@' || !isObject(string)) throw invalid('attributed string without its string');
  const text = stringOf(string);
  const runs: AttributeRun[] = [];
  const dictionaries = new Map<number, { readonly [key: string]: AttributeValue }>();
  let start = 0;
  for (let i = 0; i < rest.length; i++) {
    const group = rest[i];
    const [id, length] = group?.values ?? [];
    if (group?.encoding !== 'iI' || typeof id !== 'number' || typeof length !== 'number') throw invalid('attribute run is not (id, length)');
    let attributes = dictionaries.get(id);
    if (attributes === undefined) {
      const next = rest[++i];
      const dictionary = next?.values[0];
      if (next?.encoding !== '@' || !isObject(dictionary)) throw invalid('new attribute id without its dictionary');
      const value = toValue(dictionary, 0, new Set());
      if (typeof value !== 'object' || value === null || value instanceof Uint8Array || Array.isArray(value) || 'url' in value || 'className' in value) {
        throw invalid('attributes are not a dictionary');
      }
      attributes = value as { readonly [key: string]: AttributeValue };
      dictionaries.set(id, attributes);
    }
    runs.push({ start, length, attributes });
    start += length;
  }
  if (start !== 0 && start !== text.length) throw invalid('attribute runs do not cover the text');
  return { text, runs };
}

/** Turns an archived Foundation object into plain data; unknown classes become `{className}`. */
function toValue(value: TsValue, depth: number, path: Set<TsObject>): AttributeValue {
  if (value === null || typeof value === 'number' || typeof value === 'bigint') return value;
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value) || value.kind === 'class') throw invalid('unexpected value in an attribute');
  if (depth > MAX_VALUE_DEPTH || path.has(value)) throw invalid('attribute values nested too deeply or cyclic');
  path.add(value);
  try {
    const values = value.groups.flatMap((group) => group.values);
    const cls = value.cls;
    if (isKindOf(cls, 'NSString')) return stringOf(value);
    if (isKindOf(cls, 'NSNumber')) return numberOf(values);
    if (isKindOf(cls, 'NSURL')) {
      const url = values.at(-1);
      return { url: isObject(url) && isKindOf(url.cls, 'NSString') ? stringOf(url) : '' };
    }
    if (isKindOf(cls, 'NSData')) {
      const bytes = values[1];
      if (!(bytes instanceof Uint8Array)) throw invalid('NSData without bytes');
      return bytes;
    }
    if (isKindOf(cls, 'NSDictionary')) {
      const count = values[0];
      if (typeof count !== 'number' || values.length !== 1 + 2 * count) throw invalid('NSDictionary entry count does not match');
      const out: Record<string, AttributeValue> = {};
      for (let i = 0; i < count; i++) {
        const key = toValue(values[1 + 2 * i] ?? null, depth + 1, path);
        if (typeof key !== 'string') throw invalid('dictionary key is not a string');
        if (Object.hasOwn(out, key)) throw invalid('dictionary key appears twice');
        Object.defineProperty(out, key, { value: toValue(values[2 + 2 * i] ?? null, depth + 1, path), enumerable: true, writable: false });
      }
      return out;
    }
    if (isKindOf(cls, 'NSArray') || isKindOf(cls, 'NSSet')) {
      const count = values[0];
      if (typeof count !== 'number' || values.length !== 1 + count) throw invalid('NSArray element count does not match');
      return values.slice(1).map((element) => toValue(element, depth + 1, path));
    }
    return { className: cls?.name ?? 'unknown' };
  } finally {
    path.delete(value);
  }
}

function stringOf(object: TsObject): string {
  const bytes = object.groups[0]?.values[0];
  if (!(bytes instanceof Uint8Array)) throw invalid('NSString without UTF-8 bytes');
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid('NSString bytes are not valid UTF-8');
  }
}

function numberOf(values: TsValue[]): number | bigint {
  const number = values[1];
  if (typeof number !== 'number' && typeof number !== 'bigint') throw invalid('NSNumber without a value');
  return number;
}

function isObject(value: TsValue | undefined): value is TsObject {
  return typeof value === 'object' && value !== null && !(value instanceof Uint8Array) && !Array.isArray(value) && value.kind === 'object';
}

/** True when `cls` or one of its superclasses is named `name` (NSMutableString is an NSString). */
function isKindOf(cls: TsClass | undefined, name: string): boolean {
  for (let c = cls, hops = 0; c !== undefined && hops < 64; c = c.superclass, hops++) if (c.name === name) return true;
  return false;
}

function invalid(problem: string): TypedstreamError {
  return new TypedstreamError('TYPEDSTREAM_INVALID', problem);
}
