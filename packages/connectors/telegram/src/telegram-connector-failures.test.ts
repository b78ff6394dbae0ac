import { OffchannelError, SinkUnavailableError, type Sink } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import { Long, type tl } from '@mtcute/core';
import { describe, expect, it } from 'vitest';
import { createConnectorContext } from '@offchannel/core';
import { telegramStateScope } from './link-telegram.ts';
import { createTelegramConnector } from './telegram-connector.ts';
import { decodeTl, encodeTl } from './tl-evidence.ts';
import { createLocalTelegramPeer, LOCAL_API } from './testing/index.ts';
import { testRigs, type TestRig } from './test-support.ts';

const rigs = testRigs();
const rig = (sink?: Sink): Promise<TestRig> => rigs.create(sink ? { sink } : undefined);

describe('Telegram connector: media', () => {
  it('downloads media through mtcute’s real download path, stores it by hash, and records failures as unavailable', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer({ maxMediaBytes: 200_000 });
    await peer.start({ recorder: r.recorder, state: r.state, logger: r.logger });
    const pdf = new Uint8Array(150_000).map((_, index) => (index * 7) % 251); // > one 128 KiB part
    await peer.incomingMedia({ bytes: pdf, mime: 'application/pdf', name: 'term-sheet.pdf', caption: 'Signed term sheet' });
    await peer.incomingMedia({ bytes: new Uint8Array([1, 2, 3]), mime: 'image/png', name: 'gone.png', available: false });
    await peer.incomingMedia({ bytes: new Uint8Array(300_000), mime: 'video/mp4', name: 'huge.mp4' });
    await peer.stop();
    const [stored, gone, huge] = (await r.records()).filter((record) => record.kind === 'message');
    const attachment = stored?.attachments?.[0];
    expect(attachment).toMatchObject({ status: 'stored', mime: 'application/pdf', name: 'term-sheet.pdf', size: pdf.length });
    expect(await r.blob(attachment?.status === 'stored' ? attachment.sha256 : '')).toEqual(pdf);
    expect(stored?.text).toBe('Signed term sheet');
    expect(gone?.attachments?.[0]).toMatchObject({ status: 'unavailable', mime: 'image/png', name: 'gone.png', size: 3 });
    expect(gone?.attachments?.[0]?.status === 'unavailable' && gone.attachments[0].reason).toMatch(/^download-failed: /);
    expect(huge?.attachments?.[0]).toMatchObject({ status: 'unavailable', reason: 'too-large: 300000 bytes exceeds the 200000-byte download limit' });
    expect(peer.server.calls.filter((call) => call === 'upload.getFile').length).toBeGreaterThanOrEqual(2);
    expect(r.logger.text()).not.toContain('term sheet');
  });
});

describe('Telegram connector: edits and reactions', () => {
  it('records content edits and reactions; a repeated identical edit is not recorded twice', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const order = await peer.incomingText('Buy 100 ACME');
    await peer.edit(order, 'Buy 200 ACME');
    await peer.react(order, '👍', { by: 'self' });
    await peer.edit(order, 'Buy 200 ACME'); // same content again: no new record
    await peer.incomingText('sync'); // a later event, so we know the repeated edit was processed
    await peer.stop();
    const kinds = (await r.records()).map((record) => `${record.kind}:${record.text ?? record.reaction?.value ?? ''}`);
    expect(kinds).toEqual(['message:Buy 100 ACME', 'edit:Buy 200 ACME', 'reaction:👍', 'message:sync']);
  });
});

describe('Telegram connector: gaps, flood waits, sessions', () => {
  it('records a gap when Telegram says the difference is too long to replay', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('before');
    const ptsBefore = peer.server.pts;
    peer.missedText('lost for good').recorded.catch(() => undefined);
    peer.server.forgetHistory();
    peer.pushUpdate({ _: 'updateDeleteMessages', messages: [1], pts: 0, ptsCount: 1 });
    const { input } = await peer.waitFor((candidate) => candidate.kind === 'gap');
    await peer.stop();
    expect(input.gap).toEqual({ reason: 'difference-too-long', from: String(ptsBefore), to: String(peer.server.pts), missing: peer.server.pts - ptsBefore });
  });

  it('respects a flood wait on getDifference, then recovers the missed message', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('one');
    const missed = peer.missedText('two');
    peer.server.failNext('updates.getDifference', { code: 420, message: 'FLOOD_WAIT_1' });
    const started = Date.now();
    await peer.incomingText('three');
    await missed.recorded;
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(peer.connector.status().detail).toMatch(/flood wait: updates\.getDifference retried after 1 s/);
    await peer.stop();
    expect((await r.records()).map((record) => record.text).sort()).toEqual(['one', 'three', 'two']);
  });

  it('reports a killed session (AUTH_KEY_DUPLICATED) in status() and records it', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('one');
    peer.missedText('two').recorded.catch(() => undefined);
    peer.server.failNext('updates.getDifference', { code: 406, message: 'AUTH_KEY_DUPLICATED' });
    peer.pushUpdate({ _: 'updateDeleteMessages', messages: [1], pts: 0, ptsCount: 1 });
    const { input } = await peer.waitFor((candidate) => candidate.kind === 'system' && candidate.system?.event === 'logged-out');
    expect(input.system?.fields).toEqual({ code: 'AUTH_KEY_DUPLICATED' });
    expect(peer.connector.status()).toMatchObject({ state: 'logged-out' });
    expect(peer.connector.status().detail).toContain('AUTH_KEY_DUPLICATED');
    await peer.stop();
    // The runtime's one rule: a stopped connector says `stopped`; the session end stays recorded.
    expect(peer.connector.status().state).toBe('stopped');
  });

  it('reports a session revoked while stopped (AUTH_KEY_UNREGISTERED during catch-up)', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.link(telegramStateScope(r.state, 'alice'));
    peer.server.failNext('updates.getDifference', { code: 401, message: 'AUTH_KEY_UNREGISTERED' });
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.waitFor((candidate) => candidate.kind === 'system' && candidate.system?.fields?.['code'] === 'AUTH_KEY_UNREGISTERED');
    expect(peer.connector.status().state).toBe('logged-out');
    await peer.stop();
  });

  it('refuses a second live session on the same account, loudly', async () => {
    const r = await rig();
    const first = createLocalTelegramPeer();
    await first.start({ recorder: r.recorder, state: r.state });
    const second = createLocalTelegramPeer({ server: first.server });
    const error = await second.start({ recorder: r.recorder, state: r.state }).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'TELEGRAM_SESSION_IN_USE')).toBe(true);
    expect(second.connector.status().state).toBe('failed');
    await first.stop();
    const third = createLocalTelegramPeer({ server: first.server }); // a connector starts once
    await third.start({ recorder: r.recorder, state: r.state }); // free again after the first stops
    await third.stop();
  });

  it('refuses to start an account that was never linked', async () => {
    const r = await rig();
    const connector = createTelegramConnector({ account: 'bob', ...LOCAL_API });
    const ctx = createConnectorContext({ recorder: r.recorder, connector, state: r.state, signal: new AbortController().signal });
    const error = await connector.start(ctx).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'TELEGRAM_NOT_LINKED')).toBe(true);
    expect(connector.status().state).toBe('failed');
  });
});

describe('Telegram connector: secret chats', () => {
  it('records a secret-chat message as undecryptable with its TL bytes (not as a mapping failure)', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    peer.server.qts = 100; // a used account (mtcute applies no qts update whose predecessor is 0)
    await peer.start({ recorder: r.recorder, state: r.state });
    peer.server.qts++;
    const update: tl.RawUpdateNewEncryptedMessage = {
      _: 'updateNewEncryptedMessage',
      message: { _: 'encryptedMessage', randomId: Long.fromNumber(7), chatId: 77, date: 1_700_000_100, bytes: new Uint8Array([0xde, 0xad]), file: { _: 'encryptedFileEmpty' } },
      qts: peer.server.qts,
    };
    peer.pushUpdate(update);
    const { input } = await peer.waitFor((candidate) => candidate.kind === 'undecryptable' || candidate.kind === 'unsupported');
    await peer.stop();
    expect(input).toMatchObject({ kind: 'undecryptable', key: `undecryptable:secret:77:${update.qts}`, problem: { reason: 'secret-chat' } });
    const [record] = await r.records();
    const container = decodeTl((await r.blob(record?.raw?.sha256 ?? '')) ?? new Uint8Array()) as tl.RawUpdates;
    expect(container.updates.map((one) => encodeTl(one))).toEqual([encodeTl(update)]);
  });
});

describe('Telegram connector: durability', () => {
  it('acknowledges nothing while the archive fails, retries, and replays from the stored cursor after a restart', async () => {
    const memory = createMemorySink();
    let down = false;
    const flaky = Object.create(memory) as Sink;
    Object.assign(flaky, {
      appendBatch: async (batch: Parameters<Sink['appendBatch']>[0]) => {
        if (down) throw new SinkUnavailableError('test outage');
        return memory.appendBatch(batch);
      },
    });
    const first = await rig(flaky);
    const peer = createLocalTelegramPeer({ retry: { minMs: 20, maxMs: 50 } });
    await peer.start({ recorder: first.recorder, state: first.state });
    await peer.incomingText('durable');
    down = true;
    peer.pushUpdate({ _: 'updateNewMessage', message: { _: 'message', id: 5000, peerId: { _: 'peerUser', userId: 5_000_002 }, date: 1_700_000_500, message: 'during outage' }, pts: 0, ptsCount: 1 });
    await peer.waitForDispatch((update) => update._ === 'updateNewMessage' && update.message.id === 5000);
    while (peer.connector.status().errors < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(peer.connector.status().detail).toMatch(/archive unavailable/);
    await peer.stop(); // during the outage: the update is abandoned, the cursor stays before it
    down = false;

    // Restart on the recovered archive: the update that failed is fetched again and recorded.
    const second = await first.reopen(memory);
    rigs.push(second);
    const restarted = createLocalTelegramPeer({ server: peer.server });
    await restarted.start({ recorder: second.recorder, state: second.state });
    await restarted.waitFor((input) => input.text === 'during outage');
    await restarted.stop();
    expect((await second.records()).map((record) => record.text)).toEqual(['durable', 'during outage']);
  });

  it('fetches a backlog in getDifference slices; when the archive fails mid-backlog no cursor past the durable point is saved, and a restart records every message once', async () => {
    const memory = createMemorySink();
    let appended = 0;
    let down = false;
    const flaky = Object.create(memory) as Sink;
    Object.assign(flaky, {
      appendBatch: async (batch: Parameters<Sink['appendBatch']>[0]) => {
        if (down) throw new SinkUnavailableError('test outage');
        const result = await memory.appendBatch(batch);
        appended += batch.records.length;
        down = appended >= 35; // partway through the fourth slice
        return result;
      },
    });
    const first = await rig(flaky);
    const peer = createLocalTelegramPeer({ retry: { minMs: 20, maxMs: 50 }, maxInFlight: 4 });
    peer.server.differenceSliceSize = 10;
    await peer.start({ recorder: first.recorder, state: first.state });
    const client: tl.TypePeer = { _: 'peerUser', userId: 5_000_002 };
    const texts = Array.from({ length: 60 }, (_, index) => `backlog ${index}`);
    for (const text of texts) peer.server.logCommon({ _: 'updateNewMessage', message: { _: 'message', id: peer.server.messageId(), peerId: client, fromId: client, date: peer.server.tick(), message: text }, pts: 0, ptsCount: 1 });
    peer.pushUpdate({ _: 'updateNewMessage', message: { _: 'message', id: peer.server.messageId(), peerId: client, fromId: client, date: peer.server.tick(), message: 'reveals the gap' }, pts: 0, ptsCount: 1 });
    while (peer.connector.status().errors < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(peer.server.calls.filter((call) => call === 'updates.getDifference').length).toBeGreaterThanOrEqual(4);
    await peer.stop();
    down = false;

    const second = await first.reopen(memory);
    rigs.push(second);
    const restarted = createLocalTelegramPeer({ server: peer.server });
    await restarted.start({ recorder: second.recorder, state: second.state });
    await restarted.waitFor((input) => input.text === 'reveals the gap');
    await restarted.stop();
    const recorded = (await second.records()).filter((record) => record.kind === 'message').map((record) => record.text);
    expect(recorded).toEqual([...texts, 'reveals the gap']);
  });
});

