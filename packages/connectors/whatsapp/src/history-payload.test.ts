import { deflateSync } from 'node:zlib';
import { proto } from '@whiskeysockets/baileys';
import { describe, expect, it } from 'vitest';
import { MAX_HISTORY_ENTRIES, MAX_HISTORY_MESSAGES, checkHistoryPayload } from './history-payload.ts';

const inline = (bytes: Uint8Array) => ({ initialHistBootstrapInlinePayload: Uint8Array.from(deflateSync(bytes)) });
const varint = (n: number) => {
  const bytes = [];
  for (; n > 127; n >>>= 7) bytes.push((n & 127) | 128);
  bytes.push(n);
  return bytes;
};
const field = (tag: number[], body: Uint8Array) => Buffer.concat([Buffer.from(tag), Buffer.from(varint(body.length)), body]);

describe('checkHistoryPayload', () => {
  it('accepts a real phone-sized answer: thousands of messages, a few MiB, encoded by WhatsApp\'s own protobuf', () => {
    const messages = Array.from({ length: MAX_HISTORY_MESSAGES - 1 }, (_, i) => ({ message: { key: { remoteJid: '15550000002@s.whatsapp.net', id: `ID${i}`, fromMe: false }, messageTimestamp: 1_780_000_000 + i, message: { conversation: 'x'.repeat(120) } } }));
    const sync = proto.HistorySync.encode({ syncType: proto.HistorySync.HistorySyncType.ON_DEMAND, conversations: [{ id: '15550000002@s.whatsapp.net', messages }] }).finish();
    expect(sync.length).toBeGreaterThan(2 * 1024 * 1024);
    expect(checkHistoryPayload(inline(sync))).toBeUndefined();
  });

  it('counts on the wire: one entry or message over a limit is too large; truncated or grouped fields are malformed', () => {
    const chat = field([0x12], Uint8Array.from([0x0a, 0x01, 0x41]));
    const chats = (n: number) => Buffer.concat(Array.from({ length: n }, () => chat));
    expect(checkHistoryPayload(inline(chats(MAX_HISTORY_ENTRIES)))).toBeUndefined();
    expect(checkHistoryPayload(inline(chats(MAX_HISTORY_ENTRIES + 1)))?.reason).toBe('history-payload-too-large');
    const emptyMessages = (n: number) => field([0x12], Buffer.concat([Buffer.from([0x0a, 0x01, 0x41]), Buffer.alloc(2 * n, Buffer.from([0x12, 0x00]))]));
    expect(checkHistoryPayload(inline(emptyMessages(MAX_HISTORY_MESSAGES + 1)))?.reason).toBe('history-payload-too-large');
    expect(checkHistoryPayload(inline(Buffer.concat([chat, Buffer.from([0x12, 0x10, 0x0a])])))?.reason).toBe('history-payload-malformed');
    expect(checkHistoryPayload(inline(Buffer.from([0x13, 0x14])))?.reason).toBe('history-payload-malformed');
    expect(checkHistoryPayload(inline(Buffer.from([0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])))?.reason).toBe('history-payload-malformed');
  });

  it('a message nested 100,000 quotes deep is malformed, not a crash', () => {
    // Message.extendedTextMessage(6) → contextInfo(17) → quotedMessage(3) → Message …, built backwards.
    const out: number[] = [];
    let length = 0;
    const prepend = (bytes: number[]) => {
      for (let i = bytes.length - 1; i >= 0; i--) out.push(bytes[i] ?? 0);
      length += bytes.length;
    };
    for (let depth = 0; depth < 100_000; depth++) {
      prepend([0x1a, ...varint(length)]);
      prepend([0x8a, 0x01, ...varint(length)]);
      prepend([0x32, ...varint(length)]);
    }
    const nested = Uint8Array.from(out.reverse());
    const info = Buffer.concat([Buffer.from([0x0a, 0x05, 0x12, 0x03, 0x41, 0x42, 0x43]), field([0x12], nested)]);
    const sync = field([0x12], Buffer.concat([Buffer.from([0x0a, 0x01, 0x41]), field([0x12], field([0x0a], info))]));
    expect(checkHistoryPayload(inline(sync))?.reason).toBe('history-payload-malformed');
  });
});
