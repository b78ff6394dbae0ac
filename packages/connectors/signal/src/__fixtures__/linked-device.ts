/**
 * A Signal connector's world without sockets: a receiver whose keys live in the connector's own
 * state store (as after linking), a contact with a session to it, and libsignal's fake chat
 * connection through which envelopes are delivered and acknowledgements observed.
 */
import { randomUUID } from 'node:crypto';
import type { StateStore } from '@offchannel/core';
import * as Native from '@signalapp/libsignal-client/dist/Native.js';
import type { FakeChatRemote } from '@signalapp/libsignal-client/dist/net/FakeChat.js';
import { AuthenticatedChatConnection, type ChatServerMessageAck, type ChatServiceListener, type Net, TokioAsyncContext } from '@signalapp/libsignal-client/dist/net.js';
import { ACCOUNT_STATE, encodeAccount } from '../account.ts';
import { type Party, type Receiver, encryptTo, envelopeBytes, makeParty, makeReceiver, startSession, textContent } from './signal-parties.ts';

export const TEST_TRUST_ROOT = 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF';
const T0 = 1_763_700_000_000;

export interface LinkedDevice {
  readonly receiver: Receiver;
  readonly contact: Party;
  readonly net: Net;
  readonly remotes: FakeChatRemote[];
  /** Ids acknowledged with 200, once per acknowledgement. */
  readonly acknowledged: string[];
  /** Encrypts a text message from the contact; returns its id (the server guid). Not delivered yet. */
  message(text: string): Promise<string>;
  /** Stores raw envelope bytes under a new id. Not delivered yet. */
  raw(bytes: Uint8Array): string;
  /** Delivers (or redelivers) an envelope on the newest connection. */
  deliver(id: string): void;
}

/** Links a receiver into `root.scope(stream)` and starts a session from a contact. */
export async function linkedDevice(root: StateStore, stream = 'signal:alice'): Promise<LinkedDevice> {
  const scoped = root.scope(stream);
  const receiver = await makeReceiver(scoped);
  await scoped.setJson(
    ACCOUNT_STATE,
    encodeAccount({
      version: 1,
      aci: receiver.aci,
      pni: receiver.pni,
      deviceId: receiver.deviceId,
      password: 'fake-chat-password',
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
  let timestamp = T0;
  return {
    receiver,
    contact,
    net,
    remotes,
    acknowledged,
    async message(text) {
      const id = randomUUID();
      const { type, body } = await encryptTo(contact, receiver, textContent(text, ++timestamp));
      sent.set(id, envelopeBytes({ type, content: body, source: contact, clientTimestamp: timestamp, serverGuid: id }));
      return id;
    },
    raw(bytes) {
      const id = randomUUID();
      sent.set(id, bytes);
      return id;
    },
    deliver(id) {
      const ack = { send: (status: number) => status === 200 && acknowledged.push(id) } as unknown as ChatServerMessageAck;
      listeners.at(-1)?.onIncomingMessage(Uint8Array.from(sent.get(id) ?? []), Date.now(), ack);
    },
  };
}
