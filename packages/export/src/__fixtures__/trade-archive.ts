/**
 * A small signed archive for the export tests, recorded through the real Recorder into a real
 * file-system sink: a client chat (PNG and PDF attachments, two edits, a reaction added, removed
 * and re-added, a reply, a message deleted for everyone, an HTML-injection attempt, a long text
 * stored as a blob), a group (members added and leaving, a title change, an undecryptable
 * message, an edit whose original predates capture) and an account-level policy record.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import { type CaptureInput, type ConversationRef, type Ed25519NoteKey, type Party, type RawInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

export const alice: Party = { id: 'alice@firm.example', name: 'Alice Moreau' };
export const bob: Party = { id: '+15550100@s.whatsapp.net', name: 'Bob Chén', aliases: ['1203@lid'] };
export const dan: Party = { id: 'dan@firm.example', name: 'Dan Okafor' };
export const erin: Party = { id: 'erin@firm.example', name: 'Erin Walsh' };
export const client: ConversationRef = { id: '+15550100@s.whatsapp.net', type: 'direct', title: 'Bob Chén' };
export const desk: ConversationRef = { id: '120363@g.us', type: 'group', title: 'Rates desk' };
export const HOSTILE_TEXT = '<script>document.title="pwned"</script><img src=x onerror=alert(1)> & "quotes"';
export const LONG_TEXT = `${'Term sheet clause. '.repeat(2000)}END`;

/**
 * The recorder clock of every fixture archive: `capturedAt` (and so the time of records without
 * a platform time, like the policy record) never depends on the day the tests run.
 */
export const FIXTURE_NOW = '2026-11-21T10:00:00.000Z';
export const fixtureClock = (): Date => new Date(FIXTURE_NOW);

export interface TradeArchive {
  readonly dir: string;
  readonly key: Ed25519NoteKey;
  readonly stream: string;
  readonly png: Uint8Array;
  readonly pdf: Uint8Array;
}

/** A 2×2 red PNG, encoded here (zlib + CRC32), so the browser test can render a real image. */
export function tinyPng(): Uint8Array {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(2, 0);
  header.writeUInt32BE(2, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.from([0, 255, 0, 0, 255, 0, 0, 0, 255, 0, 0, 255, 0, 0]);
  return new Uint8Array(Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]));
}

export async function createTradeArchive(): Promise<TradeArchive> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-export-test-'));
  const key = generateEd25519NoteKey('export-test.offchannel.example');
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, clock: fixtureClock, checkpoints: { signer: key, everyRecords: 5 } });
  const writer = recorder.writer({ channel: 'whatsapp', account: 'alice', source: { package: '@offchannel/export-test', version: '0.0.0' } });
  const png = tinyPng();
  const pdf = new TextEncoder().encode('%PDF-1.4\n% test term sheet\n%%EOF\n');
  const t = (minute: number): string => new Date(Date.UTC(2026, 10, 20, 9, minute, 0)).toISOString();
  const raw = (value: unknown): RawInput => ({ bytes: new TextEncoder().encode(JSON.stringify(value)), format: 'test.json' });
  const message = (conversation: ConversationRef, sender: Party, id: string, minute: number, extra: Partial<CaptureInput>): CaptureInput => ({
    kind: 'message',
    key: `message:${id}`,
    sentAt: t(minute),
    conversation,
    sender,
    direction: sender === alice ? 'outbound' : 'inbound',
    native: { id, chat: conversation.id },
    raw: raw({ id }),
    ...extra,
  });
  const inputs: CaptureInput[] = [
    { kind: 'policy', key: 'policy:1', system: { event: 'policy-in-force', fields: { version: '1' } } },
    message(client, bob, 'm1', 1, { text: 'Morning Alice — can you send the term sheet?' }),
    message(client, alice, 'm2', 2, { text: 'Attached, indicative only.', attachments: [{ bytes: pdf, mime: 'application/pdf', name: 'term sheet (5y).pdf' }, { bytes: png, mime: 'image/png', name: 'chart.png' }] }),
    { kind: 'reaction', key: 'reaction:m2:bob:add:1', sentAt: t(3), conversation: client, sender: bob, direction: 'inbound', target: { id: 'm2', chat: client.id }, reaction: { value: '👍', action: 'add' } },
    message(client, bob, 'm3', 4, { text: 'Could you do 4.15% fixed?' }),
    { kind: 'edit', key: 'edit:m3:1', sentAt: t(5), conversation: client, sender: bob, direction: 'inbound', native: { id: 'm3-e1', chat: client.id }, target: { id: 'm3', chat: client.id }, text: 'Could you do 4.10% fixed?' },
    { kind: 'reaction', key: 'reaction:m2:bob:remove', sentAt: t(6), conversation: client, sender: bob, direction: 'inbound', target: { id: 'm2', chat: client.id }, reaction: { value: '👍', action: 'remove' } },
    { kind: 'edit', key: 'edit:m3:2', sentAt: t(7), conversation: client, sender: bob, direction: 'inbound', native: { id: 'm3-e2', chat: client.id }, target: { id: 'm3', chat: client.id }, text: 'Could you do 4.05% fixed? Final offer 🙂' },
    message(client, alice, 'm4', 8, { text: 'Let me check with the desk.', replyTo: { id: 'm3', chat: client.id } }),
    message(client, bob, 'm5', 9, { text: 'Call me on my personal phone instead.' }),
    { kind: 'delete', key: 'delete:m5', sentAt: t(10), conversation: client, sender: bob, direction: 'inbound', target: { id: 'm5', chat: client.id }, deletion: { scope: 'everyone' } },
    message(client, bob, 'm6', 11, { text: HOSTILE_TEXT }),
    message(client, alice, 'm7', 12, { text: LONG_TEXT }),
    { kind: 'reaction', key: 'reaction:m2:dan:add', sentAt: t(13), conversation: client, sender: bob, direction: 'inbound', target: { id: 'm2', chat: client.id }, reaction: { value: '👍', action: 'add' } },
    { kind: 'membership', key: 'membership:g0', sentAt: t(20), conversation: desk, sender: dan, direction: 'inbound', membership: { action: 'add', members: [erin, alice] } },
    { kind: 'membership', key: 'membership:g1', sentAt: t(21), conversation: desk, sender: dan, direction: 'inbound', membership: { action: 'title', value: 'Rates desk' } },
    message(desk, dan, 'g1', 22, { text: 'Bob wants 4.05 on the 5y.' }),
    { kind: 'undecryptable', key: 'undecryptable:g2', sentAt: t(23), conversation: desk, sender: erin, direction: 'inbound', native: { id: 'g2', chat: desk.id }, problem: { reason: 'no-session', detail: 'no session with sender device' }, raw: raw({ ciphertext: 'AAEC' }) },
    { kind: 'edit', key: 'edit:old:1', sentAt: t(24), conversation: desk, sender: dan, direction: 'inbound', native: { id: 'old-e1', chat: desk.id }, target: { id: 'old', chat: desk.id }, text: 'Corrected: 4.07' },
    message(desk, alice, 'g3', 25, { text: 'Noted, holding 4.07 until noon.', forwarded: true }),
    { kind: 'membership', key: 'membership:g4', sentAt: t(26), conversation: desk, sender: erin, direction: 'inbound', membership: { action: 'leave' } },
  ];
  try {
    for (const input of inputs) await writer.capture(input);
    await recorder.close();
  } finally {
    await sink.close();
  }
  return { dir, key, stream: writer.stream, png, pdf };
}
