import { ConfigError } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { parseTelegramConnectorConfig } from './config.ts';
import { createTelegramConnector } from './telegram-connector.ts';

const HASH = '0123456789abcdef0123456789abcdef';

function keyOf(entry: unknown): string | undefined {
  try {
    parseTelegramConnectorConfig(entry, 'connectors[2]');
  } catch (error) {
    if (error instanceof ConfigError) {
      expect(error.message).not.toContain(HASH);
      return error.key;
    }
    throw error;
  }
  return undefined;
}

describe('parseTelegramConnectorConfig', () => {
  it('accepts a user-session entry and a business entry, and builds the right connector', () => {
    const user = parseTelegramConnectorConfig({ account: 'desk-42', apiId: 123456, apiHash: HASH, maxMediaBytes: 1_000_000 }, 'c');
    expect(user).toEqual({ route: 'mtproto', account: 'desk-42', apiId: 123456, apiHash: HASH, maxMediaBytes: 1_000_000 });
    expect(createTelegramConnector(user).channel).toBe('telegram');
    expect(parseTelegramConnectorConfig({ account: 'a', apiId: 1, apiHash: HASH, reconcile: { everyMs: 3_600_000, dialogs: 200 } }, 'c')).toMatchObject({ reconcile: { everyMs: 3_600_000, dialogs: 200 } });
    const business = parseTelegramConnectorConfig({ route: 'business', account: 'desk-42', secretToken: 'A'.repeat(32), listen: { port: 8443, path: '/tg' } }, 'c');
    expect(business).toEqual({ route: 'business', account: 'desk-42', secretToken: 'A'.repeat(32), listen: { port: 8443, path: '/tg' } });
    const connector = createTelegramConnector(business);
    expect('address' in connector && connector.address()).toBeUndefined(); // nothing listens until started
  });

  it('names the offending key and never echoes secret values', () => {
    expect(keyOf(null)).toBe('connectors[2]');
    expect(keyOf({ apiId: 1, apiHash: HASH })).toBe('connectors[2].account');
    expect(keyOf({ account: '../x', apiId: 1, apiHash: HASH })).toBe('connectors[2].account');
    expect(keyOf({ account: 'a', apiId: '1', apiHash: HASH })).toBe('connectors[2].apiId');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: `${HASH}00` })).toBe('connectors[2].apiHash');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: HASH, phone: '+1' })).toBe('connectors[2].phone');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: HASH, maxMediaBytes: -1 })).toBe('connectors[2].maxMediaBytes');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: HASH, route: 'carrier-pigeon' })).toBe('connectors[2].route');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: HASH, reconcile: { dialogs: 5 } })).toBe('connectors[2].reconcile.everyMs');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: HASH, reconcile: { everyMs: 1000 } })).toBe('connectors[2].reconcile.everyMs');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: HASH, reconcile: { everyMs: 60_000, limit: 0 } })).toBe('connectors[2].reconcile.limit');
    expect(keyOf({ account: 'a', apiId: 1, apiHash: HASH, reconcile: { everyMs: 60_000, chats: ['1'] } })).toBe('connectors[2].reconcile.chats');
    expect(keyOf({ route: 'business', account: 'a', secretToken: 'short', listen: { port: 1 } })).toBe('connectors[2].secretToken');
    expect(keyOf({ route: 'business', account: 'a', secretToken: 'A'.repeat(32) })).toBe('connectors[2].listen');
    expect(keyOf({ route: 'business', account: 'a', secretToken: 'A'.repeat(32), listen: { port: 70000 } })).toBe('connectors[2].listen.port');
    expect(keyOf({ route: 'business', account: 'a', secretToken: 'A'.repeat(32), listen: { port: 1, path: 'no-slash' } })).toBe('connectors[2].listen.path');
    expect(keyOf({ route: 'business', account: 'a', secretToken: 'A'.repeat(32), listen: { port: 1 }, botToken: 'nope' })).toBe('connectors[2].botToken');
    expect(keyOf({ route: 'business', account: 'a', secretToken: 'A'.repeat(32), listen: { port: 1 }, apiHash: HASH })).toBe('connectors[2].apiHash');
  });
});
