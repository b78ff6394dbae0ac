import { afterEach, describe, expect, it } from 'vitest';
import { createLocalTelegramPeer, LOCAL_IDS } from './testing/index.ts';
import { createTestRig, type TestRig } from './test-support.ts';

const rigs: TestRig[] = [];
afterEach(async () => {
  for (const rig of rigs.splice(0)) await rig.close();
});

describe('reconcileTelegram', () => {
  it('records messages, edits and deletes that never arrived as updates, once', async () => {
    const r = await createTestRig();
    rigs.push(r);
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const a = await peer.incomingText('A: live');
    const b = await peer.incomingText('B: live, later deleted silently');
    const c = peer.historyOnlyText('C: only in history');
    peer.silentEdit(a, 'A: edited silently');
    peer.silentDelete(b);

    const report = await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)] });
    expect(report).toEqual({ chats: 1, messagesChecked: 2, missingRecorded: 1, editsRecorded: 1, deletesRecorded: 1, skipped: [] });
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
    const r = await createTestRig();
    rigs.push(r);
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('floor open', { chat: 'supergroup' });
    const missed = peer.missedText('lost in a long gap', { chat: 'supergroup' });
    peer.server.forgetChannelHistory(LOCAL_IDS.supergroup);
    peer.pushUpdate({ _: 'updateNewChannelMessage', message: { _: 'message', id: 99, peerId: { _: 'peerChannel', channelId: LOCAL_IDS.supergroup }, fromId: { _: 'peerUser', userId: LOCAL_IDS.colleague }, date: 1_700_000_900, message: 'after the gap' }, pts: 0, ptsCount: 1 }, 'supergroup');
    const { input } = await peer.waitFor((candidate) => candidate.kind === 'gap');
    await missed.recorded;
    await peer.waitFor((candidate) => candidate.text === 'after the gap');
    await peer.stop();
    expect(input).toMatchObject({ gap: { reason: 'channel-too-long', from: '2', to: '4', missing: 2 }, conversation: { id: `-100${LOCAL_IDS.supergroup}`, type: 'group', title: 'Trading floor' } });
    expect(peer.server.calls).toContain('updates.getChannelDifference');
    expect(peer.server.calls).toContain('messages.getHistory');
  });
});
