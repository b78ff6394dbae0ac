/**
 * Reads chat.db's `attributedBody`: an NSAttributedString archived as a typedstream. The
 * string comes first (UTF-8), then runs of `(attribute-dictionary id, length in UTF-16 code
 * units)`; a dictionary is written the first time its id appears and reused by id after that.
 * Attributes carry the message part index, attachment transfer GUIDs (at U+FFFC), mentions,
 * links and data-detector results.
 */
import { TypedstreamError } from '../errors.ts';
import { decodeTypedstream, typedstreamWorkLimit, type TsClass, type TsObject, type TsValue } from './typedstream-reader.ts';

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

/**
 * Where {@link toValue} is: the objects on the current path (a cycle check) and how many more
 * values it may build. A reference is one byte but expands into a copy of what it names, so
 * an array of references to arrays of references would grow exponentially; the copies share
 * the decoder's budget ({@link typedstreamWorkLimit}) and stop with a typed error.
 */
interface Expansion {
  readonly path: Set<TsObject>;
  /** Each NSString decoded once: a reference to it shares the JS string, no copy of the bytes. */
  readonly strings: Map<TsObject, string>;
  left: number;
}

/** Decodes an `attributedBody` blob. Throws {@link TypedstreamError} on anything it cannot read. */
export function decodeAttributedBody(bytes: Uint8Array): AttributedBody {
  const groups = decodeTypedstream(bytes);
  const expansion: Expansion = { path: new Set(), strings: new Map(), left: typedstreamWorkLimit(bytes.length) };
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
      const value = toValue(dictionary, 0, expansion);
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
function toValue(value: TsValue, depth: number, expansion: Expansion): AttributeValue {
  if (--expansion.left < 0) throw invalid('attribute values expand to more copies than the blob may hold');
  if (value === null || typeof value === 'number' || typeof value === 'bigint') return value;
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value) || value.kind === 'class') throw invalid('unexpected value in an attribute');
  const path = expansion.path;
  if (depth > MAX_VALUE_DEPTH || path.has(value)) throw invalid('attribute values nested too deeply or cyclic');
  path.add(value);
  try {
    const kind = foundationKind(value.cls);
    if (kind === undefined) return { className: value.cls?.name ?? 'unknown' };
    if (kind === 'string') return sharedString(value, expansion);
    const values = value.groups.flatMap((group) => group.values);
    expansion.left -= values.length; // an object referenced many times is flattened each time
    switch (kind) {
      case 'number':
        return numberOf(values);
      case 'url': {
        const url = values.at(-1);
        return { url: isObject(url) && foundationKind(url.cls) === 'string' ? sharedString(url, expansion) : '' };
      }
      case 'data': {
        const bytes = values[1];
        if (!(bytes instanceof Uint8Array)) throw invalid('NSData without bytes');
        return bytes;
      }
      case 'dictionary': {
        const count = values[0];
        if (typeof count !== 'number' || values.length !== 1 + 2 * count) throw invalid('NSDictionary entry count does not match');
        const out: Record<string, AttributeValue> = {};
        for (let i = 0; i < count; i++) {
          const key = toValue(values[1 + 2 * i] ?? null, depth + 1, expansion);
          if (typeof key !== 'string') throw invalid('dictionary key is not a string');
          if (Object.hasOwn(out, key)) throw invalid('dictionary key appears twice');
          Object.defineProperty(out, key, { value: toValue(values[2 + 2 * i] ?? null, depth + 1, expansion), enumerable: true, writable: false });
        }
        return out;
      }
      case 'array': {
        const count = values[0];
        if (typeof count !== 'number' || values.length !== 1 + count) throw invalid('NSArray element count does not match');
        return values.slice(1).map((element) => toValue(element, depth + 1, expansion));
      }
    }
  } finally {
    path.delete(value);
  }
}

/** An NSString's text, decoded once per object however often it is referenced. */
function sharedString(object: TsObject, expansion: Expansion): string {
  const known = expansion.strings.get(object);
  if (known !== undefined) return known;
  const string = stringOf(object);
  expansion.strings.set(object, string);
  return string;
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

/** The Foundation classes attribute values are read as; NSMutableDictionary is a dictionary. */
type FoundationKind = 'string' | 'number' | 'url' | 'data' | 'dictionary' | 'array';
const FOUNDATION_KINDS = new Map<string, FoundationKind>([
  ['NSString', 'string'],
  ['NSNumber', 'number'],
  ['NSURL', 'url'],
  ['NSData', 'data'],
  ['NSDictionary', 'dictionary'],
  ['NSArray', 'array'],
  ['NSSet', 'array'],
]);

/** The first Foundation kind in `cls`'s chain, walking at most 64 superclasses (chains may loop). */
function foundationKind(cls: TsClass | undefined): FoundationKind | undefined {
  for (let c = cls, hops = 0; c !== undefined && hops < 64; c = c.superclass, hops++) {
    const kind = FOUNDATION_KINDS.get(c.name);
    if (kind !== undefined) return kind;
  }
  return undefined;
}

/** True when `cls` or one of its superclasses is named `name` (NSMutableString is an NSString). */
function isKindOf(cls: TsClass | undefined, name: string): boolean {
  for (let c = cls, hops = 0; c !== undefined && hops < 64; c = c.superclass, hops++) if (c.name === name) return true;
  return false;
}

function invalid(problem: string): TypedstreamError {
  return new TypedstreamError('TYPEDSTREAM_INVALID', problem);
}
