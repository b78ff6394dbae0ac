/**
 * The connector conformance harness from @offchannel/core/testing, run on the MTProto
 * connector: mtcute's real updates engine, RPCs answered by the local Telegram server, updates
 * pushed as Telegram's own containers. Telegram's acknowledgement is the stored cursor: an
 * update counts as acknowledged once the `pts` (or `qts`) saved in the account's state store
 * covers it — read from the state store itself, as a restarted process would.
 */
import { runConnectorConformance } from '@offchannel/core/testing';
import { Long, type tl } from '@mtcute/core';
import { describe, it } from 'vitest';
import { telegramStateScope } from './link-telegram.ts';
import { createLocalTelegramPeer, LOCAL_IDS } from './testing/index.ts';
import { peersOf, updateEvidence } from './map-telegram.ts';

/** The int32 mtcute keeps under `key` in its key-value store, as our storage driver saved it. */
function storedInt(kv: Record<string, string> | undefined, key: string): number {
  const value = kv?.[key];
  return value === undefined ? 0 : Buffer.from(value, 'base64').readInt32LE(0);
}

describe('Telegram connector conformance', () => {
  runConnectorConformance({
    test: it,
    async createFixture({ state }) {
      const peer = createLocalTelegramPeer({ retry: { minMs: 5, maxMs: 20 } });
      const scope = telegramStateScope(state, peer.account);
      // A used account: qts past 0 (mtcute applies no qts update whose predecessor is 0).
      peer.server.qts = 100;
      await peer.link(scope);
      /** Updates sent, in order: which counter covers them, their position, the platform id. */
      const sent: { readonly box: 'pts' | 'qts'; readonly at: number; readonly id: string }[] = [];
      const acknowledged: string[] = [];
      const covered = { pts: 0, qts: 0 };
      let polling = true;
      const poll = async (): Promise<void> => {
        while (polling) {
          const kv = await scope.getJson<Record<string, string>>('mtcute.kv');
          for (const box of ['pts', 'qts'] as const) {
            const now = storedInt(kv, `updates_${box}`);
            for (const entry of sent) if (entry.box === box && entry.at > covered[box] && entry.at <= now) acknowledged.push(entry.id);
            covered[box] = Math.max(covered[box], now);
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      const polled = poll();
      const messages = new Map<string, tl.RawMessage>();
      const push = (message: tl.RawMessage): string => {
        const update: tl.RawUpdateNewMessage = { _: 'updateNewMessage', message, pts: 0, ptsCount: 1 };
        peer.pushUpdate(update); // the server assigns the pts
        sent.push({ box: 'pts', at: update.pts, id: String(message.id) });
        return String(message.id);
      };
      return {
        connector: peer.connector,
        async sendMessage(text) {
          const message: tl.RawMessage = { _: 'message', id: peer.server.messageId(), fromId: { _: 'peerUser', userId: LOCAL_IDS.client }, peerId: { _: 'peerUser', userId: LOCAL_IDS.client }, date: peer.server.tick(), message: text };
          messages.set(String(message.id), message);
          return push(message);
        },
        async sendMalformed() {
          // A secret-chat message: end-to-end encrypted for another device, so undecryptable here.
          peer.server.qts++;
          const update: tl.RawUpdateNewEncryptedMessage = {
            _: 'updateNewEncryptedMessage',
            message: { _: 'encryptedMessage', randomId: Long.fromNumber(7), chatId: 77, date: peer.server.tick(), bytes: new Uint8Array([0xde, 0xad, 0xbe, 0xef]), file: { _: 'encryptedFileEmpty' } },
            qts: peer.server.qts,
          };
          const id = `secret:${update.qts}`;
          peer.pushUpdate(update);
          sent.push({ box: 'qts', at: update.qts, id });
          // The evidence: the update in an `updates` container with the users it names (the custodian).
          const peers = peersOf({ users: [...peer.server.users.values(), peer.server.self], chats: [...peer.server.chats.values()] });
          return { id, bytes: updateEvidence(update, peers, LOCAL_IDS.self) };
        },
        async redeliver(id) {
          const message = messages.get(id);
          if (message) push(message);
        },
        acknowledged: () => acknowledged,
        async destroy() {
          polling = false;
          await polled;
        },
      };
    },
  });
});
