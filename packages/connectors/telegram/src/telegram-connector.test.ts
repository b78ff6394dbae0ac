import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { tl } from '@mtcute/core';
import { describe, expect, it } from 'vitest';
import { telegramStateScope } from './link-telegram.ts';
import { MessageIndex } from './message-index.ts';
import { decodeTl, TL_RAW_FORMAT } from './tl-evidence.ts';
import { createLocalTelegramPeer, LOCAL_IDS } from './testing/index.ts';
import { testRigs, type TestRig } from './test-support.ts';

const rigs = testRigs();
const rig = (): Promise<TestRig> => rigs.create();

describe('Telegram connector on the real mtcute updates engine', () => {
  it('records messages in every chat kind with their TL bytes, and resolves id-only deletes through its own index', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state, logger: r.logger });
    const hello = await peer.incomingText('Buy 100 ACME @ 12.34 — confirm?');
    const reply = await peer.outgoingText('Confirmed.', { replyTo: hello });
    const inGroup = await peer.incomingText('Desk: ACME filled', { chat: 'group' });
    const inSuper = await peer.incomingText('Floor: XYZ halted', { chat: 'supergroup' });
    const post = await peer.incomingText('Morning note', { chat: 'channel' });
    await peer.delete(inGroup); // updateDeleteMessages: ids only
    await peer.delete(inSuper); // updateDeleteChannelMessages: carries the channel
    await peer.stop();

    const records = await r.records();
    const messages = records.filter((record) => record.kind === 'message');
    expect(messages.map((record) => [record.conversation?.type, record.text, record.direction])).toEqual([
      ['direct', 'Buy 100 ACME @ 12.34 — confirm?', 'inbound'],
      ['direct', 'Confirmed.', 'outbound'],
      ['group', 'Desk: ACME filled', 'inbound'],
      ['group', 'Floor: XYZ halted', 'inbound'],
      ['channel', 'Morning note', 'inbound'],
    ]);
    expect(messages[0]?.sender).toEqual({ id: String(LOCAL_IDS.client), name: 'Dana Client', aliases: ['@dana_client'] });
    expect(messages[0]?.conversation).toEqual({ id: String(LOCAL_IDS.client), type: 'direct', title: 'Dana Client' });
    expect(messages[1]?.replyTo).toEqual({ id: String(hello.id), peer: hello.peer });
    expect(messages[1]?.native).toEqual({ id: String(reply.id), peer: reply.peer });
    expect(messages[4]?.conversation).toEqual({ id: post.peer, type: 'channel', title: 'Research notes' });

    const deletes = records.filter((record) => record.kind === 'delete');
    expect(deletes.map((record) => [record.target, record.conversation?.id, record.meta?.scopeCertain])).toEqual([
      [{ id: String(inGroup.id), peer: `-${LOCAL_IDS.group}` }, `-${LOCAL_IDS.group}`, false],
      [{ id: String(inSuper.id), peer: inSuper.peer }, inSuper.peer, true],
    ]);

    // Raw evidence: an `updates` container of the one update and the users it names.
    const raw = messages[0]?.raw;
    expect(raw?.format).toBe(TL_RAW_FORMAT);
    const bytes = await r.blob(raw?.sha256 ?? '');
    const container = decodeTl(bytes ?? new Uint8Array());
    expect(container._).toBe('updates');
    const { updates, users } = container as tl.RawUpdates;
    expect(updates.map((update) => update._)).toEqual(['updateNewMessage']);
    expect(users.map((user) => user.id).sort()).toEqual([LOCAL_IDS.self, LOCAL_IDS.client]);
    expect(r.logger.text()).not.toContain('ACME');
    expect(peer.connector.status()).toMatchObject({ state: 'stopped', errors: 0 });
  });

  it('fetches a message it missed through updates.getDifference when the pts jumps, and records it', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('first');
    const missed = peer.missedText('sent while the update was lost: sell 50 XYZ');
    await peer.incomingText('third'); // pts jumps by 2: gap detected
    await missed.recorded;
    await peer.stop();
    expect(peer.server.calls.filter((call) => call === 'updates.getDifference').length).toBeGreaterThanOrEqual(2);
    const texts = (await r.records()).filter((record) => record.kind === 'message').map((record) => record.text);
    expect(texts).toEqual(expect.arrayContaining(['first', 'sent while the update was lost: sell 50 XYZ', 'third']));
    expect(texts).toHaveLength(3);
  });

  it('resumes from the persisted update state after a restart and catches up on what arrived while stopped', async () => {
    const first = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: first.recorder, state: first.state });
    const before = await peer.incomingText('before restart');
    await peer.stop();
    const ptsAtStop = peer.server.pts;

    // While stopped: a message and an id-only delete of the earlier one reach the server.
    const offline = peer.missedText('while stopped');
    offline.recorded.catch(() => undefined); // recorded by the restarted process, awaited below
    peer.server.logCommon({ _: 'updateDeleteMessages', messages: [before.id], pts: 0, ptsCount: 1 });

    const second = await first.reopen();
    rigs.push(second);
    // A new process (new connector, new mtcute client) on the same account and state.
    const restarted = createLocalTelegramPeer({ server: peer.server });
    const requestsBefore = peer.server.requests.length;
    await restarted.start({ recorder: second.recorder, state: second.state });
    await restarted.waitFor((input) => input.kind === 'message' && input.text === 'while stopped');
    await restarted.waitFor((input) => input.kind === 'delete' && input.target?.id === String(before.id));
    await restarted.stop();
    const afterRestart = peer.server.requests.slice(requestsBefore);
    // Resumed from the stored pts (no fresh getState), asking for exactly what it missed.
    expect(afterRestart[0]).toMatchObject({ _: 'updates.getDifference', pts: ptsAtStop });
    expect(afterRestart.map((request) => request._)).not.toContain('updates.getState');
    const records = await second.records();
    const kinds = records.map((record) => `${record.kind}:${record.text ?? record.target?.id ?? ''}`);
    expect(kinds).toEqual(['message:before restart', 'message:while stopped', `delete:${before.id}`]);
    expect(records[2]?.conversation?.id).toBe(String(LOCAL_IDS.client));
    expect(ptsAtStop).toBeLessThan(peer.server.pts);
  });

  it('writes nothing to the state store once stop() has returned, and the final save holds the index', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    for (let n = 0; n < 200; n++) peer.historyOnlyText(`old ${n}`);
    await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)], limit: 200 });
    await peer.stop();
    const scope = path.join(r.dir, 'state', '~telegram:alice');
    const snapshot = async (): Promise<string[]> => Promise.all((await readdir(scope)).sort().map(async (name) => `${name} ${(await stat(path.join(scope, name))).mtimeMs}`));
    const atStop = await snapshot();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await snapshot()).toEqual(atStop);
    // A process exiting right after stop() keeps every message in its index.
    const reopened = await MessageIndex.load(telegramStateScope(r.state, 'alice'));
    expect(reopened.size).toBe(200);
  });
});
