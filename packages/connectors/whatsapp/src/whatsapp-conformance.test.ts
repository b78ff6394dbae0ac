/**
 * The connector conformance harness (@offchannel/core/testing) on the WhatsApp connector, with
 * the offline driver standing in for the server: Baileys' own receive path, the real runtime.
 * WhatsApp has no upstream acknowledgement (Baileys acks before emitting); "acknowledged" here
 * is the connector's `acknowledge` — the point where its state advances — seen through the
 * `onAcknowledge` seam.
 */
import { runConnectorConformance } from '@offchannel/core/testing';
import { DisconnectReason, type WAMessage } from '@whiskeysockets/baileys';
import { it } from 'vitest';
import { encodeRawEvidence, freezeMessage } from './raw-envelope.ts';
import { JIDS, envelope, textContent } from './testing/fixtures.ts';
import { createWhatsAppTestDriver } from './testing/offline-driver.ts';

const CLOCK = Date.UTC(2026, 10, 21, 9, 0, 0);

runConnectorConformance({
  test: it,
  createFixture: async () => {
    const acknowledged: string[] = [];
    const driver = await createWhatsAppTestDriver({ account: 'conformance', clock: () => CLOCK, onAcknowledge: (ids) => acknowledged.push(...ids) });
    const sent = new Map<string, WAMessage>();
    let n = 0;
    return {
      connector: driver.connector,
      async sendMessage(text) {
        const id = `CONF-${++n}`;
        const message = envelope(await textContent(text, JIDS.alice), { from: JIDS.alice, id, t: CLOCK / 1000 + n });
        sent.set(id, message);
        await driver.socket().deliver(structuredClone(message), 'notify');
        return id;
      },
      async sendMalformed() {
        // A key and a time but no content and no stub: the mapping keeps it as `unsupported`.
        const id = `CONF-BAD-${++n}`;
        const message = { key: { remoteJid: JIDS.alice, fromMe: false, id }, messageTimestamp: CLOCK / 1000 + n } as WAMessage;
        const bytes = encodeRawEvidence(freezeMessage(structuredClone(message), 'notify', { receivedAt: CLOCK }));
        driver.socket().ev.emit('messages.upsert', { messages: [message], type: 'notify' });
        return { id, bytes };
      },
      async redeliver(id) {
        const message = sent.get(id);
        if (!message) throw new Error(`nothing sent with id ${id}`);
        await driver.socket().deliver(structuredClone(message), 'append');
      },
      acknowledged: () => acknowledged,
      async dropConnection() {
        driver.socket().close(DisconnectReason.connectionLost);
      },
      destroy: () => driver.close(),
    };
  },
});
