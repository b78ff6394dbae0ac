/**
 * The connector conformance harness from @offchannel/core/testing, run on the iMessage relay: a
 * real chat.db written by another process (the fixture writer, Messages' own schema), the relay
 * reading it; its acknowledgement is the cursor it saves, observed through `onAcknowledge`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runConnectorConformance } from '@offchannel/core/testing';
import { describe, it } from 'vitest';
import { ChatDb } from './chat-db/chat-db.ts';
import { createIMessageConnector } from './imessage-connector.ts';
import { encodeRawRow } from './raw-row.ts';
import { createChatDbFixture } from './testing/index.ts';

/** A typedstream whose one array asks for 10^8 values: the mapping records it as unsupported. */
function typedstreamBomb(): Uint8Array {
  const ascii = (text: string): number[] => [...new TextEncoder().encode(text)];
  const encoding = ascii('[100[100[100[100[0c]]]]]');
  return Uint8Array.from([4, 11, ...ascii('streamtyped'), 0x81, 0xe8, 0x03, 0x84, encoding.length, ...encoding, 0x84, 0x06, ...ascii('[100c]'), ...new Array<number>(100).fill(0x20)]);
}

describe('iMessage connector conformance', () => {
  runConnectorConformance({
    test: it,
    async createFixture() {
      const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-imessage-conformance-'));
      const db = await createChatDbFixture(path.join(dir, 'mac'));
      const acknowledged: string[] = [];
      return {
        connector: createIMessageConnector({ account: 'alice@firm.example', chatDb: db.path, attachmentsDir: db.attachmentsDir, pollMs: 50, onAcknowledge: (guids) => acknowledged.push(...guids) }),
        sendMessage: async (text) => (await db.receive({ from: '+15550100', text })).guid,
        async sendMalformed() {
          const { guid } = await db.receive({ from: '+15550100', text: 'ignored', body: typedstreamBomb() });
          // The evidence the record must keep: the row and its joined rows, as chat.db holds them.
          const sql = new DatabaseSync(db.path, { readOnly: true });
          const rowid = sql.prepare('SELECT ROWID AS r FROM message WHERE guid = ?').get(guid)?.['r'];
          sql.close();
          const chatDb = ChatDb.open(db.path);
          const bundle = chatDb.bundle(BigInt(rowid as number));
          chatDb.close();
          if (bundle === undefined) throw new Error('the malformed row was not written');
          return { id: guid, bytes: encodeRawRow(bundle) };
        },
        // Messages touches a row already recorded (its delivery date): the relay reads it again.
        async redeliver(id) {
          await db.delivered(id);
        },
        acknowledged: () => acknowledged,
        async destroy() {
          await db.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  });
});
