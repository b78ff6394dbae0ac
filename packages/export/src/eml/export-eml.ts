/**
 * EML export for e-mail archives (Global Relay, Smarsh, Proofpoint-style ingestion).
 * - `message` mode: one `.eml` per record — each message, and each edit, deletion, reaction
 *   and receipt as its own message threaded (`In-Reply-To`/`References`) under the original;
 *   replies thread under the message they answer.
 * - `day` mode: one `.eml` per conversation per UTC day: a plain-text and an HTML transcript
 *   with that day's attachments, threaded under the previous day's.
 * `Message-ID`s are stable: derived from the stream, kind and the platform's native id (or the
 * idempotency key), so exporting twice gives the same ids. Exact platform ids travel in
 * `X-Offchannel-*` headers; addresses that are not e-mail addresses become
 * `…@<channel>.offchannel.invalid` mailboxes.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { type ArchiveRecord, type Party, canonicalize } from '@offchannel/core';
import { channelOf, conversationFileName, conversationParties, type ExportJob } from '../export-job.ts';
import { writeFileDurably } from '../written-file.ts';
import { readVerifiedBlob } from '../verified-blob.ts';
import { htmlEvent, htmlFoot, htmlHead } from '../html/html-transcript.ts';
import type { ConversationSummary, IndexedRecord } from '../index-db/archive-index.ts';
import { sortableTime } from '../index-db/sortable-time.ts';
import { type HeaderList, type MimePart, buildMimeMessage, encodeWords, formatAddress, mailboxFor, rfc5322Date } from '../mime/mime-message.ts';
import type { Provenance, TranscriptEvent } from '../model/transcript-event.ts';
import { partyName, transcriptEvents, transcriptEventsOf } from '../model/transcript-events.ts';
import { plainEvent } from '../text/plain-transcript.ts';

export async function exportEml(job: ExportJob): Promise<number> {
  const root = path.join(job.out, 'eml');
  let files = 0;
  // Only what is new (`emlFromSeq`): a conversation nothing new touches is not even read.
  const touchedConversations = new Map<string, Set<string>>();
  const untouched = (conversation: ConversationSummary): boolean => {
    const fromSeq = job.emlFromSeq.get(conversation.stream);
    if (fromSeq === undefined) return false;
    let keys = touchedConversations.get(conversation.stream);
    if (!keys) touchedConversations.set(conversation.stream, (keys = job.index.touchedConversations(conversation.stream, fromSeq)));
    return !keys.has(conversation.key) || touched(job, conversation).next().done === true;
  };
  for (const conversation of job.conversations) {
    if (untouched(conversation)) continue;
    const dir = path.join(root, conversationFileName(conversation));
    await mkdir(dir, { recursive: true });
    // A kept index keeps each conversation's parties (index-db/kept-index.ts): not read again.
    const whole = job.range.from === undefined && job.range.to === undefined;
    const parties = (whole ? job.index.keptParties(conversation.key) : undefined) ?? conversationParties(job, conversation);
    files += job.emlMode === 'day' ? await exportDays(job, conversation, dir, parties) : await exportMessages(job, conversation, dir, parties);
    job.progress('eml', files);
  }
  return files;
}

/**
 * With `emlFromSeq` for the conversation's stream: the index entries a record from that seq on
 * makes or changes (an index look-up, not a read of the conversation), within the time range.
 */
function* touched(job: ExportJob, conversation: ConversationSummary): Generator<IndexedRecord> {
  const fromSeq = job.emlFromSeq.get(conversation.stream) ?? 1;
  const { from = '', to = '\uffff' } = job.range;
  for (const entry of job.index.touchedEvents(conversation.stream, conversation.key, fromSeq)) {
    const at = sortableTime(entry.record.sentAt ?? entry.record.capturedAt);
    if (at >= from && at < to) yield entry;
  }
}

async function exportMessages(job: ExportJob, conversation: ConversationSummary, dir: string, parties: readonly Party[]): Promise<number> {
  let files = 0;
  const channel = channelOf(conversation.stream);
  const fromSeq = job.emlFromSeq.get(conversation.stream) ?? 1;
  const events = job.emlFromSeq.has(conversation.stream) ? transcriptEventsOf(job.index, job.sink, conversation.key, touched(job, conversation)) : transcriptEvents(job.index, job.sink, conversation.key, job.range);
  for await (const event of events) {
    const original = messageId(event.record, channel);
    const parent = event.parent ? job.index.get(event.stream, Number(event.parent.slice(event.stream.length + 1))) : undefined;
    const thread = parent ? [messageId(parent.record, channel)] : [];
    if (event.seq >= fromSeq) {
      const attachments = await attachmentParts(job, event);
      const body = Buffer.from(plainEvent(event).trimEnd() + '\n', 'utf8');
      await write(job, path.join(dir, `${String(event.seq).padStart(8, '0')}-${event.record.kind}.eml`), headersFor(job, conversation, event, event.sender, parties, original, thread, subjectFor(conversation, event)), attachments.length > 0 ? { multipart: 'mixed', parts: [textPart(body), ...attachments] } : textPart(body));
      files += 1;
    }
    const changes: (Provenance & { readonly at: string; readonly by: Party | undefined; readonly describe: string })[] = [
      ...event.edits.map((edit) => ({ ...edit, describe: `Edited message ${event.id} at ${edit.at}.\n\nPrevious text:\n${edit.previous ?? ''}\n\nNew text:\n${edit.text ?? ''}\n` })),
      ...event.deletions.map((deletion) => ({ ...deletion, describe: `Deleted message ${event.id} ${deletion.scope === 'me' ? 'for the custodian only' : 'for everyone'}${deletion.admin ? ' (as group admin)' : ''} at ${deletion.at}. The original stays archived:\n\n${event.text ?? ''}\n` })),
      ...event.reactions.map((reaction) => ({ ...reaction, describe: `${reaction.action === 'add' ? 'Reacted' : 'Removed the reaction'} ${reaction.value} to message ${event.id} at ${reaction.at}.\n` })),
      ...event.receipts.map((receipt) => ({ ...receipt, describe: `${receipt.status} receipt for message ${event.id} at ${receipt.at}.\n` })),
    ];
    for (const change of changes) {
      if (change.seq < fromSeq) continue;
      const text = Buffer.from(`${change.describe}\n(record ${change.id}, sha256 ${change.hash})\n`, 'utf8');
      const subject = `Re: ${subjectFor(conversation, event)} [${change.record.kind}]`;
      await write(job, path.join(dir, `${String(change.seq).padStart(8, '0')}-${change.record.kind}.eml`), headersFor(job, conversation, change, change.by, parties, messageId(change.record, channel), [...thread, original], subject), textPart(text));
      files += 1;
    }
  }
  return files;
}

async function exportDays(job: ExportJob, conversation: ConversationSummary, dir: string, parties: readonly Party[]): Promise<number> {
  const channel = channelOf(conversation.stream);
  let files = 0;
  let day: string | undefined;
  let events: TranscriptEvent[] = [];
  const previous: string[] = [];
  const flush = async (): Promise<void> => {
    if (day === undefined || events.length === 0) return;
    const id = dayMessageId(conversation, day, channel);
    const attachments = (await Promise.all(events.map((event) => attachmentParts(job, event)))).flat();
    const title = conversation.title ?? conversation.id ?? 'account events';
    const plain = Buffer.from(`${title} — ${day} (UTC), ${events.length} events\n\n${events.map(plainEvent).join('\n')}`, 'utf8');
    const html = Buffer.from(
      htmlHead({ title: `${title} — ${day}`, channel, stream: conversation.stream, custodian: conversation.stream, participants: parties, firstAt: events[0]?.at ?? day, lastAt: events.at(-1)?.at ?? day, verification: { ok: true, lines: job.verificationLines(conversation.stream) }, generator: job.generator }) +
        events.map((event) => htmlEvent(event, () => undefined)).join('') +
        htmlFoot(job.generator),
      'utf8',
    );
    const first = events[0];
    if (!first) return;
    const headers: [string, string][] = [
      ['From', formatAddress(mailboxFor(conversation.stream, channel), conversation.stream)],
      ['To', parties.map((party) => formatAddress(mailboxFor(party.id, channel), party.name)).join(', ') || formatAddress(mailboxFor(conversation.stream, channel))],
      ['Subject', encodeWords(`${channel}: ${title} — ${day}`)],
      ['Date', rfc5322Date(events.at(-1)?.at ?? first.at)],
      ['Message-ID', id],
      ...(previous.length > 0 ? ([['In-Reply-To', previous.at(-1) ?? ''], ['References', previous.slice(-20).join(' ')]] as [string, string][]) : []),
      ['X-Offchannel-Stream', conversation.stream],
      ['X-Offchannel-Conversation', encodeWords(conversation.id ?? '')],
      ['X-Offchannel-Records', events.map((event) => event.seq).join(' ')],
      ...checkpointHeader(job, conversation.stream),
    ];
    const alternative: MimePart = { multipart: 'alternative', parts: [textPart(plain), { contentType: 'text/html; charset=utf-8', body: html }] };
    await write(job, path.join(dir, `${day}.eml`), headers, attachments.length > 0 ? { multipart: 'mixed', parts: [alternative, ...attachments] } : alternative);
    previous.push(id);
    files += 1;
  };
  if (!job.emlFromSeq.has(conversation.stream)) {
    for await (const event of transcriptEvents(job.index, job.sink, conversation.key, job.range)) {
      const eventDay = event.at.slice(0, 10);
      if (eventDay !== day) {
        await flush();
        day = eventDay;
        events = [];
      }
      events.push(event);
    }
    await flush();
    return files;
  }
  // Only the days something new touches are rendered; the other days still thread them
  // (`previous`), from the index's list of days alone (no record read for them).
  const wanted = new Set([...touched(job, conversation)].map((entry) => (entry.record.sentAt ?? entry.record.capturedAt).slice(0, 10)));
  const { from = '', to = '\uffff' } = job.range;
  for (const eventDay of job.index.eventDays(conversation.key, from, to)) {
    if (!wanted.has(eventDay)) {
      previous.push(dayMessageId(conversation, eventDay, channel));
      continue;
    }
    day = eventDay;
    events = [];
    const start = sortableTime(`${eventDay}T00:00:00Z`);
    const end = sortableTime(new Date(Date.parse(`${eventDay}T00:00:00Z`) + 86_400_000).toISOString());
    const entries = job.index.events(conversation.key, start > from ? start : from, end < to ? end : to);
    for await (const event of transcriptEventsOf(job.index, job.sink, conversation.key, entries)) events.push(event);
    await flush();
  }
  return files;
}

function dayMessageId(conversation: ConversationSummary, day: string, channel: string): string {
  return `<${createHash('sha256').update(`day\n${conversation.key}\n${day}`).digest('hex')}@${channel}.offchannel.invalid>`;
}

function headersFor(job: ExportJob, conversation: ConversationSummary, event: Provenance & { readonly at: string }, sender: Party | undefined, parties: readonly Party[], id: string, thread: readonly string[], subject: string): HeaderList {
  const channel = channelOf(conversation.stream);
  const from = sender ?? { id: conversation.stream };
  const to = parties.filter((party) => party.id !== from.id);
  return [
    ['From', formatAddress(mailboxFor(from.id, channel), from.name)],
    ['To', to.map((party) => formatAddress(mailboxFor(party.id, channel), party.name)).join(', ') || formatAddress(mailboxFor(from.id, channel), from.name)],
    ['Subject', encodeWords(subject)],
    ['Date', rfc5322Date(event.at)],
    ['Message-ID', id],
    ...(thread.length > 0 ? ([['In-Reply-To', thread.at(-1) ?? ''], ['References', thread.join(' ')]] as [string, string][]) : []),
    ['X-Offchannel-Stream', event.stream],
    ['X-Offchannel-Seq', String(event.seq)],
    ['X-Offchannel-Record-SHA256', event.hash],
    ['X-Offchannel-Kind', event.record.kind],
    ['X-Offchannel-Conversation', encodeWords(conversation.id ?? '')],
    ['X-Offchannel-Sender-Id', encodeWords(from.id)],
    ...(event.record.direction ? ([['X-Offchannel-Direction', event.record.direction]] as [string, string][]) : []),
    ...(event.record.native ? ([['X-Offchannel-Native-Id', encodeWords(event.record.native.id)]] as [string, string][]) : []),
    ...checkpointHeader(job, event.stream, event.seq),
  ];
}

function checkpointHeader(job: ExportJob, stream: string, seq?: number): [string, string][] {
  const checkpoint = job.checkpoints.get(stream);
  if (!checkpoint) return [['X-Offchannel-Checkpoint', 'none']];
  if (seq !== undefined && seq > checkpoint.size) return [['X-Offchannel-Checkpoint', `not yet covered (newest size=${checkpoint.size})`]];
  return [['X-Offchannel-Checkpoint', `size=${checkpoint.size}; root=${checkpoint.root}; key=${checkpoint.signedBy}`]];
}

/** Stable Message-ID: hash of stream, kind and native id (or idempotency key). */
export function messageId(record: ArchiveRecord, channel: string): string {
  const identity = record.native ? canonicalize(record.native) : `key:${record.key}`;
  return `<${createHash('sha256').update(`${record.stream}\n${record.kind}\n${identity}`).digest('hex')}@${channel.replace(/[^a-z0-9-]/g, '') || 'channel'}.offchannel.invalid>`;
}

function subjectFor(conversation: ConversationSummary, event: TranscriptEvent): string {
  const title = conversation.title ?? conversation.id ?? 'account events';
  const who = event.sender ? partyName(event.sender) : 'system';
  return `${channelOf(conversation.stream)}: ${title} — ${who}${event.type === 'message' ? '' : ` [${event.record.kind}]`}`;
}

function textPart(body: Uint8Array): MimePart {
  return { contentType: 'text/plain; charset=utf-8', body };
}

async function attachmentParts(job: ExportJob, event: TranscriptEvent): Promise<MimePart[]> {
  const parts: MimePart[] = [];
  for (const attachment of event.attachments) {
    if (attachment.status !== 'stored' || !attachment.sha256 || !attachment.fileName) continue;
    // Typed and named like every export's files (attachment-file-name.ts): a mail client opens
    // `<sha256>.bin` as octet-stream, never the sender's `.html` or `.svg`.
    const bytes = await readVerifiedBlob(job.sink, attachment.sha256, attachment.size);
    parts.push({ contentType: attachment.fileType ?? 'application/octet-stream', body: bytes, disposition: { type: 'attachment', filename: attachment.fileName } });
  }
  return parts;
}

async function write(job: ExportJob, file: string, headers: HeaderList, body: MimePart): Promise<void> {
  job.written(await writeFileDurably(file, buildMimeMessage(headers, body)));
}
