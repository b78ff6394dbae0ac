/**
 * A generated, deterministic business exchange for `offchannel demo`: a trader (the custodian,
 * alice@firm.example) with a client, her desk group and a personal contact — including an
 * edit, a delete for everyone, a delete for me, a reaction, a reply, a membership change and a
 * PDF attachment. Every event carries a synthetic "platform" payload as its raw evidence.
 * Same content and keys every run, so running the demo twice records nothing new.
 */
import type { CaptureInput, ConversationRef, Party } from '@offchannel/core';

export const DEMO_CHANNEL = 'demo';
export const DEMO_ACCOUNT = 'alice@firm.example';
export const DEMO_RAW_FORMAT = 'offchannel.demo-event.json';

const alice: Party = { id: 'alice@firm.example', name: 'Alice Moreau' };
const bob: Party = { id: 'bob.chen@client.example', name: 'Bob Chen', aliases: ['+15550100'] };
const dan: Party = { id: 'dan@firm.example', name: 'Dan Okafor' };
const erin: Party = { id: 'erin@firm.example', name: 'Erin Walsh (Compliance)' };
const frank: Party = { id: '+15550199', name: 'Frank' };

const clientChat: ConversationRef = { id: 'dm:bob.chen@client.example', type: 'direct', title: 'Bob Chen' };
const deskGroup: ConversationRef = { id: 'group:rates-desk', type: 'group', title: 'Rates desk' };
const personalChat: ConversationRef = { id: 'dm:+15550199', type: 'direct', title: 'Frank' };

const start = Date.UTC(2026, 10, 20, 8, 30, 0);
const encoder = new TextEncoder();

/** The demo's events, in delivery order. */
export function demoExchange(): CaptureInput[] {
  let minute = 0;
  const at = (): string => new Date(start + minute++ * 60_000 + 7_000).toISOString();
  const events: CaptureInput[] = [];
  const add = (event: Omit<CaptureInput, 'raw'>): void => {
    const sentAt = event.sentAt ?? at();
    const withTime = { ...event, sentAt };
    const { attachments: _attachments, ...rest } = withTime;
    events.push({ ...withTime, raw: { bytes: encoder.encode(JSON.stringify({ platform: 'demo', event: rest })), format: DEMO_RAW_FORMAT } });
  };
  const message = (conversation: ConversationRef, sender: Party, id: string, text: string, extra: Partial<CaptureInput> = {}): void => {
    add({ kind: 'message', key: `message:${id}`, conversation, sender, direction: sender === alice ? 'outbound' : 'inbound', native: { id, chat: conversation.id }, text, ...extra });
  };

  add({ kind: 'policy', key: 'policy:retention', system: { event: 'retention', fields: { rule: 'SEC 17a-4(b)(4)', years: '3' } } });

  // A client negotiation, with a term sheet, a reaction and an edit.
  message(clientChat, bob, 'c1', 'Morning Alice — can you send the updated term sheet for the 5y USD swap?');
  message(clientChat, alice, 'c2', 'Sure, attached. Indicative only, subject to final approval.', { attachments: [{ bytes: termSheetPdf(), mime: 'application/pdf', name: 'term-sheet-5y-usd-irs.pdf' }] });
  add({ kind: 'reaction', key: 'reaction:c2:bob:add', conversation: clientChat, sender: bob, direction: 'inbound', target: { id: 'c2', chat: clientChat.id }, reaction: { value: '👍', action: 'add' } });
  message(clientChat, bob, 'c3', 'Could you do 4.15% fixed instead of 4.25%?');
  add({ kind: 'edit', key: 'edit:c3:1', conversation: clientChat, sender: bob, direction: 'inbound', native: { id: 'c3-edit-1', chat: clientChat.id }, target: { id: 'c3', chat: clientChat.id }, text: 'Could you do 4.10% fixed instead of 4.25%?' });
  message(clientChat, alice, 'c4', 'Let me check with the desk and come back to you.');

  // The desk group: a new member, a reply, and a message its sender deleted for everyone.
  add({ kind: 'membership', key: 'membership:g0', conversation: deskGroup, sender: dan, direction: 'inbound', membership: { action: 'add', members: [erin] } });
  message(deskGroup, dan, 'g1', 'Bob is asking for 4.10 on the 5y. Thoughts?');
  message(deskGroup, alice, 'g2', 'He would go ahead at 4.12 — I can hold that until noon.', { replyTo: { id: 'g1', chat: deskGroup.id } });
  message(deskGroup, dan, 'g3', 'Take this one off the record, call me on my personal phone.');
  add({ kind: 'delete', key: 'delete:g3', conversation: deskGroup, sender: dan, direction: 'inbound', target: { id: 'g3', chat: deskGroup.id }, deletion: { scope: 'everyone' } });
  message(deskGroup, erin, 'g4', 'Reminder: client negotiations stay on recorded channels. Thank you.');

  // A personal chat; the custodian hides her own reply on her devices.
  message(personalChat, frank, 'p1', 'Dinner on Friday?');
  message(personalChat, alice, 'p2', 'Sounds good, 8pm?');
  add({ kind: 'delete', key: 'delete:p2:me', conversation: personalChat, sender: alice, direction: 'outbound', target: { id: 'p2', chat: personalChat.id }, deletion: { scope: 'me' } });

  return events;
}

/** A small, valid one-page PDF, byte-identical on every run. */
export function termSheetPdf(): Uint8Array {
  const text = [
    'BT /F1 16 Tf 72 760 Td (Indicative term sheet - 5y USD interest rate swap) Tj ET',
    'BT /F1 11 Tf 72 730 Td (Notional: USD 50,000,000   Fixed rate: 4.25%   Float: SOFR) Tj ET',
    'BT /F1 11 Tf 72 712 Td (Generated by offchannel demo. Not an offer.) Tj ET',
  ].join('\n');
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${text.length} >>\nstream\n${text}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let body = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((object, index) => {
    offsets.push(body.length);
    body += `${index + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xref = body.length;
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((offset) => `${String(offset).padStart(10, '0')} 00000 n \n`).join('')}`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return encoder.encode(body);
}
