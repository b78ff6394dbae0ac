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
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLocalTelegramPeer, type LocalChat } from './testing/index.ts';
import { createTestRig, type TestRig } from './test-support.ts';

const rigs: TestRig[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const rig of rigs.splice(0)) await rig.close();
});

/** mtcute's clock, under the test's control: the real one, or frozen at a value. */
function injectClock(): { freeze(at: number): void; resume(at: number): void; readonly frozen: boolean } {
  const real = performance.now.bind(performance);
  let frozenAt: number | undefined;
  let offset = 0;
  vi.spyOn(performance, 'now').mockImplementation(() => frozenAt ?? real() + offset);
  return {
    freeze(at) {
      frozenAt = at;
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
});
