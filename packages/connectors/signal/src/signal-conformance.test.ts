/**
 * The connector conformance harness from @offchannel/core/testing, run on the Signal connector:
 * real libsignal encryption from a contact, envelopes delivered through libsignal's own fake chat
 * connection, acknowledgements observed on it.
 */
import { runConnectorConformance } from '@offchannel/core/testing';
import { describe, it } from 'vitest';
import { TEST_TRUST_ROOT, linkedDevice } from './__fixtures__/linked-device.ts';
import { createSignalConnector } from './signal-connector.ts';

describe('Signal connector conformance', () => {
  runConnectorConformance({
    test: it,
    async createFixture({ state }) {
      const device = await linkedDevice(state);
      const send = (id: string) => {
        device.deliver(id);
        return id;
      };
      return {
        connector: createSignalConnector({ account: 'alice', trustRoots: [TEST_TRUST_ROOT], net: device.net, reconnect: { minMs: 5, maxMs: 20 } }),
        sendMessage: async (text) => send(await device.message(text)),
        async sendMalformed() {
          const bytes = Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
          return { id: send(device.raw(bytes)), bytes };
        },
        redeliver: async (id) => { device.deliver(id); },
        acknowledged: () => device.acknowledged,
        async dropConnection() {
          device.remotes.at(-1)?.injectConnectionInterrupted();
        },
        destroy: async () => undefined,
      };
    },
  });
});
