/**
 * How archive records become a transcript — the one place every export format takes its
 * reading of the archive from. Auditors: this file is the whole interpretation.
 *
 * - A `message` record is an event. Later `edit`, `delete`, `reaction` and `receipt` records
 *   whose `target` names it (same stream; exact native ref, else the same id in the same
 *   conversation) are folded into it in time order. Nothing is dropped: the original text stays
 *   the event's `text`, each edit keeps the text it replaced, a deleted message keeps its text.
 * - An edit with only attachments adds them to the message (`addedBy` names the edit). One marked
 *   `meta.followUp: "attachment"` is the outcome of a download the message announced with an
 *   `unavailable` placeholder of reason `download-pending` (WhatsApp): it takes the place of the
 *   first such placeholder still open, so the reader sees the file (or why it could not be
 *   archived) once, where the message had it. The message record itself keeps the placeholder.
 * - A modifier whose target is not in the archive (it predates capture) is its own `notice`.
 * - `membership` records: `create`, `join`, `add` → `join`; `leave`, `remove` → `leave`;
 *   anything else (title, description, settings, promote, demote, other) → `notice`.
 * - `undecryptable`, `unsupported`, `gap`, `system`, `policy` → `notice` with a description.
 */
import type { ArchiveRecord, Party, Sink } from '@offchannel/core';
import type { ArchiveIndex, IndexedRecord } from '../index-db/archive-index.ts';
import { readVerifiedBlob } from '../verified-blob.ts';
import { attachmentFileName, displayName, exportedType } from './attachment-file-name.ts';
import type { Provenance, TranscriptAttachment, TranscriptEvent } from './transcript-event.ts';

const decoder = new TextDecoder('utf-8', { fatal: false });
/** The placeholder reason of an attachment whose download outcome follows as its own record. */
const PENDING = 'download-pending';

/** The events of one conversation (index key), in time order, with their modifiers folded in. */
export async function* transcriptEvents(index: ArchiveIndex, sink: Sink, conversation: string, range: { readonly from?: string; readonly to?: string } = {}): AsyncGenerator<TranscriptEvent> {
  yield* transcriptEventsOf(index, sink, conversation, index.events(conversation, range.from, range.to));
}

/** {@link transcriptEvents} of chosen index entries of the conversation (e.g. `touchedEvents`), in their order. */
export async function* transcriptEventsOf(index: ArchiveIndex, sink: Sink, conversation: string, entries: Iterable<IndexedRecord>): AsyncGenerator<TranscriptEvent> {
  for (const entry of entries) {
    yield await toEvent(index, sink, conversation, entry);
  }
}

async function toEvent(index: ArchiveIndex, sink: Sink, conversation: string, entry: IndexedRecord): Promise<TranscriptEvent> {
  const { record } = entry;
  const base = {
    ...provenance(entry),
    at: timeOf(record),
    sender: record.sender,
    direction: record.direction,
    attachments: (record.attachments ?? []).map(exportAttachment),
    forwarded: record.forwarded === true,
  };
  const none = { edits: [], deletions: [], reactions: [], reactionState: [], receipts: [], parent: undefined, parentPreview: undefined, replyToMissing: undefined };
  if (record.kind === 'message') {
    const text = await textOf(sink, record);
    const modifiers = index.modifiersOf(entry);
    const edits: TranscriptEvent['edits'][number][] = [];
    const attachments = [...base.attachments];
    let current = text;
    for (const modifier of modifiers.filter((item) => item.record.kind === 'edit')) {
      const followUp = modifier.record.meta?.['followUp'] === 'attachment';
      for (const added of modifier.record.attachments ?? []) {
        const attachment = { ...exportAttachment(added), addedBy: `${modifier.stream}/${modifier.seq}` };
        const pending = followUp ? attachments.findIndex((item) => item.status === 'unavailable' && item.reason === PENDING && item.addedBy === undefined) : -1;
        if (pending >= 0) attachments[pending] = attachment;
        else attachments.push(attachment);
      }
      if (modifier.record.text === undefined && modifier.record.textBlob === undefined) continue; // attachments only: text unchanged
      const next = await textOf(sink, modifier.record);
      edits.push({ ...provenance(modifier), by: modifier.record.sender, at: timeOf(modifier.record), previous: current, text: next });
      current = next;
    }
    const reactions = modifiers
      .filter((item) => item.record.kind === 'reaction' && item.record.reaction)
      .map((item) => ({ ...provenance(item), by: item.record.sender, at: timeOf(item.record), value: item.record.reaction?.value ?? '', action: item.record.reaction?.action ?? 'add' }));
    const parentSeq = record.replyTo ? index.resolve(entry.stream, conversation, record.replyTo) : undefined;
    const parent = parentSeq === undefined ? undefined : index.get(entry.stream, parentSeq)?.record;
    return {
      ...base,
      attachments,
      parentPreview: parent ? `${parent.sender ? partyName(parent.sender) : 'unknown'}: ${preview(parent.text ?? (parent.textBlob ? '[long text]' : '[no text]'))}` : undefined,
      type: 'message',
      text,
      currentText: current,
      parent: parentSeq === undefined ? undefined : `${entry.stream}/${parentSeq}`,
      replyToMissing: record.replyTo && parentSeq === undefined ? record.replyTo : undefined,
      edits,
      deletions: modifiers
        .filter((item) => item.record.kind === 'delete')
        .map((item) => ({ ...provenance(item), by: item.record.sender, at: timeOf(item.record), scope: item.record.deletion?.scope ?? 'everyone', admin: item.record.deletion?.admin === true })),
      reactions,
      reactionState: reactionState(reactions),
      receipts: modifiers
        .filter((item) => item.record.kind === 'receipt' && item.record.receipt)
        .map((item) => ({ ...provenance(item), by: item.record.sender, at: timeOf(item.record), status: item.record.receipt?.status ?? 'delivered' })),
      notice: undefined,
    };
  }
  if (record.kind === 'membership' && record.membership) {
    const action = record.membership.action;
    const type = action === 'create' || action === 'join' || action === 'add' ? 'join' : action === 'leave' || action === 'remove' ? 'leave' : 'notice';
    return { ...base, ...none, type, text: undefined, currentText: undefined, notice: describe(record) };
  }
  const text = record.kind === 'edit' ? await textOf(sink, record) : undefined;
  return { ...base, ...none, type: 'notice', text, currentText: text, notice: describe(record) };
}

/** Plain-language description of a non-message record (names and codes only). */
export function describe(record: ArchiveRecord): string {
  const who = record.sender ? partyName(record.sender) : 'someone';
  const members = record.membership?.members?.map(partyName).join(', ');
  switch (record.kind) {
    case 'membership': {
      const membership = record.membership;
      if (!membership) return 'membership change';
      const value = membership.value === undefined ? '' : ` "${membership.value}"`;
      switch (membership.action) {
        case 'create':
          return `${who} created the conversation${value}`;
        case 'join':
          return `${members ?? who} joined`;
        case 'leave':
          return `${members ?? who} left`;
        case 'add':
          return `${who} added ${members ?? 'members'}`;
        case 'remove':
          return `${who} removed ${members ?? 'members'}`;
        case 'title':
          return `${who} changed the title to${value || ' (none)'}`;
        case 'description':
          return `${who} changed the description${value ? ` to${value}` : ''}`;
        default:
          return `${who}: ${membership.action}${members ? ` ${members}` : ''}${value}`;
      }
    }
    case 'edit':
      return `${who} edited a message that is not in this archive (${targetText(record)})`;
    case 'delete':
      return `${who} deleted a message that is not in this archive (${targetText(record)}) — ${record.deletion?.scope === 'me' ? 'for themselves' : 'for everyone'}${record.deletion?.admin === true ? ', as admin' : ''}`;
    case 'reaction':
      return `${who} ${record.reaction?.action === 'remove' ? 'removed the reaction' : 'reacted'} ${record.reaction?.value ?? ''} to a message that is not in this archive (${targetText(record)})`;
    case 'receipt':
      return `${who}: ${record.receipt?.status ?? 'receipt'} for a message that is not in this archive (${targetText(record)})`;
    case 'undecryptable':
      return `A message arrived that could not be decrypted (${record.problem?.reason ?? 'unknown reason'}); its ciphertext is preserved (blob ${record.raw?.sha256 ?? 'none'})`;
    case 'unsupported':
      return `An event arrived that the connector could not interpret (${record.problem?.reason ?? 'unknown reason'}); its raw bytes are preserved (blob ${record.raw?.sha256 ?? 'none'})`;
    case 'gap': {
      const gap = record.gap;
      const span = gap?.from !== undefined || gap?.to !== undefined ? ` between ${gap.from ?? '?'} and ${gap.to ?? '?'}` : '';
      return `Messages may be missing${span}${gap?.missing === undefined ? '' : ` (${gap.missing})`}: ${gap?.reason ?? 'unknown reason'}`;
    }
    case 'system':
    case 'policy': {
      const fields = Object.entries(record.system?.fields ?? {}).map(([name, value]) => `${name}=${value}`);
      return `${record.kind === 'policy' ? 'Capture policy' : 'Account event'}: ${record.system?.event ?? 'unknown'}${fields.length > 0 ? ` (${fields.join(', ')})` : ''}`;
    }
    default:
      return `${record.kind} record`;
  }
}

function preview(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 80 ? `${line.slice(0, 80)}…` : line;
}

export function partyName(party: Party): string {
  return party.name ?? party.id;
}

function targetText(record: ArchiveRecord): string {
  return `id ${record.target?.id ?? 'unknown'}`;
}

function provenance(entry: IndexedRecord): Provenance {
  return { id: `${entry.stream}/${entry.seq}`, stream: entry.stream, seq: entry.seq, hash: entry.hash, record: entry.record };
}

function timeOf(record: ArchiveRecord): string {
  return record.sentAt ?? record.capturedAt;
}

async function textOf(sink: Sink, record: ArchiveRecord): Promise<string | undefined> {
  if (record.text !== undefined) return record.text;
  if (!record.textBlob) return undefined;
  // Verification ran first: a blob missing or changed now means the archive changed under us.
  return decoder.decode(await readVerifiedBlob(sink, record.textBlob.sha256, record.textBlob.size));
}

function exportAttachment(attachment: NonNullable<ArchiveRecord['attachments']>[number]): TranscriptAttachment {
  const label = displayName(attachment.name ?? attachment.mime ?? 'attachment');
  if (attachment.status === 'stored') {
    return { status: 'stored', sha256: attachment.sha256, size: attachment.size, mime: attachment.mime, ...(attachment.name === undefined ? {} : { name: attachment.name }), label, fileName: attachmentFileName(attachment.sha256, attachment.mime), fileType: exportedType(attachment.mime) };
  }
  return { status: 'unavailable', label, reason: attachment.reason, ...(attachment.mime === undefined ? {} : { mime: attachment.mime }), ...(attachment.name === undefined ? {} : { name: attachment.name }), ...(attachment.size === undefined ? {} : { size: attachment.size }), ...(attachment.sha256 === undefined ? {} : { sha256: attachment.sha256 }) };
}

function reactionState(reactions: readonly { readonly by: Party | undefined; readonly value: string; readonly action: 'add' | 'remove' }[]): TranscriptEvent['reactionState'] {
  const state = new Map<string, Map<string, Party>>();
  for (const reaction of reactions) {
    const who = reaction.by ?? { id: 'unknown' };
    const people = state.get(reaction.value) ?? new Map<string, Party>();
    if (reaction.action === 'add') people.set(who.id, who);
    else people.delete(who.id);
    state.set(reaction.value, people);
  }
  return [...state].filter(([, people]) => people.size > 0).map(([value, people]) => ({ value, participants: [...people.values()] }));
}
