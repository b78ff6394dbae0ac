import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { BUSINESS_UPSTREAM, PACKAGE_NAME, PACKAGE_VERSION, UPSTREAM } from './version.ts';

describe('source stamp', () => {
  it('matches package.json and the pinned upstream versions', async () => {
    const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string; dependencies: Record<string, string> };
    expect(PACKAGE_NAME).toBe(manifest.name);
    expect(PACKAGE_VERSION).toBe(manifest.version);
    expect(UPSTREAM).toBe(`@mtcute/core@${manifest.dependencies['@mtcute/core'] ?? '?'}`);
    expect(BUSINESS_UPSTREAM).toBe(`grammy@${manifest.dependencies['grammy'] ?? '?'}`);
  });
});
