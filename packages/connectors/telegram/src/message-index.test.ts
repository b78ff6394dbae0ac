import { afterEach, describe, expect, it } from 'vitest';
import { MessageIndex, isChannelPeer } from './message-index.ts';
import { createTestRig, type TestRig } from './test-support.ts';

const rigs: TestRig[] = [];
afterEach(async () => {
  for (const rig of rigs.splice(0)) await rig.close();
});

const entry = (peer: string) => ({ peer, fingerprint: 'f', reactions: [], direction: 'inbound' as const, type: peer.startsWith('-100') ? ('group' as const) : ('direct' as const) });

describe('MessageIndex', () => {
  it('resolves common-box ids, keeps channel ids per channel, persists only changed shards, and survives damage', async () => {
    const rig = await createTestRig();
    rigs.push(rig);
    const state = rig.state.scope('telegram:alice');
    const index = new MessageIndex(3);
    index.set(1, entry('5000002'));
    index.set(1, entry('-1001500000001')); // channel ids may repeat common-box ids
    index.set(2, entry('-4001'));
    expect(index.getCommonBox(1)?.peer).toBe('5000002');
    expect(index.get('-1001500000001', 1)?.type).toBe('group');
    index.set(3, entry('5000002')); // capacity 3: the oldest (5000002:1) is evicted
    expect(index.getCommonBox(1)).toBeUndefined();
    expect(index.idsFor('5000002')).toEqual([3]);
    await index.persist(state);
    const loaded = await MessageIndex.load(state, 3);
    expect(loaded.size).toBe(3);
    expect(loaded.getCommonBox(2)?.peer).toBe('-4001');
    const shards = (await state.list()).filter((name) => name.startsWith('message-index.'));
    await state.setJson(shards[0] ?? 'message-index.0', [['x:1', { peer: 5 }], 'junk']); // damaged entries are ignored
    expect((await MessageIndex.load(state)).size).toBeLessThanOrEqual(3);
    expect(() => new MessageIndex(0)).toThrow(RangeError);
  });

  it('tells supergroups and channels from basic groups by value, not by a "-100" prefix', () => {
    expect(isChannelPeer('-1001500000001')).toBe(true);
    expect(isChannelPeer('-100123456')).toBe(false); // basic group 100123456
    expect(isChannelPeer('-4001')).toBe(false);
    expect(isChannelPeer('5000002')).toBe(false);
    expect(isChannelPeer('not-a-peer')).toBe(false);
    const index = new MessageIndex();
    index.set(7, { ...entry('-100123456'), type: 'group' });
    expect(index.getCommonBox(7)?.peer).toBe('-100123456'); // its ids share the account's common box
  });
});
