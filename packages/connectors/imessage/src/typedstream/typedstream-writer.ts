/**
 * Our own typedstream writer, for fixtures and round-trip tests. It writes attributed bodies
 * the way NSArchiver does: integers in the shortest of 1/3/5/9 bytes, every class name and
 * type encoding once (then by reference), objects numbered in order of first appearance, each
 * attribute dictionary written once and reused by id. Equal NSString values are written once
 * and referenced after that, which lets tests produce streams with hundreds of back-references.
 */
import { REFERENCE_BASE } from './typedstream-reader.ts';

/** An attribute value the writer can archive: NSString, NSNumber, NSURL or NSData. */
export type WritableValue = string | number | bigint | boolean | { readonly url: string } | Uint8Array;

/** A run of `length` UTF-16 code units sharing `attributes`. */
export interface WritableRun {
  readonly length: number;
  readonly attributes: { readonly [key: string]: WritableValue };
}

/** Options for {@link encodeAttributedBody}. */
export interface EncodeAttributedBodyOptions {
  /** Attribute runs; default one run over the whole text with part 0. */
  readonly runs?: readonly WritableRun[];
  /** NSMutableAttributedString/NSMutableString (Messages' usual choice) or the immutable pair. Default true. */
  readonly mutable?: boolean;
}

const PART = '__kIMMessagePartAttributeName';
const utf8 = new TextEncoder();

/** Archives `text` as an NSAttributedString typedstream, as chat.db's `attributedBody` holds it. */
export function encodeAttributedBody(text: string, options: EncodeAttributedBodyOptions = {}): Uint8Array {
  const runs = options.runs ?? (text.length === 0 ? [] : [{ length: text.length, attributes: { [PART]: 0 } }]);
  const mutable = options.mutable ?? true;
  const w = new TypedstreamWriter();
  w.group('@', () => {
    w.object(mutable ? ['NSMutableAttributedString', 'NSAttributedString', 'NSObject'] : ['NSAttributedString', 'NSObject'], () => {
      w.group('@', () => { w.string(text, mutable ? ['NSMutableString', 'NSString', 'NSObject'] : ['NSString', 'NSObject']); });
      const ids = new Map<string, number>();
      for (const run of runs) {
        const identity = identityOf(run.attributes);
        const known = ids.get(identity);
        const id = known ?? ids.size + 1;
        w.group('iI', () => {
          w.int(id);
          w.int(run.length);
        });
        if (known === undefined) {
          ids.set(identity, id);
          w.group('@', () => { w.dictionary(run.attributes); });
        }
      }
    });
  });
  return w.finish();
}

/** Versions NSArchiver writes for the classes we use. */
const VERSIONS: Readonly<Record<string, number>> = { NSString: 1, NSMutableString: 1 };

class TypedstreamWriter {
  readonly #chunks: number[] = [4, 11, ...utf8.encode('streamtyped'), 0x81, 0xe8, 0x03];
  readonly #shared = new Map<string, number>();
  readonly #classes = new Map<string, number>();
  readonly #strings = new Map<string, number>();
  #objects = 0;

  group(encoding: string, write: () => void): void {
    this.sharedString(encoding);
    write();
  }

  object(chain: readonly string[], write: () => void): void {
    this.#chunks.push(0x84);
    this.#objects++;
    this.classChain(chain);
    write();
    this.#chunks.push(0x86);
  }

  classChain(chain: readonly string[]): void {
    for (const name of chain) {
      const known = this.#classes.get(name);
      if (known !== undefined) { this.reference(known); return; }
      this.#chunks.push(0x84);
      this.sharedString(name);
      this.int(VERSIONS[name] ?? 0);
      this.#classes.set(name, this.#objects++);
    }
    this.#chunks.push(0x85);
  }

  /** An NSString object; equal immutable strings after the first are written as references. */
  string(value: string, chain: readonly string[] = ['NSString', 'NSObject']): void {
    const known = chain[0] === 'NSString' ? this.#strings.get(value) : undefined;
    if (known !== undefined) { this.reference(known); return; }
    if (chain[0] === 'NSString') this.#strings.set(value, this.#objects);
    this.object(chain, () => { this.group('+', () => { this.bytes(utf8.encode(value)); }); });
  }

  dictionary(entries: { readonly [key: string]: WritableValue }): void {
    const keys = Object.keys(entries);
    this.object(['NSDictionary', 'NSObject'], () => {
      this.group('i', () => { this.int(keys.length); });
      for (const key of keys) {
        this.group('@', () => { this.string(key); });
        this.group('@', () => { this.value(entries[key] as WritableValue); });
      }
    });
  }

  value(value: WritableValue): void {
    if (typeof value === 'string') { this.string(value); return; }
    if (value instanceof Uint8Array) {
      this.object(['NSData', 'NSObject'], () => {
        this.group('i', () => { this.int(value.length); });
        this.group(`[${value.length}c]`, () => { this.#raw(value); });
      }); return;
    }
    if (typeof value === 'object') {
      this.object(['NSURL', 'NSObject'], () => {
        this.group('c', () => this.#chunks.push(0));
        this.group('@', () => { this.string(value.url); });
      }); return;
    }
    const type = numberType(value);
    this.object(['NSNumber', 'NSValue', 'NSObject'], () => {
      this.group('*', () => {
        this.#chunks.push(0x84);
        this.sharedString(type);
        this.#objects++;
      });
      this.group(type, () => {
        if (typeof value === 'boolean') this.#chunks.push(value ? 1 : 0);
        else if (type === 'd') this.float64(Number(value));
        else this.int(value);
      });
    });
  }

  sharedString(value: string): void {
    const known = this.#shared.get(value);
    if (known !== undefined) { this.reference(known); return; }
    this.#chunks.push(0x84);
    this.bytes(utf8.encode(value));
    this.#shared.set(value, this.#shared.size);
  }

  bytes(bytes: Uint8Array): void {
    this.int(bytes.length);
    this.#raw(bytes);
  }

  #raw(bytes: Uint8Array): void {
    for (const byte of bytes) this.#chunks.push(byte);
  }

  reference(index: number): void {
    this.int(index + REFERENCE_BASE);
  }

  /** 1 byte for −110…127, else 0x81 + int16, 0x82 + int32 or 0x87 + int64 (little-endian). */
  int(value: number | bigint): void {
    const n = BigInt(value);
    if (n >= -110n && n <= 127n) return void this.#chunks.push(Number(n) & 0xff);
    const size = n >= -32768n && n <= 32767n ? 2 : n >= -(2n ** 31n) && n < 2n ** 31n ? 4 : 8;
    this.#chunks.push(size === 2 ? 0x81 : size === 4 ? 0x82 : 0x87);
    for (let i = 0n; i < BigInt(size); i++) this.#chunks.push(Number((BigInt.asUintN(size * 8, n) >> (8n * i)) & 0xffn));
  }

  float64(value: number): void {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setFloat64(0, value, true);
    this.#chunks.push(0x83);
    this.#raw(bytes);
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#chunks);
  }
}

/** NSNumber's ObjC type: `c` for booleans, `i`/`q` for integers by size, `d` otherwise. */
function numberType(value: number | bigint | boolean): 'c' | 'i' | 'q' | 'd' {
  if (typeof value === 'boolean') return 'c';
  if (typeof value === 'bigint') return 'q';
  if (!Number.isInteger(value)) return 'd';
  return value >= -(2 ** 31) && value < 2 ** 31 ? 'i' : 'q';
}

function identityOf(attributes: { readonly [key: string]: WritableValue }): string {
  return JSON.stringify(Object.entries(attributes), (_key, value: unknown) =>
    value instanceof Uint8Array ? `bytes:${Buffer.from(value).toString('base64')}` : typeof value === 'bigint' ? `bigint:${value}` : value,
  );
}
