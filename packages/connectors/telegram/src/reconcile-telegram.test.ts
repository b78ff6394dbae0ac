import { Long, type tl } from '@mtcute/core';
import { describe, expect, it, vi } from 'vitest';
import { createLocalTelegramPeer, LOCAL_IDS } from './testing/index.ts';
import { testRigs } from './test-support.ts';

const rigs = testRigs();

describe('reconcileTelegram', () => {
  it('records messages, edits and deletes that never arrived as updates, once', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const a = await peer.incomingText('A: live');
    const b = await peer.incomingText('B: live, later deleted silently');
    const c = peer.historyOnlyText('C: only in history');
    peer.silentEdit(a, 'A: edited silently');
    peer.silentDelete(b);

    const report = await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)] });
    expect(report).toEqual({ chats: 1, messagesChecked: 2, missingRecorded: 1, editsRecorded: 1, deletesRecorded: 1, skipped: [], interrupted: false });
    const again = await peer.connector.reconcile(); // every recent dialog; nothing new
    expect(again).toMatchObject({ missingRecorded: 0, editsRecorded: 0, deletesRecorded: 0 });
    await peer.stop();

    const records = await r.records();
    const summary = records.map((record) => [record.kind, record.text ?? record.target?.id, record.meta?.source]);
    expect(summary).toEqual([
      ['message', 'A: live', undefined],
      ['message', 'B: live, later deleted silently', undefined],
      ['edit', 'A: edited silently', 'messages.getHistory'],
      ['message', 'C: only in history', 'messages.getHistory'],
      ['delete', String(b.id), 'reconcile'],
    ]);
    expect(records[3]?.native).toEqual({ id: String(c.id), peer: c.peer });
  });

  it('records a gap and backfills from history when a channel difference is too long', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('floor open', { chat: 'supergroup' });
    const missed = peer.missedText('lost in a long gap', { chat: 'supergroup' });
    peer.server.forgetChannelHistory(LOCAL_IDS.supergroup);
    peer.pushUpdate({ _: 'updateNewChannelMessage', message: { _: 'message', id: 99, peerId: { _: 'peerChannel', channelId: LOCAL_IDS.supergroup }, fromId: { _: 'peerUser', userId: LOCAL_IDS.colleague }, date: 1_700_000_900, message: 'after the gap' }, pts: 0, ptsCount: 1 }, 'supergroup');
    const { input } = await peer.waitFor((candidate) => candidate.kind === 'gap');
    await missed.recorded;
    await peer.waitFor((candidate) => candidate.text === 'after the gap');
    // What the backfill recovered says so, naming the gap record.
    const backfilled = await peer.waitFor((candidate) => candidate.system?.event === 'gap-backfilled');
    await peer.stop();
    // Both messages of the channel's history after the gap came back (the second before its own update).
    expect(backfilled.input.system?.fields).toEqual({ gap: input.key, recorded: '2', method: 'messages.getHistory' });
    expect(input).toMatchObject({ gap: { reason: 'channel-too-long', from: '2', to: '4', missing: 2 }, conversation: { id: `-100${LOCAL_IDS.supergroup}`, type: 'group', title: 'Trading floor' } });
    expect(peer.server.calls).toContain('updates.getChannelDifference');
    expect(peer.server.calls).toContain('messages.getHistory');
  });

  it('pages through long histories and many dialogs, oldest first, reporting progress; an abort stops between chats', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const history = Array.from({ length: 250 }, (_, n) => peer.historyOnlyText(`history ${n}`));
    // 120 more contacts, each with one message from before the account was linked.
    for (let n = 0; n < 120; n++) {
      const userId = 6_000_000 + n;
      peer.server.users.set(userId, { _: 'user', id: userId, accessHash: Long.fromNumber(100 + n), firstName: `Contact ${n}` });
      const message: tl.RawMessage = { _: 'message', id: peer.server.messageId(), peerId: { _: 'peerUser', userId }, fromId: { _: 'peerUser', userId }, date: peer.server.tick(), message: `hello from ${n}` };
      peer.server.putHistory(message);
    }
    // mtcute learns access hashes from any answer that carries the users (as after a dialog list).
    await peer.connector.client?.call({ _: 'messages.getDialogs', offsetDate: 0, offsetId: 0, offsetPeer: { _: 'inputPeerEmpty' }, limit: 1, hash: Long.ZERO });

    const deep = await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)], limit: 250 });
    expect(deep).toMatchObject({ chats: 1, messagesChecked: 250, missingRecorded: 250, interrupted: false });
    expect(peer.server.calls.filter((call) => call === 'messages.getHistory')).toHaveLength(3); // 100 + 100 + 50
    const texts = (await r.records()).map((record) => record.text);
    expect(texts).toEqual(history.map((_, n) => `history ${n}`)); // oldest first

    // A silent delete deep in the window is found only when the window reaches it.
    peer.silentDelete(history[20] as (typeof history)[number]);
    expect(await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)], limit: 100 })).toMatchObject({ deletesRecorded: 0 });
    expect(await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)], limit: 250 })).toMatchObject({ deletesRecorded: 1 });

    const progress: number[] = [];
    const all = await peer.connector.reconcile({ dialogs: 500, limit: 5, onProgress: ({ done, total }) => progress.push(done / total) });
    expect(all).toMatchObject({ chats: 121, missingRecorded: 120, skipped: [], interrupted: false });
    expect(peer.server.calls.filter((call) => call === 'messages.getDialogs').length).toBeGreaterThanOrEqual(3); // 1 above + 2 pages
    expect(progress).toHaveLength(121);
    expect(progress.at(-1)).toBe(1);

    const stop = new AbortController();
    const partial = await peer.connector.reconcile({ dialogs: 500, limit: 1, signal: stop.signal, onProgress: ({ done }) => { if (done === 5) stop.abort(); } });
    expect(partial).toMatchObject({ chats: 121, interrupted: true, missingRecorded: 0 });
    expect(partial.messagesChecked).toBe(5);
    await peer.stop();
  }, 60_000);

  it('reconciles on a schedule while capturing, and stop ends a reconciliation in progress', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer({ reconcile: { everyMs: 100, dialogs: 10 } });
    await peer.start({ recorder: r.recorder, state: r.state, logger: r.logger });
    await peer.incomingText('live');
    const old = peer.historyOnlyText('from before linking');
    const { input } = await peer.waitFor((candidate) => candidate.key === `message:${old.peer}:${old.id}`);
    expect(input.meta).toMatchObject({ source: 'messages.getHistory' });
    await vi.waitFor(() => {
      expect(r.logger.text()).toContain('scheduled reconciliation done');
    });
    expect(r.logger.text()).not.toContain('from before linking');
    for (let n = 0; n < 30; n++) peer.historyOnlyText(`group ${n}`, { chat: n % 2 === 0 ? 'group' : 'supergroup' });
    const running = peer.connector.reconcile({ dialogs: 100 });
    await peer.stop();
    const report = await running;
    expect(report.interrupted).toBe(true);
    expect(report.missingRecorded).toBeLessThan(30);
    await expect(peer.connector.reconcile()).rejects.toMatchObject({ code: 'TELEGRAM_NOT_RUNNING' });
  });

  it('after a restart, resolves chats from the persisted peer cache (access hashes survive)', async () => {
    const r = await rigs.create();
    const first = createLocalTelegramPeer();
    await first.start({ recorder: r.recorder, state: r.state });
    await first.incomingText('floor open', { chat: 'supergroup' });
    await first.incomingText('hi', { chat: 'direct' });
    await first.stop();

    const again = await r.reopen();
    rigs.push(again);
    const second = createLocalTelegramPeer({ server: first.server });
    await second.start({ recorder: again.recorder, state: again.state });
    const old = second.historyOnlyText('only in history', { chat: 'supergroup' });
    // Only what the stored cache holds: no dialog list is fetched when chats are named.
    const report = await second.connector.reconcile({ chats: [old.peer, String(LOCAL_IDS.client)] });
    expect(report).toMatchObject({ chats: 2, missingRecorded: 1, skipped: [] });
    await second.stop();
  });

  it('resolves a chat named by id that the session has never seen, through the dialog list', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const old = peer.historyOnlyText('sent before linking', { chat: 'supergroup' });
    expect(await peer.connector.client?.storage.peers.getById(Number(old.peer))).toBeNull();
    const report = await peer.connector.reconcile({ chats: [old.peer, '777'] });
    expect(report).toMatchObject({ chats: 2, missingRecorded: 1, skipped: [{ chat: '777', code: 'PEER_NOT_CACHED' }] });
    expect(peer.server.calls.filter((call) => call === 'messages.getDialogs')).toHaveLength(1); // loaded once, not per chat
    await peer.stop();
  });

  it('in a supergroup, takes a message missing before the oldest one returned as hidden, not deleted', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const [a, b, c, d] = [await peer.incomingText('a', { chat: 'supergroup' }), await peer.incomingText('b', { chat: 'supergroup' }), await peer.incomingText('c', { chat: 'supergroup' }), await peer.incomingText('d', { chat: 'supergroup' })];
    peer.silentDelete(a); // older than anything returned: history hidden from the member, or deleted — unknowable
    peer.silentDelete(c); // inside the returned window: deleted
    const report = await peer.connector.reconcile({ chats: [b.peer] });
    expect(report).toMatchObject({ messagesChecked: 2, deletesRecorded: 1 });
    const deletes = (await r.records()).filter((record) => record.kind === 'delete');
    expect(deletes.map((record) => record.target?.id)).toEqual([String(c.id)]);
    expect(d.id).toBeGreaterThan(c.id);
    await peer.stop();
  });

  it('captures a live update after the chat being checked, and a stop mid-chat records no attachment as unavailable', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    for (let n = 0; n < 60; n++) {
      if (n % 10 === 9) peer.historyOnlyMedia({ bytes: png, mime: 'image/png', name: `chart-${n}.png` });
      else peer.historyOnlyText(`old ${n}`);
    }
    // Eight more contacts with 20 messages each from before linking.
    const contacts: string[] = [];
    for (let c = 0; c < 8; c++) {
      const userId = 6_100_000 + c;
      peer.server.users.set(userId, { _: 'user', id: userId, accessHash: Long.fromNumber(300 + c), firstName: `Contact ${c}` });
      for (let n = 0; n < 20; n++) peer.server.putHistory({ _: 'message', id: peer.server.messageId(), peerId: { _: 'peerUser', userId }, fromId: { _: 'peerUser', userId }, date: peer.server.tick(), message: `contact ${c} #${n}` });
      contacts.push(String(userId));
    }
    await peer.connector.client?.call({ _: 'messages.getDialogs', offsetDate: 0, offsetId: 0, offsetPeer: { _: 'inputPeerEmpty' }, limit: 100, hash: Long.ZERO });

    // A live message arriving while a chat is checked is captured after that chat (never inside
    // it, where it could look deleted), and nothing is lost or recorded twice.
    const running = peer.connector.reconcile({ chats: [String(LOCAL_IDS.client), ...contacts] });
    await peer.waitFor((input) => input.text === 'old 3');
    const live = peer.incomingText('live during reconcile');
    expect(await running).toMatchObject({ missingRecorded: 60 + 8 * 20, deletesRecorded: 0, interrupted: false });
    await live;
    const texts = (await r.records()).map((record) => record.text);
    expect(texts.indexOf('live during reconcile')).toBeGreaterThan(texts.indexOf('old 58'));
    expect(texts.filter((text) => text === 'live during reconcile')).toHaveLength(1);
    expect(await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)] })).toMatchObject({ missingRecorded: 0, deletesRecorded: 0 });

    // Stop while a chat is being checked: it ends between messages, every stored attachment intact.
    for (let n = 0; n < 60; n++) {
      if (n % 10 === 9) peer.historyOnlyMedia({ bytes: png, mime: 'image/png', name: `later-${n}.png` }, { chat: 'supergroup' });
      else peer.historyOnlyText(`later ${n}`, { chat: 'supergroup' });
    }
    const download = peer.server.holdNext('upload.getFile');
    const partial = peer.connector.reconcile({ chats: [`-100${String(LOCAL_IDS.supergroup)}`] });
    // The chat is one step of the pipeline: stop while its first download is in progress.
    await download.held;
    const stopping = peer.stop();
    download.release();
    await stopping;
    expect(await partial).toMatchObject({ interrupted: true });
    const attachments = (await r.records()).flatMap((record) => record.attachments ?? []);
    // A download cut short by stopping is not recorded as unavailable: that message waits for the next run.
    expect(attachments.length).toBeGreaterThanOrEqual(6);
    expect(attachments.every((attachment) => attachment.status === 'stored')).toBe(true);
  });
});

