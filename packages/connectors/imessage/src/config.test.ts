import { readFileSync } from 'node:fs';
import { ConfigError } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { parseIMessageConnectorConfig, resolveOptions } from './config.ts';
import { PACKAGE_VERSION } from './version.ts';

const failure = (entry: unknown): ConfigError => {
  try {
    parseIMessageConnectorConfig(entry, 'connectors[0]');
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
};

describe('parseIMessageConnectorConfig', () => {
  it('accepts a minimal entry and a full one', () => {
    expect(parseIMessageConnectorConfig({ account: 'alice@firm.example' }, 'c')).toEqual({ account: 'alice@firm.example' });
    const full = { account: 'alice', chatDb: '/Users/alice/Library/Messages/chat.db', attachmentsDir: '/tmp/att', pollMs: 500, self: '+15550000', startAt: 'now', sweepLookbackMs: 3_600_000, fullSweepMs: 60_000, maxAttachmentBytes: 1024, watch: false };
    expect(parseIMessageConnectorConfig(full, 'c')).toEqual(full);
    expect(parseIMessageConnectorConfig({ ...full, chatDb: 'relay/chat.db', attachmentsDir: '../att' }, 'c', { baseDir: '/etc/offchannel' })).toMatchObject({ chatDb: '/etc/offchannel/relay/chat.db', attachmentsDir: '/etc/att' });
    expect(parseIMessageConnectorConfig(full, 'c', { baseDir: '/etc/offchannel' })).toEqual(full);
  });

  it('names the bad key and never echoes the value', () => {
    expect(failure(null).key).toBe('connectors[0]');
    expect(failure({}).key).toBe('connectors[0].account');
    const bad = failure({ account: 'a', pollMs: 'secret-value' });
    expect(bad.key).toBe('connectors[0].pollMs');
    expect(bad.message).toMatch(/^connectors\[0\]\.pollMs must be an integer from 50 to 60000/);
    expect(bad.message).not.toContain('secret-value');
    expect(failure({ account: 'a', pollMs: 10 }).key).toBe('connectors[0].pollMs');
    expect(failure({ account: 'a', startAt: 'yesterday' }).key).toBe('connectors[0].startAt');
    expect(failure({ account: 'a', watch: 'yes' }).key).toBe('connectors[0].watch');
    expect(failure({ account: 'a', chatDb: '' }).key).toBe('connectors[0].chatDb');
    expect(failure({ account: 'a', channel: 'imessage' }).key).toBe('connectors[0].channel');
  });

  it('fills in defaults: ~/Library/Messages/chat.db, 1 s poll, history from the beginning', () => {
    const options = resolveOptions({ account: 'alice' });
    expect(options.chatDb).toMatch(/Library\/Messages\/chat\.db$/);
    expect(options).toMatchObject({ pollMs: 1000, self: 'alice', startAt: 'beginning', watch: true });
  });

  it('stamps the package version on records', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(PACKAGE_VERSION).toBe(pkg.version);
  });
});
