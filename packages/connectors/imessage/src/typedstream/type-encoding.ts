/**
 * Objective-C type encodings as typedstream writes them in each group: one character per
 * simple type (`@` object, `+` UTF-8 string, `i` int…), `[12c]` for fixed arrays and
 * `{name=types}` for structs. A group's encoding may list several types (`iI`).
 */

/** A simple type character, a fixed-size array, or a struct. */
export type TypeNode = string | { readonly kind: 'array'; readonly count: number; readonly of: TypeNode } | { readonly kind: 'struct'; readonly fields: readonly TypeNode[] };

const SIMPLE = new Set(['@', '#', '*', '+', ':', '%', 'c', 'C', 'B', 'i', 's', 'l', 'q', 'I', 'S', 'L', 'Q', 'f', 'd']);
const MAX_NESTING = 16;
const MAX_ARRAY = 1 << 30;

/** Parses a group's type encoding; calls `fail` (which must throw) on anything malformed. */
export function parseTypeEncoding(bytes: Uint8Array, fail: (problem: string) => never): readonly TypeNode[] {
  let pos = 0;
  const peek = (): number | undefined => bytes[pos];

  const node = (depth: number): TypeNode => {
    if (depth > MAX_NESTING) fail('type encoding nested too deeply');
    const code = bytes[pos++];
    if (code === undefined) fail('type encoding ends early');
    const char = String.fromCharCode(code);
    if (SIMPLE.has(char)) return char;
    if (char === '[') {
      let count = 0;
      let digits = 0;
      for (let digit = peek(); digit !== undefined && digit >= 0x30 && digit <= 0x39; digit = peek()) {
        count = count * 10 + (digit - 0x30);
        digits++;
        pos++;
        if (count > MAX_ARRAY) fail('array type too large');
      }
      if (digits === 0) fail('array type without a count');
      const of = node(depth + 1);
      if (bytes[pos++] !== 0x5d) fail('array type without a closing bracket');
      return { kind: 'array', count, of };
    }
    if (char === '{') {
      while (peek() !== undefined && peek() !== 0x3d && peek() !== 0x7d) pos++; // struct name
      if (peek() === 0x3d) pos++;
      const fields: TypeNode[] = [];
      while (peek() !== 0x7d) {
        if (peek() === undefined) fail('struct type without a closing brace');
        fields.push(node(depth + 1));
      }
      pos++;
      if (fields.length === 0) fail('struct type without fields');
      return { kind: 'struct', fields };
    }
    return fail('unsupported type in encoding');
  };

  const types: TypeNode[] = [];
  while (pos < bytes.length) types.push(node(0));
  if (types.length === 0) fail('empty type encoding');
  return types;
}
