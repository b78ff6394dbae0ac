/**
 * An update that arrives with a small pts gap (one or two missing) is postponed by mtcute's
 * updates loop for 0.5 s, then the gap is fetched with `updates.getDifference`. Unpatched
 * @mtcute/core 0.30.3 could forget that deadline: when it passed while a loop tick was running
 * (here: between the tick's "still waiting" check and the timer re-arming, after the Node timer
 * fired a little early), the tick cleared the timeout flag on its way out and the update waited
 * until some unrelated update arrived. `patches/@mtcute__core@0.30.3.patch` clears the flag at
 * the start of the tick instead.
 *
 * The race is produced exactly, with no dependence on load or the wall clock: `performance.now`
 * (mtcute's clock) is injected, reads just before the deadline when the real timer fires (as a
 * stale libuv loop clock makes it do), and passes the deadline at the moment mtcute re-arms it.
 * The second path: the timer fires while the tick awaits applying another postponed update.
 */
import type { tl } from '@mtcute/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLocalTelegramPeer, LOCAL_IDS, type LocalChat } from './testing/index.ts';
import { createTestRig, type TestRig } from './test-support.ts';

const rigs: TestRig[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const rig of rigs.splice(0)) await rig.close();
});

/** mtcute's clock, under the test's control: the real one, or frozen at a value. */
function injectClock(): { freeze(at: number): void; freezeNow(): void; resume(at: number): void; readonly frozen: boolean } {
  const real = performance.now.bind(performance);
  let frozenAt: number | undefined;
  let offset = 0;
  vi.spyOn(performance, 'now').mockImplementation(() => frozenAt ?? real() + offset);
  return {
    freeze(at) {
      frozenAt = at;
    },
    freezeNow() {
      frozenAt = real();
    },
    resume(at) {
      offset = at - real();
      frozenAt = undefined;
    },
    get frozen() {
      return frozenAt !== undefined;
    },
  };
}

describe('Telegram connector: an update postponed for a small pts gap', () => {
  for (const chat of ['direct', 'supergroup'] as const satisfies readonly LocalChat[]) {
    it(`fetches the gap and records both messages when the wait runs out during a loop tick (${chat})`, { timeout: 60_000 }, async () => {
      const r = await createTestRig();
      rigs.push(r);
      const peer = createLocalTelegramPeer({ timeoutMs: 20_000 });
      await peer.start({ recorder: r.recorder, state: r.state });
      await peer.incomingText('before the gap', { chat });
      const timer = peer.connector.client?.updates?.postponedTimer;
      if (!timer) throw new Error('the connector runs without mtcute’s updates manager');
      const clock = injectClock();
      const emitBefore = timer.emitBefore.bind(timer);
      const emitNow = timer.emitNow.bind(timer);
      let deadline: number | undefined;
      let fired = false;
      let raced = false;
      // Read by setTimeout when mtcute arms the timer: the real 0.5 s timer fires through it.
      timer.emitNow = () => {
        fired = true;
        emitNow();
      };
      timer.emitBefore = (ts: number) => {
        if (deadline === undefined) {
          // The update was just postponed until `ts`. The clock now stays just short of it.
          deadline = ts;
          emitBefore(ts);
          clock.freeze(ts - 0.25);
          return;
        }
        if (fired && clock.frozen) {
          // The timer fired "early" and the tick found the update still waiting; the deadline
          // passes right now, between that check and the re-arming.
          raced = true;
          clock.resume(ts + 1);
        }
        emitBefore(ts);
      };
      const missed = peer.missedText('lost on the way: sell 50 XYZ', { chat });
      const after = peer.incomingText('after a gap of one', { chat });
      await Promise.all([missed.recorded, after]);
      await peer.stop();
      expect(raced).toBe(true);
      expect(peer.server.calls).toContain(chat === 'direct' ? 'updates.getDifference' : 'updates.getChannelDifference');
      const texts = (await r.records()).filter((record) => record.kind === 'message').map((record) => record.text);
      expect(texts).toEqual(['before the gap', 'lost on the way: sell 50 XYZ', 'after a gap of one']);
    });
  }

  it('fetches the gap when the wait runs out while the tick awaits applying another postponed update', { timeout: 60_000 }, async () => {
    const r = await createTestRig();
    rigs.push(r);
    const peer = createLocalTelegramPeer({ timeoutMs: 20_000 });
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('channel post', { chat: 'channel' });
    // The floor's pts ends up above the channel's, so its postponed update is checked second.
    for (const text of ['floor 1', 'floor 2', 'floor 3']) await peer.incomingText(text, { chat: 'supergroup' });
    const client = peer.connector.client;
    const updates = client?.updates;
    if (!client || !updates) throw new Error('the connector runs without mtcute’s updates manager');
    const timer = updates.postponedTimer;
    const clock = injectClock();
    clock.freezeNow(); // nothing expires until the test says so
    const emitBefore = timer.emitBefore.bind(timer);
    const emitNow = timer.emitNow.bind(timer);
    let deadline: number | undefined;
    timer.emitBefore = (ts: number) => {
      deadline ??= ts;
      emitBefore(ts);
    };
    let resumed = false;
    let firedAfterDeadline = (): void => undefined;
    const fired = new Promise<void>((resolve) => {
      firedAfterDeadline = resolve;
    });
    timer.emitNow = () => {
      emitNow();
      if (resumed) firedAfterDeadline();
    };
    // Applying a supergroup message stores its message references first (an await in the tick).
    const refMsgs = client.storage.refMsgs;
    const store = refMsgs.store.bind(refMsgs);
    const filler: tl.RawMessage = { _: 'message', id: peer.server.messageId(LOCAL_IDS.supergroup), peerId: { _: 'peerChannel', channelId: LOCAL_IDS.supergroup }, fromId: { _: 'peerUser', userId: LOCAL_IDS.colleague }, date: peer.server.tick(), message: 'late but in order' };
    let armed = false;
    let raced = false;
    refMsgs.store = async (peerId: number, chatId: number, msgId: number) => {
      if (armed && !resumed && msgId !== filler.id && deadline !== undefined) {
        // The channel update's wait runs out, and its timer fires, while this await is pending.
        resumed = true;
        clock.resume(deadline + 1);
        await fired;
        raced = true;
      }
      return store(peerId, chatId, msgId);
    };
    // The channel: one post lost, the next one postponed.
    const lost = peer.missedText('lost in the channel', { chat: 'channel' });
    const afterLost = peer.incomingText('after a gap of one in the channel', { chat: 'channel' });
    // The floor: one message logged but late, the next one postponed; then the late one arrives.
    const fill: tl.RawUpdateNewChannelMessage = { _: 'updateNewChannelMessage', message: filler, pts: 0, ptsCount: 1 };
    peer.server.logChannel(LOCAL_IDS.supergroup, fill);
    const afterFill = peer.incomingText('after the late one', { chat: 'supergroup' });
    while (updates.pendingPtsUpdatesPostponed.length < 2) await new Promise((resolve) => setImmediate(resolve));
    armed = true;
    client.onServerUpdate.emit({ _: 'updates', updates: [fill], users: [...peer.server.users.values()], chats: [...peer.server.chats.values()], date: peer.server.tick(), seq: 0 });
    await Promise.all([lost.recorded, afterLost, afterFill, peer.waitFor((input) => input.text === 'late but in order')]);
    await peer.stop();
    expect(raced).toBe(true);
    expect(peer.server.calls).toContain('updates.getChannelDifference');
    const texts = (await r.records()).filter((record) => record.kind === 'message').map((record) => record.text);
    expect(texts.slice(4)).toEqual(['late but in order', 'after the late one', 'lost in the channel', 'after a gap of one in the channel']);
  });
});
