/** Linking failures, on libsignal's fake provisioning socket. The successful flow runs against the simulator in @offchannel/signal-mock-tests. */
import * as Native from '@signalapp/libsignal-client/dist/Native.js';
import { type Net, ProvisioningConnection, type ProvisioningConnectionListener, TokioAsyncContext } from '@signalapp/libsignal-client/dist/net.js';
import { describe, expect, it } from 'vitest';
import { tempStateStore } from './__fixtures__/signal-parties.ts';
import { ACCOUNT_STATE } from './account.ts';
import { linkSignalDevice } from './link-device.ts';

function fakeProvisioningNet() {
  const tokio = new TokioAsyncContext(Native.TokioAsyncContext_new());
  const listeners: ProvisioningConnectionListener[] = [];
  const connectProvisioning = async (listener: ProvisioningConnectionListener) => {
    listeners.push(listener);
    const [connection] = ProvisioningConnection.fakeConnect(tokio, listener);
    return connection;
  };
  return { net: { connectProvisioning } as unknown as Net, listeners };
}

describe('linkSignalDevice', () => {
  it('gives up with SIGNAL_LINK_FAILED when the phone never scans, and stores nothing', async () => {
    const state = await tempStateStore();
    const fake = fakeProvisioningNet();
    const uris: string[] = [];
    const linking = linkSignalDevice({ state, net: fake.net, io: { showLinkUri: (uri) => void uris.push(uri) }, timeoutMs: 50 });
    await expect(linking).rejects.toMatchObject({ code: 'SIGNAL_LINK_FAILED' });
    expect(await state.list()).toEqual([]);
  });

  it('fails on a provisioning envelope it cannot decrypt', { timeout: 60_000 }, async () => {
    const state = await tempStateStore();
    const fake = fakeProvisioningNet();
    const linking = linkSignalDevice({ state, net: fake.net, io: { showLinkUri: () => undefined } });
    linking.catch(() => undefined); // observed below, once the envelope was delivered
    // Linking connects only after its own async set-up: wait for the socket (a busy machine is
    // slow to get there; a fixed number of ticks was a random failure in CI).
    const deadline = Date.now() + 30_000;
    while (fake.listeners.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(fake.listeners).toHaveLength(1);
    const ack = { send: () => undefined } as unknown as Parameters<ProvisioningConnectionListener['onReceivedEnvelope']>[1];
    fake.listeners[0]?.onReceivedAddress('fake-address', ack);
    fake.listeners[0]?.onReceivedEnvelope(Uint8Array.from([0x0a, 0x01, 0x05, 0x12, 0x02, 0x01, 0x02]), ack);
    await expect(linking).rejects.toMatchObject({ code: 'SIGNAL_LINK_FAILED' });
    expect(await state.list()).toEqual([]);
  });

  it('refuses to replace an account already linked in this state unless asked', async () => {
    const state = await tempStateStore();
    await state.setJson(ACCOUNT_STATE, { version: 1 });
    await expect(linkSignalDevice({ state, net: fakeProvisioningNet().net, io: { showLinkUri: () => undefined } })).rejects.toMatchObject({ code: 'SIGNAL_LINK_FAILED' });
  });
});
