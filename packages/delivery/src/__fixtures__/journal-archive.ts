/**
 * A signed archive for the delivery tests, recorded through the real Recorder into a real
 * file-system sink: two custodians (WhatsApp and Signal streams), a client chat and a group
 * over two UTC days, messages with PDF and PNG attachments, edits, a reaction, a deletion, a
 * membership change and an account-level policy record. `messages` adds plain messages to
 * make the archive as long as a test needs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type CaptureInput, type ConversationRef, type Ed25519NoteKey, type Party, type RawInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

export const alice: Party = { id: 'alice@firm.example', name: 'Alice Moreau' };
export const bob: Party = { id: '+15550100@s.whatsapp.net', name: 'Bob Chén' };
export const carol: Party = { id: '+15550111', name: 'Carol Diaz' };
export const client: ConversationRef = { id: '+15550100@s.whatsapp.net', type: 'direct', title: 'Bob Chén' };
export const desk: ConversationRef = { id: '120363@g.us', type: 'group', title: 'Rates desk' };
export const signalChat: ConversationRef = { id: '+15550111', type: 'direct', title: 'Carol Diaz' };

export const PDF = new TextEncoder().encode('%PDF-1.4\n% term sheet\n%%EOF\n');
export const PNG = Uint8Array.from(Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000' + '1f15c4890000000d4944415478da63f8cfc0f01f0005000201' + 'a5f6453e0000000049454e44ae426082', 'hex'));

const created: string[] = [];

/** A fresh temporary directory, removed by {@link removeTempDirs}. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Removes every directory {@link tempDir} and {@link createJournalArchive} made (call in afterAll). */
export async function removeTempDirs(): Promise<void> {
  for (const dir of created.splice(0)) await rm(dir, { recursive: true, force: true });
}

export interface JournalArchive {
  readonly dir: string;
  readonly key: Ed25519NoteKey;
  readonly streams: readonly string[];
  /** Records per stream. */
  readonly counts: Readonly<Record<string, number>>;
}

/** The archive; `extra` plain messages are added to the WhatsApp client chat (on day 2). */
export async function createJournalArchive(extra = 0): Promise<JournalArchive> {
  const dir = await tempDir('offchannel-delivery-test-');
  const key = generateEd25519NoteKey('delivery-test.offchannel.example');
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, clock: () => new Date(Date.UTC(2026, 10, 22, 12)), checkpoints: { signer: key, everyRecords: 10 } });
  const whatsapp = recorder.writer({ channel: 'whatsapp', account: 'alice', source: { package: '@offchannel/delivery-test', version: '0.0.0' } });
  const signal = recorder.writer({ channel: 'signal', account: 'alice', source: { package: '@offchannel/delivery-test', version: '0.0.0' } });
  const t = (day: number, minute: number): string => new Date(Date.UTC(2026, 10, 19 + day, 9, minute, 0)).toISOString();
  const raw = (value: unknown): RawInput => ({ bytes: new TextEncoder().encode(JSON.stringify(value)), format: 'test.json' });
  const message = (conversation: ConversationRef, sender: Party, id: string, at: string, extraFields: Partial<CaptureInput>): CaptureInput => ({
    kind: 'message',
    key: `message:${id}`,
    sentAt: at,
    conversation,
    sender,
    direction: sender === alice ? 'outbound' : 'inbound',
    native: { id, chat: conversation.id },
    raw: raw({ id }),
    ...extraFields,
  });
  const wa: CaptureInput[] = [
    { kind: 'policy', key: 'policy:1', system: { event: 'policy-in-force', fields: { version: '1' } } },
    message(client, bob, 'm1', t(1, 1), { text: 'Morning Alice — can you send the term sheet?' }),
    message(client, alice, 'm2', t(1, 2), { text: 'Attached, indicative only.', attachments: [{ bytes: PDF, mime: 'application/pdf', name: 'term sheet (5y).pdf' }, { bytes: PNG, mime: 'image/png', name: 'chart.png' }] }),
    { kind: 'reaction', key: 'reaction:m2:bob', sentAt: t(1, 3), conversation: client, sender: bob, direction: 'inbound', target: { id: 'm2', chat: client.id }, reaction: { value: '👍', action: 'add' } },
    message(client, bob, 'm3', t(1, 4), { text: 'Could you do 4.15% fixed?' }),
    { kind: 'edit', key: 'edit:m3:1', sentAt: t(1, 5), conversation: client, sender: bob, direction: 'inbound', native: { id: 'm3-e1', chat: client.id }, target: { id: 'm3', chat: client.id }, text: 'Could you do 4.10% fixed?' },
    { kind: 'membership', key: 'membership:desk:add', sentAt: t(1, 6), conversation: desk, sender: alice, direction: 'outbound', membership: { action: 'add', members: [bob] } },
    message(desk, alice, 'g1', t(1, 7), { text: 'Desk: client asks 4.10% on the 5y.' }),
    message(desk, bob, 'g2', t(2, 1), { text: 'Approved at 4.12%.' }),
    { kind: 'delete', key: 'delete:g2', sentAt: t(2, 2), conversation: desk, sender: bob, direction: 'inbound', target: { id: 'g2', chat: desk.id }, deletion: { scope: 'everyone' } },
    message(client, alice, 'm4', t(2, 3), { text: 'We can do 4.12%.', replyTo: { id: 'm3', chat: client.id } }),
  ];
  for (let index = 0; index < extra; index++) wa.push(message(client, index % 2 === 0 ? bob : alice, `x${index}`, t(2, 10 + (index % 40)), { text: `Follow-up ${index}: settlement details.` }));
  const sig: CaptureInput[] = [
    message(signalChat, carol, 's1', t(1, 20), { text: 'Carol here — numbers by noon?' }),
    message(signalChat, alice, 's2', t(1, 21), { text: 'Sending now.', attachments: [{ bytes: PDF, mime: 'application/pdf', name: 'numbers.pdf' }] }),
    { kind: 'edit', key: 'edit:s2:1', sentAt: t(1, 22), conversation: signalChat, sender: alice, direction: 'outbound', native: { id: 's2-e1', chat: signalChat.id }, target: { id: 's2', chat: signalChat.id }, text: 'Sending now (v2).' },
  ];
  for (const input of wa) await whatsapp.capture(input);
  for (const input of sig) await signal.capture(input);
  await recorder.close();
  await sink.close();
  return { dir, key, streams: [signal.stream, whatsapp.stream], counts: { [whatsapp.stream]: wa.length, [signal.stream]: sig.length } };
}
