/**
 * Completeness signals of the MTProto connector, each a record in the stream: the start-up
 * catch-up and what it recovered, sessions Telegram ended (with its code, as the transition),
 * frozen accounts, and updates that silently stop (liveness probe, forced getDifference).
 */
import { describe, expect, it } from 'vitest';
import { createLocalTelegramPeer, type LocalTelegramPeer } from './testing/index.ts';
import { testRigs, type TestRig } from './test-support.ts';

const rigs = testRigs();
const rig = (): Promise<TestRig> => rigs.create();

/**
 * A message reaches the server but not the client: the next pushed update has a pts gap of one,
 * which mtcute postpones for 0.5 s and then fetches (the path `patches/@mtcute__core@0.30.3.patch`
 * keeps from stalling; these tests used a gap of three, fetched at once, before it).
 */
function missOne(peer: LocalTelegramPeer): void {
  peer.missedText('missed').recorded.catch(() => undefined);
}

const signals = async (r: TestRig, event: string) => (await r.records(undefined, { all: true })).filter((record) => record.system?.event === event).map((record) => record.system?.fields);

describe('Telegram completeness signals', () => {
  it('records the start-up catch-up: from the stored pts to the server’s, and what it recovered', async () => {
    const first = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: first.recorder, state: first.state });
    await peer.incomingText('before restart');
    await peer.stop();
    const stoppedAt = peer.server.pts;
    peer.missedText('while stopped').recorded.catch(() => undefined);
    const second = await first.reopen();
    rigs.push(second);
    const restarted = createLocalTelegramPeer({ server: peer.server });
    await restarted.start({ recorder: second.recorder, state: second.state });
    await restarted.waitFor((input) => input.text === 'while stopped');
    await restarted.stop();
    const catchUps = await signals(second, 'difference-fetched');
    expect(catchUps.at(-1)).toEqual({ trigger: 'start', fromPts: String(stoppedAt), toPts: String(stoppedAt + 1), messages: '1', otherUpdates: '0' });
    expect(catchUps[0]).toMatchObject({ trigger: 'start', messages: '0' }); // the first start: nothing missed
  });

  for (const [code, event] of [['SESSION_REVOKED', 'logged-out'], ['AUTH_KEY_UNREGISTERED', 'logged-out'], ['USER_DEACTIVATED_BAN', 'banned'], ['AUTH_KEY_DUPLICATED', 'replaced']] as const) {
    it(`reports ${code} as the transition ${event} with the code, and records it`, async () => {
      const r = await rig();
      const peer = createLocalTelegramPeer();
      await peer.start({ recorder: r.recorder, state: r.state });
      missOne(peer);
      peer.server.failNext('updates.getDifference', { code: 401, message: code });
      peer.pushUpdate({ _: 'updateDeleteMessages', messages: [1], pts: 0, ptsCount: 1 });
      await peer.waitFor((input) => input.system?.event === 'logged-out');
      expect(peer.connector.status()).toMatchObject({ state: 'logged-out' });
      expect(peer.connector.status().detail).toMatch(new RegExp(`^${event}: ${code};`));
      await peer.stop();
      expect(await signals(r, 'logged-out')).toEqual([{ code }]);
    });
  }

  it('records a frozen account once; capture keeps running', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    missOne(peer);
    peer.server.failNext('updates.getDifference', { code: 400, message: 'FROZEN_METHOD_INVALID' });
    peer.pushUpdate({ _: 'updateDeleteMessages', messages: [1], pts: 0, ptsCount: 1 });
    await peer.waitFor((input) => input.system?.event === 'account-frozen');
    expect(peer.connector.status().state).toBe('running');
    await peer.stop();
    expect(await signals(r, 'account-frozen')).toEqual([{ code: 'FROZEN_METHOD_INVALID', method: 'updates.getDifference' }]);
  });

  it('notices updates that silently stopped: probes after a quiet period, records it, forces getDifference', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer({ liveness: { quietMs: 150, checkEveryMs: 25 } });
    await peer.start({ recorder: r.recorder, state: r.state });
    await peer.incomingText('last pushed update');
    const local = peer.server.pts;
    // Telegram stops pushing: the message reaches the server, no update reaches the client.
    const silent = peer.missedText('never pushed');
    await silent.recorded;
    await peer.stop();
    expect(await signals(r, 'updates-behind')).toEqual([{ quietMs: '150', localPts: String(local), serverPts: String(local + 1) }]);
    expect((await signals(r, 'difference-fetched')).at(-1)).toMatchObject({ trigger: 'probe', messages: '1' });
  });

  it('records a failed liveness probe', async () => {
    const r = await rig();
    const peer = createLocalTelegramPeer({ liveness: { quietMs: 100, checkEveryMs: 25 } });
    await peer.start({ recorder: r.recorder, state: r.state });
    peer.server.failNext('updates.getState', { code: 400, message: 'CONNECTION_NOT_INITED' });
    await peer.waitFor((input) => input.system?.event === 'updates-probe-failed');
    await peer.stop();
    expect(await signals(r, 'updates-probe-failed')).toEqual([{ quietMs: '100', code: 'CONNECTION_NOT_INITED' }]);
  });
});
