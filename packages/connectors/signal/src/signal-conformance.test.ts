/**
 * The connector conformance harness from @offchannel/core/testing, run on the Signal connector:
 * real libsignal encryption from a contact, envelopes delivered through libsignal's own fake chat
 * connection, acknowledgements observed on it.
 */
import { randomUUID } from 'node:crypto';
import { runConnectorConformance } from '@offchannel/core/testing';
import * as Native from '@signalapp/libsignal-client/dist/Native.js';
import type { FakeChatRemote } from '@signalapp/libsignal-client/dist/net/FakeChat.js';
import { AuthenticatedChatConnection, type ChatServerMessageAck, type ChatServiceListener, type Net, TokioAsyncContext } from '@signalapp/libsignal-client/dist/net.js';
import { describe, it } from 'vitest';
import { encryptTo, envelopeBytes, makeParty, makeReceiver, startSession, textContent } from './__fixtures__/signal-parties.ts';
import { ACCOUNT_STATE, encodeAccount } from './account.ts';
import { createSignalConnector } from './signal-connector.ts';

const ROOT = 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF';
const T0 = 1_763_700_000_000;

describe('Signal connector conformance', () => {
  runConnectorConformance({
    test: it,
    async createFixture({ state }) {
      const scoped = state.scope('signal:alice');
      const receiver = await makeReceiver(scoped);
      await scoped.setJson(
        ACCOUNT_STATE,
        encodeAccount({
          version: 1,
          aci: receiver.aci,
          pni: receiver.pni,
          deviceId: receiver.deviceId,
          password: 'conformance-password',
          registrationId: receiver.registrationId,
          pniRegistrationId: receiver.registrationId,
          aciIdentity: receiver.identity,
          pniIdentity: receiver.pniIdentity,
          nextPreKeyId: { aci: 100, pni: 100 },
          signedPreKeyId: { aci: 1, pni: 1 },
          linkedAt: new Date(T0).toISOString(),
          signedPreKeyRotatedAt: new Date(T0).toISOString(),
        }),
      );
      await scoped.setJson('last-online', new Date().toISOString());
      const contact = await makeParty(1);
      await startSession(contact, receiver, 10);

      const tokio = new TokioAsyncContext(Native.TokioAsyncContext_new());
      const listeners: ChatServiceListener[] = [];
      const remotes: FakeChatRemote[] = [];
      const net = {
        connectAuthenticatedChat: async (_user: string, _password: string, _stories: boolean, listener: ChatServiceListener) => {
          listeners.push(listener);
          const [chat, remote] = AuthenticatedChatConnection.fakeConnect(tokio, listener);
          remotes.push(remote);
          return chat;
        },
      } as unknown as Net;

      const acknowledged: string[] = [];
      const sent = new Map<string, Uint8Array>();
      const deliver = (id: string): void => {
        const ack = { send: (status: number) => status === 200 && acknowledged.push(id) } as unknown as ChatServerMessageAck;
        listeners.at(-1)?.onIncomingMessage(sent.get(id) as Uint8Array, Date.now(), ack);
      };
      let timestamp = T0;
      return {
        connector: createSignalConnector({ account: 'alice', trustRoots: [ROOT], net, reconnect: { minMs: 5, maxMs: 20 } }),
        async sendMessage(text) {
          const id = randomUUID();
          const { type, body } = await encryptTo(contact, receiver, textContent(text, ++timestamp));
          sent.set(id, envelopeBytes({ type, content: body, source: contact, clientTimestamp: timestamp, serverGuid: id }));
          deliver(id);
          return id;
        },
        async sendMalformed() {
          const id = randomUUID();
          const bytes = Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
          sent.set(id, bytes);
          deliver(id);
          return { id, bytes };
        },
        redeliver: async (id) => deliver(id),
        acknowledged: () => acknowledged,
        async dropConnection() {
          remotes.at(-1)?.injectConnectionInterrupted();
        },
        destroy: async () => undefined,
      };
    },
  });
});
