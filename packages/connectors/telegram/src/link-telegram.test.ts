import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { OffchannelError, createConnectorContext } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { linkTelegram, telegramStateScope } from './link-telegram.ts';
import { parseTelegramConnectorConfig } from './config.ts';
import { hasTelegramSession, storedApiHash } from './state-storage.ts';
import { createTelegramConnector } from './telegram-connector.ts';
import { createLocalTelegramPeer, LOCAL_API } from './testing/index.ts';
import { testRigs } from './test-support.ts';

const rigs = testRigs();

describe('linkTelegram', () => {
  it('logs in with phone and code (retrying a wrong code), stores the session and the update state, and logs no secrets', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    const state = telegramStateScope(r.state, 'alice');
    const codes = ['00000', peer.server.loginCode];
    const notices: string[] = [];
    const linked = await linkTelegram({
      account: 'alice',
      ...LOCAL_API,
      state,
      clientFactory: peer.clientFactory,
      logger: r.logger,
      io: { phone: async () => '+1 555 000 0001', code: async (attempt) => codes[attempt - 1] ?? '', password: () => Promise.reject(new Error('not asked')), notice: (line) => notices.push(line) },
    });
    expect(linked).toEqual({ userId: '5000001', name: 'Alice Trader' });
    expect(await hasTelegramSession(state)).toBe(true);
    expect(notices).toContain('That code is not valid; try again.');
    expect(peer.server.calls).toEqual(['auth.sendCode', 'auth.signIn', 'auth.signIn', 'updates.getState']);
    // The stored state is encrypted at rest and names no secret in the logs.
    expect(r.logger.text()).not.toContain(peer.server.loginCode);
    expect((await state.list()).sort()).toEqual(['mtcute.auth', 'mtcute.kv', 'mtcute.peers']);

    // Capture starts from the linked update state: no getState, a difference from the stored pts.
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.stop();
    expect(peer.server.requests.find((request) => request._ === 'updates.getDifference')).toMatchObject({ pts: 100 });
  });

  it('asks for the two-step verification password, checks it with real SRP, and retries a wrong one', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    peer.server.setPassword('correct horse battery staple', 'the usual');
    const passwords = ['wrong password', 'correct horse battery staple'];
    const hints: (string | undefined)[] = [];
    const linked = await linkTelegram({
      account: 'alice',
      ...LOCAL_API,
      state: telegramStateScope(r.state, 'alice'),
      clientFactory: peer.clientFactory,
      logger: r.logger,
      io: { phone: async () => '+15550000001', code: async () => peer.server.loginCode, password: async (hint, attempt) => (hints.push(hint), passwords[attempt - 1] ?? '') },
    });
    expect(linked.userId).toBe('5000001');
    expect(hints).toEqual(['the usual', 'the usual']);
    expect(peer.server.calls.filter((call) => call === 'auth.checkPassword')).toHaveLength(2);
    expect(r.logger.text()).not.toContain('correct horse');
  });

  it('refuses to overwrite a linked session unless asked, and gives up after too many wrong codes', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    const state = telegramStateScope(r.state, 'alice');
    await peer.link(state);
    const io = { phone: async () => '+15550000001', code: async () => '99999', password: () => Promise.reject(new Error('not asked')) };
    const again = await linkTelegram({ account: 'alice', ...LOCAL_API, state, clientFactory: peer.clientFactory, io }).catch((error: unknown) => error);
    expect(OffchannelError.hasCode(again, 'TELEGRAM_ALREADY_LINKED')).toBe(true);
    const wrong = await linkTelegram({ account: 'alice', ...LOCAL_API, state, clientFactory: peer.clientFactory, io, replace: true, maxAttempts: 2 }).catch((error: unknown) => error);
    expect(OffchannelError.hasCode(wrong, 'TELEGRAM_LINK_FAILED')).toBe(true);
    expect((wrong as Error).message).toContain('PHONE_CODE_INVALID');
    const badPhone = await linkTelegram({ account: 'alice', ...LOCAL_API, state, clientFactory: peer.clientFactory, io: { ...io, phone: async () => 'not a phone' }, replace: true }).catch((error: unknown) => error);
    expect(OffchannelError.hasCode(badPhone, 'TELEGRAM_LINK_INPUT')).toBe(true);
  });

  it('the state-store route: link keeps the api_hash encrypted, and a connector whose config names no source uses it', { timeout: 60_000 }, async () => {
    const r = await rigs.create();
    const hash = 'c0ffee00c0ffee00c0ffee00c0ffee00';
    const peer = createLocalTelegramPeer();
    const state = telegramStateScope(r.state, 'alice');
    const io = { phone: async () => '+15550000001', code: async () => peer.server.loginCode, password: () => Promise.reject(new Error('not asked')) };
    await linkTelegram({ account: 'alice', apiId: 1, apiHash: hash, storeApiHash: true, state, clientFactory: peer.clientFactory, io });
    expect(await storedApiHash(state)).toBe(hash);
    // Encrypted at rest: the hash is in no state file.
    for (const entry of await readdir(path.join(r.dir, 'state'), { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) expect((await readFile(path.join(entry.parentPath, entry.name))).toString('latin1')).not.toContain(hash);
    }

    const options = parseTelegramConnectorConfig({ account: 'alice', apiId: 1 }, 'config.connectors[0]', { env: {} });
    if (options.route === 'business') throw new Error('wrong route');
    expect(options.apiHash).toBeUndefined();
    const seen: (string | undefined)[] = [];
    const connector = createTelegramConnector({ ...options, clientFactory: (clientOptions) => (seen.push(clientOptions.apiHash), peer.clientFactory(clientOptions)) });
    await connector.start(createConnectorContext({ recorder: r.recorder, connector, state: r.state, logger: r.logger, signal: new AbortController().signal }));
    await connector.stop();
    expect(seen).toEqual([hash]);
    expect(r.logger.text()).not.toContain(hash);
  });

  it('a connector with no api_hash anywhere fails to start, saying where to put one', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.link(telegramStateScope(r.state, 'alice')); // linked without keeping the hash
    const connector = createTelegramConnector({ account: 'alice', apiId: 1, clientFactory: peer.clientFactory });
    const error = await connector.start(createConnectorContext({ recorder: r.recorder, connector, state: r.state, signal: new AbortController().signal })).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'TELEGRAM_API_HASH_MISSING')).toBe(true);
    expect((error as Error).message).toMatch(/set apiHashFile or apiHashEnv .* or run `offchannel link telegram --account alice --replace`/);
    expect(connector.status().state).toBe('failed');
  });
});
