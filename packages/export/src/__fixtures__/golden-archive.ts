/**
 * A deterministic signed archive for the byte-identity test (golden-export.test.ts): recorded
 * through the real Recorder with a fixed clock and a signing key from a fixed seed, so the same
 * code gives the same archive — and the same export — on every run. Two streams; a direct chat
 * with attachments (PDF, PNG, an HTML file exported as `.bin`), edits (text, attachment-only, a
 * WhatsApp follow-up replacing a download-pending placeholder), reactions added and removed,
 * receipts, a reply, a deletion and a long text stored as a blob; a group with membership
 * changes, an undecryptable message and an edit whose original predates capture; an
 * account-level policy record; and a busy conversation of more than 10,000 events, so its RSMF
 * export is split into two slices.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type CaptureInput, type ConversationRef, type Ed25519NoteKey, type Party, Recorder, ed25519KeyFromSeed } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { fixtureClock, tinyPng } from './trade-archive.ts';

export interface GoldenArchive {
  readonly dir: string;
  readonly key: Ed25519NoteKey;
}

/** Events in the busy conversation: more than one RSMF slice (10,000 events). */
export const BUSY_MESSAGES = 10_150;

const alice: Party = { id: 'alice@firm.example', name: 'Alice Moreau' };
const bob: Party = { id: '+15550100@s.whatsapp.net', name: 'Bob Chén', aliases: ['1203@lid'] };
const dan: Party = { id: 'dan@firm.example', name: 'Dan Okafor' };
const erin: Party = { id: 'erin@firm.example', name: 'Erin Walsh' };
const client: ConversationRef = { id: '+15550100@s.whatsapp.net', type: 'direct', title: 'Bob Chén' };
const desk: ConversationRef = { id: '120363@g.us', type: 'group', title: 'Rates desk' };
const busy: ConversationRef = { id: 'busy@g.us', type: 'group', title: 'Flow ⚡ chat' };
const signalChat: ConversationRef = { id: 'signal-group-1', type: 'group' };

const t = (minute: number): string => new Date(Date.UTC(2026, 10, 20, 9, 0, 0) + minute * 60_000).toISOString();

function whatsappInputs(): CaptureInput[] {
  const png = tinyPng();
  const pdf = new TextEncoder().encode('%PDF-1.4\n% test term sheet\n%%EOF\n');
  const html = new TextEncoder().encode('<html><script>alert(1)</script></html>');
  const message = (conversation: ConversationRef, sender: Party, id: string, minute: number, extra: Partial<CaptureInput>): CaptureInput => ({
    kind: 'message',
    key: `message:${id}`,
    sentAt: t(minute),
    conversation,
    sender,
    direction: sender === alice ? 'outbound' : 'inbound',
    native: { id, chat: conversation.id },
    ...extra,
  });
  const modifier = (kind: 'edit' | 'reaction' | 'delete' | 'receipt', key: string, conversation: ConversationRef, sender: Party, target: string, minute: number, extra: Partial<CaptureInput>): CaptureInput => ({
    kind,
    key,
    sentAt: t(minute),
    conversation,
    sender,
    direction: sender === alice ? 'outbound' : 'inbound',
    target: { id: target, chat: conversation.id },
    ...extra,
  });
  const inputs: CaptureInput[] = [
    { kind: 'policy', key: 'policy:1', system: { event: 'policy-in-force', fields: { version: '1' } } },
    message(client, bob, 'm1', 1, { text: 'Morning Alice — can you send the term sheet?' }),
    message(client, alice, 'm2', 2, { text: 'Attached, indicative only.', attachments: [{ bytes: pdf, mime: 'application/pdf', name: 'term sheet (5y).pdf' }, { bytes: png, mime: 'image/png', name: 'chart.png' }] }),
    modifier('reaction', 'reaction:m2:bob:1', client, bob, 'm2', 3, { reaction: { value: '👍', action: 'add' } }),
    message(client, bob, 'm3', 4, { text: 'Could you do 4.15% fixed?' }),
    modifier('edit', 'edit:m3:1', client, bob, 'm3', 5, { native: { id: 'm3-e1', chat: client.id }, text: 'Could you do 4.10% fixed?' }),
    modifier('reaction', 'reaction:m2:bob:2', client, bob, 'm2', 6, { reaction: { value: '👍', action: 'remove' } }),
    modifier('receipt', 'receipt:m2:bob', client, bob, 'm2', 6, { receipt: { status: 'read' } }),
    message(client, alice, 'm4', 8, { text: 'Let me check with the desk.\nBack in 5.', replyTo: { id: 'm3', chat: client.id } }),
    message(client, bob, 'm5', 9, { text: 'Call me on my personal phone instead.' }),
    modifier('delete', 'delete:m5', client, bob, 'm5', 10, { deletion: { scope: 'everyone' } }),
    message(client, bob, 'm6', 11, { text: 'Photo coming', attachments: [{ status: 'unavailable', reason: 'download-pending', mime: 'image/png' }] }),
    modifier('edit', 'edit:m6:media', client, bob, 'm6', 12, { native: { id: 'm6-media', chat: client.id }, attachments: [{ bytes: png, mime: 'image/png', name: 'photo.png' }], meta: { followUp: 'attachment' } }),
    message(client, bob, 'm7', 13, { text: 'invoice', attachments: [{ bytes: html, mime: 'text/html', name: 'invoice\u202Egpj.html' }] }),
    message(client, alice, 'm8', 14, { text: `${'Term sheet clause. '.repeat(2000)}END` }),
    message(client, bob, 'm9', 15, { text: 'view once', attachments: [{ status: 'unavailable', reason: 'view-once', name: 'secret.jpg', mime: 'image/jpeg' }] }),
    { kind: 'membership', key: 'membership:g0', sentAt: t(20), conversation: desk, sender: dan, direction: 'inbound', membership: { action: 'add', members: [erin, alice] } },
    { kind: 'membership', key: 'membership:g1', sentAt: t(21), conversation: desk, sender: dan, direction: 'inbound', membership: { action: 'title', value: 'Rates desk' } },
    message(desk, dan, 'g1', 22, { text: 'Bob wants 4.05 on the 5y.' }),
    { kind: 'undecryptable', key: 'undecryptable:g2', sentAt: t(23), conversation: desk, sender: erin, direction: 'inbound', native: { id: 'g2', chat: desk.id }, problem: { reason: 'no-session', detail: 'no session with sender device' }, raw: { bytes: new TextEncoder().encode('{"ciphertext":"AAEC"}'), format: 'test.json' } },
    modifier('edit', 'edit:old:1', desk, dan, 'old', 24, { native: { id: 'old-e1', chat: desk.id }, text: 'Corrected: 4.07' }),
    modifier('reaction', 'reaction:old:1', desk, erin, 'old', 24, { reaction: { value: '❤️', action: 'add' } }),
    message(desk, alice, 'g3', 25, { text: 'Noted, holding 4.07 until noon.', forwarded: true }),
    { kind: 'membership', key: 'membership:g4', sentAt: t(26), conversation: desk, sender: erin, direction: 'inbound', membership: { action: 'leave' } },
  ];
  // The busy conversation: messages with an edit, a reaction or a deletion of an earlier one now and then.
  const people = [alice, bob, dan, erin];
  for (let index = 0; index < BUSY_MESSAGES; index++) {
    const sender = people[index % people.length] as Party;
    const minute = 30 + index;
    inputs.push(message(busy, sender, `b${index}`, minute, { text: `Level ${index}: ${(4 + (index % 97) / 100).toFixed(2)} — size ${index % 50}m` }));
    if (index % 13 === 5) inputs.push(modifier('edit', `edit:b${index - 3}`, busy, people[(index - 3) % people.length] as Party, `b${index - 3}`, minute, { native: { id: `b${index - 3}-e`, chat: busy.id }, text: `Level ${index - 3} corrected` }));
    if (index % 17 === 9) inputs.push(modifier('reaction', `reaction:b${index - 1}`, busy, sender, `b${index - 1}`, minute, { reaction: { value: '👍', action: 'add' } }));
    if (index % 101 === 50) inputs.push(modifier('delete', `delete:b${index - 2}`, busy, people[(index - 2) % people.length] as Party, `b${index - 2}`, minute, { deletion: { scope: 'everyone' } }));
  }
  return inputs;
}

function signalInputs(): CaptureInput[] {
  return [
    { kind: 'message', key: 'message:s1', sentAt: t(3), conversation: signalChat, sender: erin, direction: 'inbound', native: { id: 's1' }, text: 'Signal hello' },
    { kind: 'edit', key: 'edit:s1', sentAt: t(4), conversation: signalChat, sender: erin, direction: 'inbound', native: { id: 's1-e' }, target: { id: 's1' }, text: 'Signal hello (edited)' },
    { kind: 'message', key: 'message:s2', sentAt: t(5), conversation: signalChat, sender: alice, direction: 'outbound', native: { id: 's2' }, text: 'Hi Erin', replyTo: { id: 's1' } },
    { kind: 'gap', key: 'gap:1', sentAt: t(6), gap: { reason: 'history-unavailable', from: '1041', to: '1077', missing: 35 } },
  ];
}

/** Records the archive into a new temporary directory (the caller removes `dir`). */
export async function createGoldenArchive(): Promise<GoldenArchive> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-export-golden-'));
  const key = ed25519KeyFromSeed('golden.offchannel.example', new Uint8Array(32).fill(7));
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, clock: fixtureClock, checkpoints: { signer: key, everyRecords: 4000, everyMs: 3_600_000 } });
  const source = { package: '@offchannel/export-test', version: '0.0.0' };
  const whatsapp = recorder.writer({ channel: 'whatsapp', account: 'alice', source });
  const signal = recorder.writer({ channel: 'signal', account: 'alice', source });
  try {
    for (const input of whatsappInputs()) await whatsapp.capture(input);
    for (const input of signalInputs()) await signal.capture(input);
    await recorder.close();
  } finally {
    await sink.close();
  }
  return { dir, key };
}
