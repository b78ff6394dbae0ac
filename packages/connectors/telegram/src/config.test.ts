import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '@offchannel/core';
import { afterEach, describe, expect, it } from 'vitest';
import { parseTelegramConnectorConfig } from './config.ts';
import { linkTelegram, telegramStateScope } from './link-telegram.ts';
import { createTelegramConnector } from './telegram-connector.ts';
import { createLocalTelegramPeer } from './testing/index.ts';
import { createTestRig } from './test-support.ts';

const HASH = '0123456789abcdef0123456789abcdef';
const TOKEN = 'webhook-secret-0123456789abcdef';
const BOT = '123456:ABCdef_ghi-JKLmnopQRStuvwx';
/** Secrets reach the parser through the environment (`<name>Env`), as the capture process sees it. */
const env = { TG_API_HASH: HASH, TG_WEBHOOK_TOKEN: TOKEN, TG_BOT_TOKEN: BOT, SHORT: 'short' };
const user = { account: 'a', apiId: 1, apiHashEnv: 'TG_API_HASH' };
const business = { route: 'business', account: 'a', secretTokenEnv: 'TG_WEBHOOK_TOKEN' };

function failure(entry: unknown, context: Parameters<typeof parseTelegramConnectorConfig>[2] = { env }): ConfigError {
  try {
    parseTelegramConnectorConfig(entry, 'connectors[2]', context);
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const secret of [HASH, TOKEN, BOT]) expect(error.message).not.toContain(secret);
      return error;
    }
    throw error;
  }
  throw new Error('accepted');
}

function keyOf(entry: unknown): string | undefined {
  return failure(entry).key;
}

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function secretsDir(mode = 0o600): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-telegram-secrets-'));
  dirs.push(dir);
  await writeFile(path.join(dir, 'api-hash'), `${HASH}\n`, { mode });
  await writeFile(path.join(dir, 'webhook-token'), `${TOKEN}\n`, { mode });
  await writeFile(path.join(dir, 'bot-token'), `${BOT}\n`, { mode });
  await chmod(path.join(dir, 'api-hash'), mode); // writeFile's mode is masked by the umask
  await chmod(path.join(dir, 'webhook-token'), mode);
  await chmod(path.join(dir, 'bot-token'), mode);
  return dir;
}

describe('parseTelegramConnectorConfig', () => {
  it('accepts a user-session entry and a business entry, and builds the right connector', () => {
    const parsed = parseTelegramConnectorConfig({ account: 'desk-42', apiId: 123456, apiHashEnv: 'TG_API_HASH', maxMediaBytes: 1_000_000 }, 'c', { env });
    expect(parsed).toEqual({ route: 'mtproto', account: 'desk-42', apiId: 123456, apiHash: HASH, maxMediaBytes: 1_000_000 });
    expect(createTelegramConnector(parsed).channel).toBe('telegram');
    expect(parseTelegramConnectorConfig({ ...user, reconcile: { everyMs: 3_600_000, dialogs: 200 } }, 'c', { env })).toMatchObject({ reconcile: { everyMs: 3_600_000, dialogs: 200 } });
    const hook = parseTelegramConnectorConfig({ route: 'business', account: 'desk-42', secretTokenEnv: 'TG_WEBHOOK_TOKEN', listen: { port: 8443, path: '/tg' } }, 'c', { env });
    expect(hook).toEqual({ route: 'business', account: 'desk-42', secretToken: TOKEN, listen: { port: 8443, path: '/tg' } });
    const connector = createTelegramConnector(hook);
    expect('address' in connector && connector.address()).toBeUndefined(); // nothing listens until started
  });

  it('refuses every literal secret with a message saying where to put it, never echoing it', () => {
    for (const [entry, name] of [
      [{ account: 'a', apiId: 1, apiHash: HASH }, 'apiHash'],
      [{ route: 'business', account: 'a', secretToken: TOKEN, listen: { port: 1 } }, 'secretToken'],
      [{ ...business, listen: { port: 1 }, botToken: BOT }, 'botToken'],
    ] as const) {
      const error = failure(entry);
      expect(error.key).toBe(`connectors[2].${name}`);
      expect(error.message).toContain(`is a secret and is not accepted in a config file`);
      expect(error.message).toContain(`"${name}File": "<path>"`);
      expect(error.message).toContain(`"${name}Env": "<VARIABLE>"`);
    }
  });

  it('reads secrets from 0600 files relative to the config directory, and refuses shared ones', async () => {
    const dir = await secretsDir();
    expect(parseTelegramConnectorConfig({ account: 'a', apiId: 1, apiHashFile: 'api-hash' }, 'c', { baseDir: dir })).toMatchObject({ apiHash: HASH });
    const hook = parseTelegramConnectorConfig({ route: 'business', account: 'a', secretTokenFile: './webhook-token', botTokenFile: './bot-token', listen: { port: 1 } }, 'c', { baseDir: dir });
    expect(hook).toMatchObject({ secretToken: TOKEN, botToken: BOT });
    for (const mode of [0o644, 0o640, 0o604]) {
      const shared = await secretsDir(mode);
      for (const [entry, name] of [
        [{ account: 'a', apiId: 1, apiHashFile: 'api-hash' }, 'apiHashFile'],
        [{ route: 'business', account: 'a', secretTokenFile: 'webhook-token', listen: { port: 1 } }, 'secretTokenFile'],
        [{ route: 'business', account: 'a', secretTokenFile: path.join(dir, 'webhook-token'), botTokenFile: 'bot-token', listen: { port: 1 } }, 'botTokenFile'],
      ] as const) {
        const error = failure(entry, { baseDir: shared });
        expect(error.key).toBe(`connectors[2].${name}`);
        expect(error.message).toMatch(/group or others can access; run chmod 600/);
      }
    }
  });

  it('checks the shape of a secret from a file or the environment, naming where it came from', async () => {
    const dir = await secretsDir();
    await writeFile(path.join(dir, 'wrong'), 'not-a-hash', { mode: 0o600 });
    expect(failure({ account: 'a', apiId: 1, apiHashFile: 'wrong' }, { baseDir: dir }).message).toBe('connectors[2].apiHashFile does not hold the 32-character hexadecimal api_hash from my.telegram.org.');
    expect(keyOf({ account: 'a', apiId: 1, apiHashEnv: 'TG_WEBHOOK_TOKEN' })).toBe('connectors[2].apiHashEnv');
    expect(failure({ ...business, secretTokenEnv: 'SHORT', listen: { port: 1 } }).message).toMatch(/secretTokenEnv does not hold a webhook secret token/);
    expect(failure({ ...business, listen: { port: 1 }, botTokenEnv: 'TG_API_HASH' }).message).toMatch(/botTokenEnv does not hold a bot token/);
    // No source named: the api_hash comes from the encrypted state store, where `link` keeps it (link-telegram.test.ts).
    expect(parseTelegramConnectorConfig({ account: 'a', apiId: 1 }, 'c', { env })).toEqual({ route: 'mtproto', account: 'a', apiId: 1 });
    expect(failure({ route: 'business', account: 'a', listen: { port: 1 } }).message).toMatch(/secretTokenFile is required \(or secretTokenEnv\)/);
  });

  it('the file route works end to end: link sends the api_hash from the file to the (local) Telegram server', { timeout: 60_000 }, async () => {
    const dir = await secretsDir();
    const options = parseTelegramConnectorConfig({ account: 'alice', apiId: 7, apiHashFile: './api-hash' }, 'c', { baseDir: dir });
    if (options.route === 'business' || options.apiHash === undefined) throw new Error('no api_hash read from the file');
    const rig = await createTestRig();
    try {
      const peer = createLocalTelegramPeer();
      await linkTelegram({ account: options.account, apiId: options.apiId, apiHash: options.apiHash, state: telegramStateScope(rig.state, 'alice'), clientFactory: peer.clientFactory, logger: rig.logger, io: { phone: async () => '+1 555 000 0001', code: async () => peer.server.loginCode, password: () => Promise.reject(new Error('no 2FA')) } });
      expect(peer.server.requests.find((request) => request._ === 'auth.sendCode')).toMatchObject({ apiId: 7, apiHash: HASH });
      expect(rig.logger.text()).not.toContain(HASH);
    } finally {
      await rig.close();
    }
  });

  it('names the offending key and never echoes secret values', () => {
    expect(keyOf(null)).toBe('connectors[2]');
    expect(keyOf({ apiId: 1, apiHashEnv: 'TG_API_HASH' })).toBe('connectors[2].account');
    expect(keyOf({ ...user, account: '../x' })).toBe('connectors[2].account');
    expect(keyOf({ ...user, apiId: '1' })).toBe('connectors[2].apiId');
    expect(keyOf({ ...user, apiHashEnv: 'TG_BOT_TOKEN' })).toBe('connectors[2].apiHashEnv');
    expect(keyOf({ ...user, phone: '+1' })).toBe('connectors[2].phone');
    expect(keyOf({ ...user, maxMediaBytes: -1 })).toBe('connectors[2].maxMediaBytes');
    expect(keyOf({ ...user, route: 'carrier-pigeon' })).toBe('connectors[2].route');
    expect(keyOf({ ...user, reconcile: { dialogs: 5 } })).toBe('connectors[2].reconcile.everyMs');
    expect(keyOf({ ...user, reconcile: { everyMs: 1000 } })).toBe('connectors[2].reconcile.everyMs');
    expect(keyOf({ ...user, reconcile: { everyMs: 60_000, limit: 0 } })).toBe('connectors[2].reconcile.limit');
    expect(keyOf({ ...user, reconcile: { everyMs: 60_000, chats: ['1'] } })).toBe('connectors[2].reconcile.chats');
    expect(keyOf({ ...business, secretTokenEnv: 'SHORT', listen: { port: 1 } })).toBe('connectors[2].secretTokenEnv');
    expect(keyOf(business)).toBe('connectors[2].listen');
    expect(keyOf({ ...business, listen: { port: 70000 } })).toBe('connectors[2].listen.port');
    expect(keyOf({ ...business, listen: { port: 1, path: 'no-slash' } })).toBe('connectors[2].listen.path');
    expect(keyOf({ ...business, listen: { port: 1 }, botTokenEnv: 'TG_WEBHOOK_TOKEN' })).toBe('connectors[2].botTokenEnv');
    expect(keyOf({ ...business, listen: { port: 1 }, apiHashEnv: 'TG_API_HASH' })).toBe('connectors[2].apiHashEnv');
  });
});
