import { describe, expect, it, vi } from 'vitest';
import { StateStoreStorage } from './state-storage.ts';
import { testRigs, type TestRig } from './test-support.ts';

const rigs = testRigs();

/** Lets every pending promise callback and I/O turn run. */
async function settle(): Promise<void> {
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
}

/** A barrier per save, released by the test (in order). */
function barriers(): { readonly beforeSave: () => Promise<boolean>; release(durable?: boolean): void; readonly waiting: number } {
  const pending: ((durable: boolean) => void)[] = [];
  return {
    beforeSave: () => new Promise<boolean>((resolve) => pending.push(resolve)),
    release: (durable = true) => pending.shift()?.(durable),
    get waiting() {
      return pending.length;
    },
  };
}

const pts = (value: number): Uint8Array => new Uint8Array([value]);

async function storedPts(rig: TestRig): Promise<string | undefined> {
  const kv = await rig.state.scope('telegram:alice').getJson<Record<string, string>>('mtcute.kv');
  return kv?.['pts'];
}

describe('StateStoreStorage', () => {
  it('with overlap, lets mtcute fetch the next slice while a save waits for its barrier, and writes the cursor of the call', async () => {
    const rig = await rigs.create();
    const barrier = barriers();
    const storage = new StateStoreStorage(rig.state.scope('telegram:alice'), { beforeSave: barrier.beforeSave, overlap: true });
    await storage.driver.load();
    storage.kv.set('pts', pts(1));
    let first = false;
    void storage.driver.save().then(() => (first = true));
    await settle();
    // Before: save() waited for its barrier, so mtcute's updates loop sat idle until the slice was durable.
    expect(first).toBe(true);
    expect(await storedPts(rig)).toBeUndefined(); // its captures are not durable: nothing written yet
    storage.kv.set('pts', pts(2)); // mtcute went on: the next slice advanced the cursor
    let second = false;
    void storage.driver.save().then(() => (second = true));
    await settle();
    expect(second).toBe(false); // never more than one slice ahead
    barrier.release();
    await vi.waitFor(() => {
      expect(second).toBe(true);
    }, { timeout: 60_000, interval: 5 });
    expect(await storedPts(rig)).toBe(Buffer.from(pts(1)).toString('base64')); // the first call's cursor, not the current one
    barrier.release(false); // the second slice will never be durable
    await settle();
    expect(await storedPts(rig)).toBe(Buffer.from(pts(1)).toString('base64'));
    const destroyed = storage.driver.destroy();
    await vi.waitFor(() => {
      expect(barrier.waiting).toBe(1);
    }, { timeout: 60_000, interval: 5 });
    barrier.release(false);
    await destroyed;
    expect(await storedPts(rig)).toBe(Buffer.from(pts(1)).toString('base64'));
  });

  it('without overlap, save() resolves once its own barrier passed and it is written; a barrier of `false` skips at once', async () => {
    const rig = await rigs.create();
    const barrier = barriers();
    let skip = false;
    const storage = new StateStoreStorage(rig.state.scope('telegram:alice'), { beforeSave: () => (skip ? false : barrier.beforeSave()) });
    await storage.driver.load();
    storage.kv.set('pts', pts(7));
    skip = true;
    await storage.driver.save(); // skipped: resolves at once, nothing written, still to be written
    expect(await storedPts(rig)).toBeUndefined();
    skip = false;
    let saved = false;
    void storage.driver.save().then(() => (saved = true));
    await settle();
    expect(saved).toBe(false);
    barrier.release();
    await vi.waitFor(() => {
      expect(saved).toBe(true);
    }, { timeout: 60_000, interval: 5 });
    expect(await storedPts(rig)).toBe(Buffer.from(pts(7)).toString('base64'));
  });
});
