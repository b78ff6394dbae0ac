/**
 * Connection handling with libsignal's own fake chat remote (no sockets): reconnect with
 * backoff, unlink detection, the offline warning, and refusing to start unlinked. The full
 * receive path against a real server is in @offchannel/signal-mock-tests.
 */
import { randomUUID } from 'node:crypto';
import { Recorder, createConnectorContext, decodeRecord } from '@offchannel/core';
import { createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import { ErrorCode, IdentityKeyPair, type LibSignalError } from '@signalapp/libsignal-client';
import * as Native from '@signalapp/libsignal-client/dist/Native.js';
import type { FakeChatRemote } from '@signalapp/libsignal-client/dist/net/FakeChat.js';
import { AuthenticatedChatConnection, type ChatServiceListener, type Net, TokioAsyncContext } from '@signalapp/libsignal-client/dist/net.js';
import { describe, expect, it } from 'vitest';
import { tempStateStore } from './__fixtures__/signal-parties.ts';
import { ACCOUNT_STATE, type SignalAccount, encodeAccount } from './account.ts';
import { createSignalConnector } from './signal-connector.ts';

const ROOT = 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF';

/** A `Net` whose chat connections are libsignal fakes; records each listener. */
function fakeNet(options: { failConnects?: number } = {}) {
  const tokio = new TokioAsyncContext(Native.TokioAsyncContext_new());
  const listeners: ChatServiceListener[] = [];
  const remotes: FakeChatRemote[] = [];
  let failures = options.failConnects ?? 0;
  const connectAuthenticatedChat = async (_user: string, _password: string, _stories: boolean, listener: ChatServiceListener) => {
    if (failures > 0) {
      failures--;
      throw Object.assign(new Error('connect failed'), { code: ErrorCode.IoError });
    }
    listeners.push(listener);
    const [chat, remote] = AuthenticatedChatConnection.fakeConnect(tokio, listener);
    remotes.push(remote);
    return chat;
  };
  return { net: { connectAuthenticatedChat } as unknown as Net, listeners, remotes };
}

async function setup(options: { lastOnlineDaysAgo?: number; linked?: boolean; rotatedDaysAgo?: number } = {}) {
  const root = await tempStateStore();
  const scoped = root.scope('signal:alice');
  if (options.linked !== false) {
    const account: SignalAccount = {
      version: 1,
      aci: randomUUID(),
      pni: `PNI:${randomUUID()}`,
      deviceId: 2,
      password: 'secret-password',
      registrationId: 42,
      pniRegistrationId: 43,
      aciIdentity: IdentityKeyPair.generate(),
      pniIdentity: IdentityKeyPair.generate(),
      nextPreKeyId: { aci: 2, pni: 2 },
      signedPreKeyId: { aci: 1, pni: 1 },
      linkedAt: new Date().toISOString(),
      ...(options.rotatedDaysAgo === undefined ? {} : { signedPreKeyRotatedAt: new Date(Date.now() - options.rotatedDaysAgo * 86_400_000).toISOString() }),
    };
    await scoped.setJson(ACCOUNT_STATE, encodeAccount(account));
  }
  if (options.lastOnlineDaysAgo !== undefined) await scoped.setJson('last-online', new Date(Date.now() - options.lastOnlineDaysAgo * 86_400_000).toISOString());
  const sink = createMemorySink();
  const recorder = new Recorder({ sink, allowVolatileSink: true });
  const logger = createRecordingLogger();
  const controller = new AbortController();
  const context = (connector: Parameters<typeof createConnectorContext>[0]['connector']) => createConnectorContext({ recorder, connector, state: root, logger, signal: controller.signal });
  const records = async () => {
    const out = [];
    for await (const stored of sink.read('signal:alice')) out.push(decodeRecord(stored.bytes).record);
    return out;
  };
  return { context, logger, controller, records, state: scoped };
}

const until = async (condition: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setImmediate(resolve));
  if (!condition()) throw new Error('condition not reached');
};

describe('SignalConnector connection handling', () => {
  it('refuses to start without a linked device, naming the link command', async () => {
    const s = await setup({ linked: false });
    const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fakeNet().net });
    const failure: unknown = await connector.start(s.context(connector)).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toMatchObject({ code: 'SIGNAL_NOT_LINKED' });
    expect((failure as Error).message).toContain('offchannel link signal --account alice');
    expect(connector.status().state).toBe('failed');
  });

  it('reconnects with backoff after the connection drops or fails, and never logs the password', async () => {
    const s = await setup();
    const fake = fakeNet();
    const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fake.net, reconnect: { minMs: 1, maxMs: 4 } });
    await connector.start(s.context(connector));
    expect(connector.status()).toMatchObject({ state: 'running' });
    expect(connector.signalStatus().queue).toBe('draining');
    fake.listeners[0]?.onQueueEmpty();
    await until(() => connector.signalStatus().queue === 'empty');
    // The backlog is in: the connector checks its prekey pools (plenty left: no upload).
    const remote = fake.remotes[0]!;
    for (const identity of ['aci', 'pni']) {
      const request = await remote.assertReceiveIncomingRequest();
      expect([request.verb, request.path]).toEqual(['GET', `/v2/keys?identity=${identity}`]);
      remote.sendReplyTo(request, { status: 200, body: new Uint8Array(Buffer.from(JSON.stringify({ count: 50, pqCount: 50 }))) });
    }
    remote.injectConnectionInterrupted();
    await until(() => connector.status().state === 'reconnecting');
    expect(connector.signalStatus().disconnectedSince).toBeDefined();
    await until(() => fake.listeners.length === 2 && connector.status().state === 'running');
    expect(connector.signalStatus().connectedSince).toBeDefined();
    await connector.stop();
    expect(connector.status().state).toBe('stopped');
    expect(s.logger.text()).not.toContain('secret-password');
  });

  it('tops up one-time prekeys when the server pool runs low, saving them before uploading', async () => {
    const s = await setup();
    const fake = fakeNet();
    const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fake.net });
    await connector.start(s.context(connector));
    fake.listeners[0]?.onQueueEmpty();
    const remote = fake.remotes[0]!;
    for (const identity of ['aci', 'pni']) {
      const count = await remote.assertReceiveIncomingRequest();
      remote.sendReplyTo(count, { status: 200, body: new Uint8Array(Buffer.from(JSON.stringify({ count: 3, pqCount: 0 }))) });
      const upload = await remote.assertReceiveIncomingRequest();
      expect([upload.verb, upload.path]).toEqual(['PUT', `/v2/keys?identity=${identity}`]);
      const body = JSON.parse(Buffer.from(upload.body).toString('utf8')) as { preKeys: { keyId: number }[]; pqPreKeys: { keyId: number; signature: string }[] };
      expect(body.preKeys).toHaveLength(100);
      expect(body.pqPreKeys).toHaveLength(100);
      expect(body.preKeys[0]?.keyId).toBe(2);
      expect(await s.state.get(`${identity}.prekey.2`)).toBeDefined(); // private half saved first
      expect(await s.state.get(`${identity}.kyber-prekey.101`)).toBeDefined();
      remote.sendReplyTo(upload, { status: 200 });
    }
    await connector.stop();
  });

  it('rotates the signed and last-resort prekeys every two days, keeping the old ones for messages in flight', async () => {
    const s = await setup({ rotatedDaysAgo: 3 });
    await s.state.set('aci.signed-prekey.1', Uint8Array.of(1)); // the current one, from linking
    const fake = fakeNet();
    const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fake.net });
    await connector.start(s.context(connector));
    fake.listeners[0]?.onQueueEmpty();
    const remote = fake.remotes[0]!;
    for (const identity of ['aci', 'pni']) {
      const upload = await remote.assertReceiveIncomingRequest();
      expect([upload.verb, upload.path]).toEqual(['PUT', `/v2/keys?identity=${identity}`]);
      const body = JSON.parse(Buffer.from(upload.body).toString('utf8')) as { signedPreKey?: { keyId: number }; pqLastResortPreKey?: { keyId: number }; preKeys: unknown[] };
      expect(body.signedPreKey?.keyId).toBe(2);
      expect(body.pqLastResortPreKey?.keyId).toBe(2);
      expect(body.preKeys).toHaveLength(100);
      expect(await s.state.get(`${identity}.signed-prekey.2`)).toBeDefined();
      expect(await s.state.get(`${identity}.kyber-last-resort.2`)).toBeDefined();
      remote.sendReplyTo(upload, { status: 200 });
    }
    await connector.stop();
    expect(await s.state.get('aci.signed-prekey.1')).toBeDefined();
    const account = (await s.state.getJson<{ signedPreKeyId: unknown; signedPreKeyRotatedAt: string }>(ACCOUNT_STATE))!;
    expect(account.signedPreKeyId).toEqual({ aci: 2, pni: 2 });
    expect(Date.now() - Date.parse(account.signedPreKeyRotatedAt)).toBeLessThan(60_000);
  });

  it('stops and records a system event when Signal unlinks the device', async () => {
    const s = await setup();
    const fake = fakeNet();
    const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fake.net });
    await connector.start(s.context(connector));
    fake.listeners[0]?.onConnectionInterrupted(Object.assign(new Error('delinked'), { code: ErrorCode.DeviceDelinked }) as unknown as LibSignalError);
    expect(connector.status().state).toBe('logged-out');
    expect(connector.status().detail).toContain('relink');
    await connector.stop();
    const records = await s.records();
    expect(records.map((r) => [r.kind, r.system?.event])).toEqual([
      ['system', 'linked-device'],
      ['system', 'device-unlinked'],
    ]);
    expect(records[1]?.system?.fields).toMatchObject({ reason: 'DeviceDelinked' });
  });

  it('warns well before the ~30-day unlink when it has been offline, records the risk, and reports the risk date', async () => {
    const s = await setup({ lastOnlineDaysAgo: 20 });
    const fake = fakeNet({ failConnects: 1000 });
    const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fake.net, reconnect: { minMs: 50, maxMs: 50 } });
    await connector.start(s.context(connector));
    expect(connector.status().state).toBe('reconnecting');
    expect(s.logger.lines.some((line) => line.level === 'warn' && (line.message ?? '').includes('unlink'))).toBe(true);
    const risk = Date.parse(connector.signalStatus().unlinkRiskAt ?? '');
    expect(Math.round((risk - Date.now()) / 86_400_000)).toBe(10);
    await connector.stop();
    // Within the retention window: no gap yet, but the risk is in the archive, not only the log.
    const records = await s.records();
    expect(records.map((r) => [r.kind, r.system?.event])).toEqual([
      ['system', 'linked-device'],
      ['system', 'unlink-risk'],
    ]);
    expect(records[1]?.system?.fields).toMatchObject({ offlineDays: '20' });
  });

  it('records each whole day offline past the warning once, on an injected clock', async () => {
    const s = await setup({ lastOnlineDaysAgo: 0 });
    let now = Date.now();
    const run = async () => {
      const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fakeNet({ failConnects: 1000 }).net, reconnect: { minMs: 50, maxMs: 50 }, unlinkWarningDays: 7, clock: () => now });
      await connector.start(s.context(connector));
      await connector.stop();
    };
    now += 6.9 * 86_400_000; // below the warning
    await run();
    now += 5 * 86_400_000; // 11.9 days offline: one record, however often it is checked that day
    await run();
    await run();
    const events = (await s.records()).filter((r) => r.system?.event === 'unlink-risk').map((r) => r.system?.fields?.offlineDays);
    expect(events).toEqual(['11']);
  });

  it('records a gap when it was offline longer than Signal keeps a device queue', async () => {
    const s = await setup({ lastOnlineDaysAgo: 40 });
    const connector = createSignalConnector({ account: 'alice', trustRoots: [ROOT], net: fakeNet().net });
    await connector.start(s.context(connector));
    await connector.stop();
    const gap = (await s.records()).find((r) => r.kind === 'gap');
    expect(gap).toMatchObject({ kind: 'gap', gap: { reason: 'offline-beyond-signal-retention' } });
    expect(Math.round((Date.now() - Date.parse(gap?.gap?.from ?? '')) / 86_400_000)).toBe(40);
  });
});
