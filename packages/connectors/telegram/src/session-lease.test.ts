import os from 'node:os';
import { OffchannelError } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { SessionLease } from './session-lease.ts';
import { testRigs } from './test-support.ts';

const rigs = testRigs();

async function state() {
  const rig = await rigs.create();
  return rig.state.scope('telegram:alice');
}

describe('SessionLease', () => {
  it('lets one holder at a time, and frees the lease on release', async () => {
    const store = await state();
    const first = new SessionLease(store);
    await first.acquire(() => undefined);
    const second = new SessionLease(store);
    const error = await second.acquire(() => undefined).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'TELEGRAM_SESSION_IN_USE')).toBe(true);
    expect((error as Error).message).toContain(`pid ${process.pid}`);
    await first.release();
    await second.acquire(() => undefined);
    await second.release();
  });

  it('tells its holder when another process has taken the lease over', async () => {
    const store = await state();
    const lease = new SessionLease(store, { ttlMs: 3000 });
    let notify: (error: Error) => void = () => undefined;
    const lost = new Promise<Error>((resolve) => {
      notify = resolve;
    });
    await lease.acquire((error) => {
      notify(error);
    });
    await store.setJson('session.lease', { owner: 'intruder', pid: 1, host: 'other-host', renewedAt: Date.now() });
    const error = await lost; // noticed at the next renewal (every ttl / 3)
    expect(OffchannelError.hasCode(error, 'TELEGRAM_SESSION_IN_USE')).toBe(true);
    await lease.release();
    expect(await store.getJson('session.lease')).toMatchObject({ owner: 'intruder' }); // not ours to delete
  });

  it('takes over a lease left by a crashed process on this host, or an expired one elsewhere', async () => {
    const store = await state();
    await store.setJson('session.lease', { owner: 'crashed', pid: 2 ** 22 + 12345, host: os.hostname(), renewedAt: Date.now() });
    const lease = new SessionLease(store);
    await lease.acquire(() => undefined);
    await lease.release();
    await store.setJson('session.lease', { owner: 'remote', pid: 1, host: 'other-host', renewedAt: Date.now() - 120_000 });
    const takeover = new SessionLease(store, { ttlMs: 60_000 });
    await takeover.acquire(() => undefined);
    await takeover.release();
    await store.setJson('session.lease', { owner: 'remote', pid: 1, host: 'other-host', renewedAt: Date.now() });
    const live = await new SessionLease(store).acquire(() => undefined).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(live, 'TELEGRAM_SESSION_IN_USE')).toBe(true);
  });
});
