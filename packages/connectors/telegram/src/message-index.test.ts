import { describe, expect, it } from 'vitest';
import type { StateStore } from '@offchannel/core';
import { MessageIndex, isChannelPeer } from './message-index.ts';
import { testRigs } from './test-support.ts';

const rigs = testRigs();

/** The real store, counting the index entries each write carries; `failOn` makes writes of that name fail. */
function counting(state: StateStore, failOn?: string): { store: StateStore; written: () => number } {
  let written = 0;
  const store: StateStore = {
    get: (name) => state.get(name),
    set: (name, value) => state.set(name, value),
    getJson: <T>(name: string) => state.getJson<T>(name),
    setJson: async (name, value) => {
      if (name === failOn) throw new Error('disk full');
      if (Array.isArray(value)) written += value.length;
      return state.setJson(name, value);
    },
    delete: (name) => state.delete(name),
    list: () => state.list(),
    scope: (name) => state.scope(name),
    table: (name) => state.table(name),
  };
  return { store, written: () => written };
}

const entry = (peer: string) => ({ peer, fingerprint: 'f', reactions: [], direction: 'inbound' as const, type: peer.startsWith('-100') ? ('group' as const) : ('direct' as const) });

describe('MessageIndex', () => {
  it('resolves common-box ids, keeps channel ids per channel, persists, and survives damage', async () => {
    const rig = await rigs.create();
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

  it('writes only what was committed since the last persist, however large the index', async () => {
    const rig = await rigs.create();
    const state = rig.state.scope('telegram:alice');
    const index = new MessageIndex(10_000);
    for (let id = 1; id <= 5_000; id++) index.set(id, entry(String(6_000_000 + (id % 50))));
    await index.persist(state);
    const { store, written } = counting(state);
    index.set(5_001, { ...entry('-4001'), fingerprint: 'new' });
    await index.persist(store);
    // Before: the whole shard the entry falls in was rewritten (about 5,000 / 32 = 156 entries).
    expect(written()).toBe(1);
    await index.persist(store); // nothing new: nothing written
    expect(written()).toBe(1);
    const loaded = await MessageIndex.load(state, 10_000);
    expect(loaded.size).toBe(5_001);
    expect(loaded.getCommonBox(5_001)?.fingerprint).toBe('new');
    expect(loaded.getCommonBox(77)?.peer).toBe('6000027');
  });

  it('compacts the journal into the shards, keeps the latest value of each key, and loads right after a compaction cut short', async () => {
    const rig = await rigs.create();
    const state = rig.state.scope('telegram:alice');
    const index = new MessageIndex(100_000);
    // Many small persists (a live account) with the same messages edited again and again.
    for (let round = 1; round <= 10; round++) {
      for (let id = 1; id <= 500; id++) index.set(id, { ...entry('-4001'), fingerprint: `r${round}` });
      await index.persist(state);
    }
    const names = await state.list();
    expect(names).toContain('message-index.base'); // 5,000 journaled ≥ 4,096: compacted
    const journal = names.filter((name) => name.startsWith('message-index.journal.'));
    expect(journal.length).toBeLessThanOrEqual(1);
    expect((await MessageIndex.load(state)).getCommonBox(250)?.fingerprint).toBe('r10');

    // The process dies after the shards were rewritten but before the base marker says so:
    // the journal the shards already hold is replayed over them, and every key still ends at its latest value.
    const { store } = counting(state, 'message-index.base');
    const next = await MessageIndex.load(state, 100_000);
    let failed: unknown;
    for (let round = 11; round <= 30 && failed === undefined; round++) {
      for (let id = 1; id <= 500; id++) next.set(id, { ...entry('-4001'), fingerprint: `r${round}` });
      next.set(1_000 + round, { ...entry('-4001'), fingerprint: `only-${round}` });
      await next.persist(store).catch((error: unknown) => (failed = error));
    }
    expect(failed).toBeInstanceOf(Error);
    const reloaded = await MessageIndex.load(state, 100_000);
    const latest = next.getCommonBox(250)?.fingerprint;
    expect(latest).toMatch(/^r\d+$/);
    expect(reloaded.getCommonBox(250)?.fingerprint).toBe(latest);
    expect(reloaded.getCommonBox(1_011)?.fingerprint).toBe('only-11');
    expect(reloaded.size).toBe(next.size);
  });
});
