import type { Options } from 'tsup';

/** Shared build settings: ESM only, Node 22+, declarations with TSDoc, `node:` imports kept. */
export function packageBuild(entry: Record<string, string>, overrides: Options = {}): Options {
  return {
    entry,
    format: ['esm'],
    target: 'node22',
    platform: 'node',
    dts: true,
    sourcemap: true,
    clean: true,
    // node:sqlite exists only with its prefix; never rewrite `node:x` to `x`.
    removeNodeProtocol: false,
    ...overrides,
  };
}
