import { describe, expect, it } from 'vitest';
import { tempStateStore } from './__fixtures__/signal-parties.ts';
import { StagedState } from './staged-state.ts';

describe('StagedState', () => {
  it('shows pending writes to reads, writes nothing until commit, and discards on request', async () => {
    const base = await tempStateStore();
    await base.set('a', Uint8Array.of(1));
    const stage = new StagedState(base);
    stage.set('a', Uint8Array.of(2));
    stage.delete('b');
    stage.set('c', Uint8Array.of(3));
    expect(await stage.get('a')).toEqual(Uint8Array.of(2));
    expect(await base.get('a')).toEqual(Uint8Array.of(1));
    stage.discard();
    expect(await stage.get('a')).toEqual(Uint8Array.of(1));
    stage.set('a', Uint8Array.of(4));
    stage.delete('c');
    await stage.commit();
    expect(await base.get('a')).toEqual(Uint8Array.of(4));
    expect(await base.list()).toEqual(['a']);
  });

  it('rolls back one envelope of a batch, keeping the writes staged before it', async () => {
    const base = await tempStateStore();
    await base.set('session', Uint8Array.of(0));
    await base.set('prekey.10', Uint8Array.of(5));
    const stage = new StagedState(base);
    stage.begin(); // envelope 1 decrypts, consuming a one-time prekey
    stage.set('session', Uint8Array.of(1));
    stage.delete('prekey.10');
    stage.begin(); // envelope 2 writes, then turns out undecryptable
    stage.set('session', Uint8Array.of(2));
    stage.set('identity', Uint8Array.of(7));
    stage.delete('session');
    stage.rollback();
    expect(await stage.get('session')).toEqual(Uint8Array.of(1));
    expect(await stage.get('identity')).toBeUndefined();
    expect(await stage.get('prekey.10')).toBeUndefined();
    await stage.commit();
    expect(await base.get('session')).toEqual(Uint8Array.of(1));
    expect(await base.list()).toEqual(['session']);
  });

  it('reads each committed value from disk once, and stays true to commits and discards', async () => {
    const base = await tempStateStore();
    await base.set('session', Uint8Array.of(1));
    let reads = 0;
    const counted = Object.assign(Object.create(base) as typeof base, {
      get: (name: string) => {
        reads++;
        return base.get(name);
      },
    });
    const stage = new StagedState(counted);
    for (let i = 0; i < 5; i++) expect(await stage.get('session')).toEqual(Uint8Array.of(1));
    expect(await stage.get('absent')).toBeUndefined();
    expect(await stage.get('absent')).toBeUndefined();
    expect(reads).toBe(2);
    stage.set('session', Uint8Array.of(2));
    stage.discard();
    expect(await stage.get('session')).toEqual(Uint8Array.of(1));
    stage.set('session', Uint8Array.of(3));
    stage.set('absent', Uint8Array.of(4));
    await stage.commit();
    expect(await stage.get('session')).toEqual(Uint8Array.of(3));
    expect(await stage.get('absent')).toEqual(Uint8Array.of(4));
    expect(await base.get('session')).toEqual(Uint8Array.of(3));
    expect(reads).toBe(2);
  });

  it('completes a commit interrupted after its journal was written', async () => {
    const base = await tempStateStore();
    await base.set('old', Uint8Array.of(9));
    // What a crash right after writing the journal leaves behind.
    await base.setJson('journal', [
      ['session', Buffer.from([1, 2]).toString('base64')],
      ['old', null],
    ]);
    expect(await StagedState.recover(base)).toBe(true);
    expect(await base.get('session')).toEqual(Uint8Array.of(1, 2));
    expect(await base.get('old')).toBeUndefined();
    expect(await base.get('journal')).toBeUndefined();
    expect(await StagedState.recover(base)).toBe(false);
  });

  it('finishes a commit that failed after its journal was written before anything else is read', async () => {
    const base = await tempStateStore();
    let failNext = true;
    const flaky = {
      ...base,
      get: (name: string) => base.get(name),
      getJson: <T>(name: string) => base.getJson<T>(name),
      setJson: (name: string, value: unknown) => base.setJson(name, value),
      delete: (name: string) => base.delete(name),
      set: async (name: string, value: Uint8Array) => {
        if (failNext) {
          failNext = false;
          throw new Error('disk full');
        }
        return base.set(name, value);
      },
    };
    const stage = new StagedState(flaky);
    stage.set('session', Uint8Array.of(1));
    stage.set('processed', Uint8Array.of(2));
    await expect(stage.commit()).rejects.toThrow('disk full');
    await expect(stage.get('session')).rejects.toMatchObject({ code: 'SIGNAL_STATE_CORRUPT' });
    await stage.ensureCommitted();
    expect(await stage.get('session')).toEqual(Uint8Array.of(1));
    expect(await stage.get('processed')).toEqual(Uint8Array.of(2));
    expect(await base.get('journal')).toBeUndefined();
  });

  it('refuses a damaged journal', async () => {
    const base = await tempStateStore();
    await base.setJson('journal', { not: 'a list' });
    await expect(StagedState.recover(base)).rejects.toMatchObject({ code: 'SIGNAL_STATE_CORRUPT' });
  });
});
