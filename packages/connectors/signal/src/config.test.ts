import { readFile } from 'node:fs/promises';
import { ConfigError } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { parseSignalConnectorConfig } from './config.ts';
import { LIBSIGNAL_VERSION, SIGNAL_PACKAGE_VERSION } from './version.ts';

const ROOT = 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF';

const keyOf = (entry: unknown): string => {
  try {
    parseSignalConnectorConfig(entry, 'connectors[0]');
  } catch (error) {
    if (error instanceof ConfigError) return error.key;
    throw error;
  }
  return 'accepted';
};

describe('parseSignalConnectorConfig', () => {
  it('accepts a minimal entry with production defaults, and every option', () => {
    expect(parseSignalConnectorConfig({ account: 'alice' }, 'c')).toEqual({ account: 'alice', server: { environment: 'production' } });
    expect(
      parseSignalConnectorConfig(
        {
          account: 'bob@firm',
          serverUrl: 'https://chat.staging.signal.org/',
          trustRoots: [ROOT],
          cdnUrls: { '3': 'https://cdn3.example' },
          maxAttachmentBytes: 1000,
          unlinkWarningDays: 10,
          reconnect: { minMs: 500, maxMs: 60_000 },
        },
        'c',
      ),
    ).toEqual({
      account: 'bob@firm',
      server: { environment: 'staging' },
      trustRoots: [ROOT],
      cdnUrls: { 3: 'https://cdn3.example' },
      maxAttachmentBytes: 1000,
      unlinkWarningDays: 10,
      reconnect: { minMs: 500, maxMs: 60_000 },
    });
  });

  it('names the bad key and never echoes the value', () => {
    expect(keyOf(null)).toBe('connectors[0]');
    expect(keyOf({})).toBe('connectors[0].account');
    expect(keyOf({ account: '../etc' })).toBe('connectors[0].account');
    expect(keyOf({ account: 'a', password: 'hunter2' })).toBe('connectors[0].password');
    expect(keyOf({ account: 'a', serverUrl: 'https://evil.example' })).toBe('connectors[0].serverUrl');
    expect(keyOf({ account: 'a', trustRoots: [] })).toBe('connectors[0].trustRoots');
    expect(keyOf({ account: 'a', trustRoots: [ROOT, 'not-a-key'] })).toBe('connectors[0].trustRoots[1]');
    expect(keyOf({ account: 'a', cdnUrls: { 3: 'http://plain' } })).toBe('connectors[0].cdnUrls.3');
    expect(keyOf({ account: 'a', cdnUrls: { 3: 'https://user:hunter2@cdn3.example' } })).toBe('connectors[0].cdnUrls.3');
    expect(keyOf({ account: 'a', cdnUrls: { 2: 'https://token-only@cdn2.example' } })).toBe('connectors[0].cdnUrls.2');
    expect(keyOf({ account: 'a', maxAttachmentBytes: -1 })).toBe('connectors[0].maxAttachmentBytes');
    expect(keyOf({ account: 'a', unlinkWarningDays: 30 })).toBe('connectors[0].unlinkWarningDays');
    expect(keyOf({ account: 'a', reconnect: { minMs: 5000, maxMs: 1000 } })).toBe('connectors[0].reconnect.minMs');
    expect(keyOf({ account: 'a', reconnect: { jitter: 1 } })).toBe('connectors[0].reconnect.jitter');
    expect(() => parseSignalConnectorConfig({ account: 'a', cdnUrls: { 3: 'https://user:hunter2@cdn3.example' } }, 'c')).toThrow(/must not carry a user name or password/);
    try {
      parseSignalConnectorConfig({ account: 'a', cdnUrls: { 3: 'https://user:hunter2@cdn3.example' } }, 'c');
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2');
    }
    try {
      parseSignalConnectorConfig({ account: 'a', serverUrl: 'https://secret-host.example' }, 'c');
    } catch (error) {
      expect((error as Error).message).not.toContain('secret-host');
    }
  });
});

describe('versions', () => {
  it('match package.json (source info stamped on records)', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; dependencies: Record<string, string> };
    expect(SIGNAL_PACKAGE_VERSION).toBe(pkg.version);
    expect(pkg.dependencies['@signalapp/libsignal-client']).toBe(LIBSIGNAL_VERSION);
  });
});
