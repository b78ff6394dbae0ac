/**
 * THE MAPPING: chat.db rows → capture inputs. Everything the iMessage relay archives is decided
 * in this file, top to bottom, with no I/O (attachment bytes are read by the caller and passed
 * in). The package README summarizes it for auditors.
 *
 * A row first seen (ROWID past the cursor) becomes exactly one record, keyed `row:<guid>`:
 * - `associated_message_type` 2000–2007 / 3000–3007 → `reaction` (tapback add / remove);
 * - `item_type` 1, 2, 3 → `membership` (add/remove, rename, leave/icon/background);
 * - other non-zero `item_type` (location sharing, kept audio, FaceTime) → `system`;
 * - otherwise → `message`: `text`, or when NULL or empty the decoded `attributedBody`; attachments;
 *   `replyTo` from `thread_originator_guid`; `mentions`; links and service in `meta`;
 * - a body that cannot be decoded and nothing else → `unsupported` (raw row kept);
 * - no content left because it was unsent before the relay saw it → `gap`.
 * A row seen again with changed state adds records, each with its own key:
 * - each later version in `message_summary_info.ec` → `edit` (`edit:<guid>:<part>:<version>`);
 * - each part in `rp`, or `date_retracted` → `delete`, scope everyone (`unsend:<guid>:<part>`);
 * - an outgoing direct message (not a tapback) delivered / read → `receipt` (`receipt:<guid>:<status>`);
 * - an attachment whose transfer completed after the message was recorded → `edit` carrying
 *   the attachment (`attachment:<guid>:<attachment guid>`), text unchanged;
 * - a group chat first seen → `membership` create (`chat:<chat guid>`).
 * Every record carries the row (and joined rows) as raw evidence, `imessage.chat-db-row.json`.
 */
import { OffchannelError, sha256Hex, type AttachmentInput, type CaptureInput, type ConversationRef, type MetaValue, type Party } from '@offchannel/core';
import { appleDateToIso, appleSecondsToIso } from './apple-time.ts';
import type { RowBundle, SqlRow, SqlValue } from './chat-db/chat-db.ts';
import { encodeRawRow, encodeRow, RAW_ROW_FORMAT } from './raw-row.ts';
import { parseSummaryInfo, type SummaryInfo } from './summary-info.ts';
import { decodeAttributedBody, type AttributedBody } from './typedstream/attributed-body.ts';

/** What the mapping needs besides the rows. */
export interface MapContext {
  /** The custodian's own id: sender of outgoing messages. */
  readonly self: string;
  /** Attachment content by attachment GUID, read by the caller (bytes, or an unavailable marker). */
  readonly files: ReadonlyMap<string, AttachmentInput>;
}

/** Tapback names by `associated_message_type % 1000` (2000 love … 2007 sticker). */
export const TAPBACKS = ['love', 'like', 'dislike', 'laugh', 'emphasize', 'question', 'emoji', 'sticker'] as const;

/** Idempotency keys. The message GUID is the identity of everything derived from a row. */
export const keys = {
  row: (guid: string) => `row:${guid}`,
  edit: (guid: string, part: number | string, version: number | string) => `edit:${guid}:${part}:${version}`,
  unsend: (guid: string, part: number | string) => `unsend:${guid}:${part}`,
  receipt: (guid: string, status: 'delivered' | 'read') => `receipt:${guid}:${status}`,
  attachment: (guid: string, attachmentGuid: string) => `attachment:${guid}:${attachmentGuid}`,
  chat: (chatGuid: string) => `chat:${chatGuid}`,
  /** A row whose changes could not be mapped, per state of the row (SHA-256 of its raw bytes). */
  changes: (guid: string, rawSha256: string) => `changes:${guid}:${rawSha256}`,
  paused: (from: string) => `paused:${from}`,
  generation: (previousCursor: string, at: string) => `generation:${previousCursor}:${at}`,
  deleted: (after: string, before: string) => `deleted:${after}:${before}`,
  sweep: (startedAt: string) => `sweep:${startedAt}`,
  attachmentGone: (guid: string, attachmentGuid: string) => `attachment-gone:${guid}:${attachmentGuid}`,
  /** The connector runtime's key for an event whose mapping threw (SHA-256 of its raw bytes). */
  unmappable: (rawSha256: string) => `unmappable:${rawSha256}`,
};

/**
 * What the event source observed, as the mapping gets it: every record below is built from one
 * of these and nothing else. Rows come with the chat.db rows joined to them (their raw blob);
 * the relay's own observations (a pause, a new database generation, ROWIDs that vanished, a
 * sweep's result) are recorded with their own raw blob, format {@link OBSERVATION_FORMAT}.
 */
export type ChatDbEvidence =
  /** A row read for the first time (`firstSeen`) or again by a sweep (`recovered`). `completed`: attachments finished since an earlier read recorded the row. */
  | { readonly type: 'row'; readonly bundle: RowBundle; readonly completed?: readonly string[] }
  /** A row already recorded whose change columns moved. */
  | { readonly type: 'changes'; readonly bundle: RowBundle }
  /** An attachment of a recorded row whose transfer completed. */
  | { readonly type: 'attachment'; readonly bundle: RowBundle; readonly attachment: string }
  /** A group chat seen for the first time, at `seenAt` (ISO). */
  | { readonly type: 'chat'; readonly chat: SqlRow; readonly members: readonly SqlRow[]; readonly seenAt: string }
  | { readonly type: 'observation'; readonly observation: Observation }
  /** Nothing to record (the cursor alone moves, e.g. a full sweep's marks). */
  | { readonly type: 'none' };

/** The relay's own observations; each is recorded with itself as raw evidence. */
export type Observation =
  /** The relay did not run between `from` and `to` (the Mac slept): a quick unsend may have been missed. */
  | { readonly event: 'relay-paused'; readonly from: string; readonly to: string }
  /** chat.db's ROWIDs went backwards: a replaced database; re-read, known GUIDs dedupe. */
  | { readonly event: 'chat-db-generation-changed'; readonly previousCursor: string; readonly at: string }
  /** Message ROWIDs between `after` and `before` (exclusive) were gone from chat.db when first read. */
  | { readonly event: 'rows-deleted-before-capture'; readonly after: string; readonly before: string; readonly at: string }
  /** A pending attachment's row was removed before its transfer completed. */
  | { readonly event: 'attachment-removed-before-transfer'; readonly message: string; readonly attachment: string; readonly at: string }
  /** A sweep compared chat.db with the archive (see {@link SweepReport}). */
  | ({ readonly event: 'chat-db-sweep' } & SweepReport);

/** What one sweep found: rows checked, rows missing from the archive and recovered, and what was lost. */
export interface SweepReport {
  readonly startedAt: string;
  readonly trigger: 'scheduled' | 'on-demand';
  /** Rows of chat.db up to the cursor compared with the archive. */
  readonly checked: number;
  /** Rows not in the archive, now captured (ROWIDs, first and last). */
  readonly recovered: number;
  readonly firstRecovered?: string;
  readonly lastRecovered?: string;
  /** Of those, rows whose content was already gone (unsent before any capture saw them). */
  readonly unsentBeforeCapture: number;
  /** Of those, edited rows whose earlier versions chat.db no longer holds. */
  readonly editedWithoutHistory: number;
}

/** Format name of an observation's raw blob. */
export const OBSERVATION_FORMAT = 'imessage.relay-observation.json';

/** Every record for one piece of evidence, in order. Never throws: a mapping bug becomes `unsupported` with the raw row. */
export function mapChatDbEvent(evidence: ChatDbEvidence, context: MapContext): CaptureInput[] {
  switch (evidence.type) {
    case 'row': {
      const { bundle } = evidence;
      const out = [safely(bundle, () => mapNewRow(bundle, context))];
      for (const attachment of evidence.completed ?? []) out.push(safely(bundle, () => mapAttachmentCompleted(bundle, attachment, context.files.get(attachment) ?? unavailableGuid(attachment), context)));
      return [...out, ...changesSafely(bundle, context)];
    }
    case 'changes':
      return changesSafely(evidence.bundle, context);
    case 'attachment':
      return [safely(evidence.bundle, () => mapAttachmentCompleted(evidence.bundle, evidence.attachment, context.files.get(evidence.attachment) ?? unavailableGuid(evidence.attachment), context))];
    case 'chat':
      return [mapNewChat(evidence.chat, evidence.members, new Date(evidence.seenAt))];
    case 'observation':
      return [mapObservation(evidence.observation)];
    case 'none':
      return [];
  }
}

/** An observation of the relay as a `system` or `gap` record, the observation itself as raw evidence. */
export function mapObservation(o: Observation): CaptureInput {
  const raw = { format: OBSERVATION_FORMAT, bytes: encodeObservation(o) };
  switch (o.event) {
    case 'relay-paused':
      return { kind: 'system', key: keys.paused(o.from), sentAt: o.to, raw, system: { event: o.event, fields: { from: o.from, to: o.to, seconds: String(Math.round((Date.parse(o.to) - Date.parse(o.from)) / 1000)) } } };
    case 'chat-db-generation-changed':
      return { kind: 'system', key: keys.generation(o.previousCursor, o.at), sentAt: o.at, raw, system: { event: o.event, fields: { previousCursor: o.previousCursor } } };
    case 'rows-deleted-before-capture': {
      const missing = Number(BigInt(o.before) - BigInt(o.after) - 1n);
      return { kind: 'gap', key: keys.deleted(o.after, o.before), sentAt: o.at, raw, gap: { reason: o.event, from: o.after, to: o.before, ...(Number.isSafeInteger(missing) ? { missing } : {}) } };
    }
    case 'attachment-removed-before-transfer':
      return { kind: 'gap', key: keys.attachmentGone(o.message, o.attachment), sentAt: o.at, raw, target: { id: o.message }, gap: { reason: o.event }, meta: { 'imessage.attachment': short(o.attachment) } };
    case 'chat-db-sweep': {
      const fields: Record<string, string> = { trigger: o.trigger, checked: String(o.checked), recovered: String(o.recovered), unsentBeforeCapture: String(o.unsentBeforeCapture), editedWithoutHistory: String(o.editedWithoutHistory) };
      if (o.firstRecovered !== undefined) fields['firstRecoveredRowid'] = o.firstRecovered;
      if (o.lastRecovered !== undefined) fields['lastRecoveredRowid'] = o.lastRecovered;
      return { kind: 'system', key: keys.sweep(o.startedAt), sentAt: o.startedAt, raw, system: { event: o.event, fields } };
    }
  }
}

/** An observation's raw bytes (canonical: fields in a fixed order). */
export function encodeObservation(o: Observation): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ format: OBSERVATION_FORMAT, version: 1, ...o }));
}

/** An observation back from its raw bytes. */
export function decodeObservation(bytes: Uint8Array): Observation {
  const { format, version, ...rest } = JSON.parse(new TextDecoder().decode(bytes)) as { format?: unknown; version?: unknown };
  if (format !== OBSERVATION_FORMAT || version !== 1) throw new OffchannelError('IMESSAGE_EVIDENCE_INVALID', `not an ${OBSERVATION_FORMAT} blob`);
  return rest as Observation;
}

/** A mapping bug must not lose the row: `unsupported` with the raw row, under the row's own key. */
function safely(bundle: RowBundle, map: () => CaptureInput): CaptureInput {
  try {
    return map();
  } catch (error) {
    const guid = str(bundle.message['guid']) ?? '';
    return { kind: 'unsupported', key: keys.row(guid), native: { id: guid }, problem: { reason: 'mapping-failed', detail: codeOf(error) }, raw: { format: RAW_ROW_FORMAT, bytes: encodeRawRow(bundle) } };
  }
}

/** A row's later changes; if mapping them fails, one `unsupported` per state of the row, so capture passes it. */
function changesSafely(bundle: RowBundle, context: MapContext): CaptureInput[] {
  try {
    return mapRowChanges(bundle, context);
  } catch (error) {
    const guid = str(bundle.message['guid']) ?? '';
    const raw = encodeRawRow(bundle);
    return [{ kind: 'unsupported', key: keys.changes(guid, sha256Hex(raw)), target: { id: guid }, problem: { reason: 'mapping-failed', detail: codeOf(error) }, raw: { format: RAW_ROW_FORMAT, bytes: raw } }];
  }
}

function unavailableGuid(attachment: string): AttachmentInput {
  return { status: 'unavailable', reason: 'not-read', mime: 'application/octet-stream', name: short(attachment) };
}

/** What of a row's history chat.db no longer holds: its content (unsent) or its earlier versions (edited, no version list). */
export function lostHistory(bundle: RowBundle): 'unsent' | 'edit-history' | undefined {
  const m = bundle.message;
  if (isRetracted(m) && bodyOf(m['text'], m['attributedBody']).text === undefined && bundle.attachments.length === 0) return 'unsent';
  const blob = m['message_summary_info'];
  if (isSet(m['date_edited']) && !(blob instanceof Uint8Array && blob.length > 0)) return 'edit-history';
  return undefined;
}

/** The one record for a row seen for the first time. */
export function mapNewRow(bundle: RowBundle, context: MapContext): CaptureInput {
  const m = bundle.message;
  const guid = str(m['guid']) ?? '';
  const base = { ...common(bundle, context), key: keys.row(guid), native: { id: guid } };
  const associated = int(m['associated_message_type']);
  if ((associated >= 2000 && associated <= 2007) || (associated >= 3000 && associated <= 3007)) {
    const name = TAPBACKS[associated % 1000] ?? 'unknown';
    const emoji = str(m['associated_message_emoji']);
    const target = parseAssociatedGuid(str(m['associated_message_guid']));
    return {
      ...base,
      kind: 'reaction',
      target: { id: target.guid },
      reaction: { value: name === 'emoji' && emoji ? emoji : name, action: associated < 3000 ? 'add' : 'remove' },
      meta: { ...base.meta, 'imessage.tapback': associated, ...(target.part === undefined ? {} : { 'imessage.part': target.part }) },
    };
  }
  const itemType = int(m['item_type']);
  if (itemType >= 1 && itemType <= 3) return { ...base, kind: 'membership', membership: membershipOf(itemType, int(m['group_action_type']), bundle) };
  if (itemType !== 0) return { ...base, kind: 'system', system: { event: 'imessage-item', fields: { itemType: String(itemType) } } };

  const body = bodyOf(m['text'], m['attributedBody']);
  const attachments = bundle.attachments.map((row) => context.files.get(str(row['guid']) ?? '') ?? unavailable(row, 'not-read'));
  const replyTo = str(m['thread_originator_guid']);
  const content = {
    ...(body.text === undefined ? {} : { text: body.text }),
    ...(attachments.length > 0 ? { attachments } : {}),
    ...(replyTo ? { replyTo: { id: replyTo } } : {}),
    ...(body.mentions.length > 0 ? { mentions: body.mentions } : {}),
  };
  const replyPart = str(m['thread_originator_part']);
  const meta = { ...base.meta, ...body.meta, ...(replyTo && replyPart ? { 'imessage.replyToPart': short(replyPart) } : {}) };
  if (body.text !== undefined || attachments.length > 0) return { ...base, kind: 'message', ...content, meta };
  if (body.error) return { ...base, kind: 'unsupported', problem: { reason: 'attributed-body-undecodable', detail: body.error }, meta };
  if (isRetracted(m)) return { ...base, kind: 'gap', gap: { reason: 'unsent-before-capture' }, meta };
  return { ...base, kind: 'unsupported', problem: { reason: 'no-content', detail: balloonOf(m) ?? 'empty row' }, meta };
}

/** Records for changes to a row already recorded: edits, unsends, receipts. Keys dedupe repeats. */
export function mapRowChanges(bundle: RowBundle, context: MapContext): CaptureInput[] {
  const m = bundle.message;
  const guid = str(m['guid']) ?? '';
  // Most rows have no changes: what every change record shares is built only for the first one.
  let shared: ReturnType<typeof common> & { target: { id: string } } | undefined;
  const base = () => (shared ??= { ...common(bundle, context), target: { id: guid } });
  const out: CaptureInput[] = [];
  let summary: SummaryInfo | undefined;
  const blob = m['message_summary_info'];
  if (blob instanceof Uint8Array && blob.length > 0) {
    try {
      summary = parseSummaryInfo(blob);
    } catch (error) {
      out.push({ ...base(), kind: 'unsupported', key: `summary:${guid}:${sha256Hex(blob)}`, problem: { reason: 'summary-info-undecodable', detail: codeOf(error) } });
    }
  }
  for (const [part, versions] of summary?.edits ?? []) {
    for (const version of versions.slice(1)) {
      const body = version.body ? bodyOf(null, version.body) : undefined;
      out.push({
        ...base(),
        kind: 'edit',
        key: keys.edit(guid, part, version.index),
        ...at(appleSecondsToIso(version.seconds) ?? base().sentAt),
        ...(body?.text === undefined ? {} : { text: body.text }),
        ...(body && body.mentions.length > 0 ? { mentions: body.mentions } : {}),
        meta: { ...base().meta, ...body?.meta, 'imessage.part': part, 'imessage.version': version.index, ...(version.backwardsCompatibilityGuid ? { 'imessage.bcg': version.backwardsCompatibilityGuid } : {}) },
      });
    }
  }
  const changedAt = () => appleDateToIso(m['date_edited']) ?? appleDateToIso(m['date_retracted']) ?? base().sentAt;
  const unsend = (part: number | 'all'): CaptureInput => ({ ...base(), kind: 'delete', key: keys.unsend(guid, part), ...at(changedAt()), deletion: { scope: 'everyone' }, meta: { ...base().meta, 'imessage.part': String(part) } });
  for (const part of summary?.retractedParts ?? []) out.push(unsend(part));
  if ((summary?.retractedParts.length ?? 0) === 0 && isSet(m['date_retracted'])) out.push(unsend('all'));
  if (summary === undefined && isSet(m['date_edited']) && !isRetracted(m)) {
    const body = bodyOf(m['text'], m['attributedBody']);
    out.push({ ...base(), kind: 'edit', key: keys.edit(guid, 'at', String(m['date_edited'])), ...at(changedAt()), ...(body.text === undefined ? {} : { text: body.text }), meta: { ...base().meta, ...body.meta } });
  }
  const isMessage = int(m['item_type']) === 0 && int(m['associated_message_type']) < 1000;
  if (isMessage && int(m['is_from_me']) === 1 && bundle.handle && bundle.chat && int(bundle.chat['style']) !== 43) {
    const recipient = partyOf(bundle.handle);
    for (const [status, column] of [['delivered', 'date_delivered'], ['read', 'date_read']] as const) {
      const when = appleDateToIso(m[column]);
      if (when) out.push({ ...base(), kind: 'receipt', key: keys.receipt(guid, status), sentAt: when, sender: recipient, direction: 'inbound', receipt: { status } });
    }
  }
  return out;
}

/** An attachment whose transfer completed after its message was recorded. */
export function mapAttachmentCompleted(bundle: RowBundle, attachmentGuid: string, file: AttachmentInput, context: MapContext): CaptureInput {
  const guid = str(bundle.message['guid']) ?? '';
  const base = common(bundle, context);
  return { ...base, kind: 'edit', key: keys.attachment(guid, attachmentGuid), target: { id: guid }, attachments: [file], meta: { ...base.meta, 'imessage.reason': 'attachment-transfer-complete' } };
}

/**
 * A group chat seen for the first time: who is in it and its name. chat.db keeps no creation
 * time for chats, so `sentAt` is when the relay first saw it (`imessage.sentAt: first-seen`).
 */
export function mapNewChat(chat: SqlRow, members: readonly SqlRow[], seenAt: Date): CaptureInput {
  const guid = str(chat['guid']) ?? '';
  const bytes = new TextEncoder().encode(JSON.stringify({ format: RAW_ROW_FORMAT, version: 1, chat: encodeRow(chat), members: members.map(encodeRow) }));
  const title = str(chat['display_name']);
  return {
    kind: 'membership',
    key: keys.chat(guid),
    sentAt: seenAt,
    native: { id: guid },
    conversation: conversationOf(chat, undefined),
    membership: { action: 'create', members: members.map(partyOf), ...(title ? { value: short(title) } : {}) },
    raw: { format: RAW_ROW_FORMAT, bytes },
    meta: { 'imessage.service': str(chat['service_name']) ?? 'unknown', 'imessage.chatRowid': int(chat['ROWID']), 'imessage.sentAt': 'first-seen' },
  };
}

/** `p:<part>/<guid>`, `bp:<guid>` or a bare GUID → the target message GUID and part. */
export function parseAssociatedGuid(value: string | undefined): { guid: string; part?: number } {
  const match = /^(?:p:(\d+)\/|bp:)?(.+)$/.exec(value ?? '');
  if (!match?.[2]) return { guid: 'unknown' };
  return match[1] === undefined ? { guid: match[2] } : { guid: match[2], part: Number(match[1]) };
}

/** Context every record of a row shares: when, where, who, direction, raw row, service. */
function common(bundle: RowBundle, context: MapContext) {
  const m = bundle.message;
  const fromMe = int(m['is_from_me']) === 1;
  const sentAt = appleDateToIso(m['date']);
  const meta: Record<string, MetaValue> = { 'imessage.service': str(m['service']) ?? 'unknown', 'imessage.rowid': int(m['ROWID']), 'imessage.date': String(m['date'] ?? '0') };
  for (const [name, column] of [['imessage.account', 'account'], ['imessage.destination', 'destination_caller_id'], ['imessage.effect', 'expressive_send_style_id'], ['imessage.subject', 'subject']] as const) {
    const value = str(m[column]);
    if (value) meta[name] = short(value);
  }
  if (int(m['was_downgraded']) === 1) meta['imessage.downgraded'] = true;
  if (int(m['is_spam']) === 1) meta['imessage.spam'] = true;
  const balloon = balloonOf(m);
  if (balloon) meta['imessage.balloon'] = balloon;
  return {
    ...(sentAt ? { sentAt } : {}),
    conversation: conversationOf(bundle.chat, bundle.handle),
    sender: fromMe ? { id: context.self } : (bundle.handle ? partyOf(bundle.handle) : { id: 'unknown' }),
    direction: fromMe ? ('outbound' as const) : ('inbound' as const),
    raw: { format: RAW_ROW_FORMAT, bytes: encodeRawRow(bundle) },
    meta,
  };
}

function conversationOf(chat: SqlRow | undefined, handle: SqlRow | undefined): ConversationRef {
  if (!chat) return { id: `handle:${str(handle?.['id']) ?? 'unknown'}`, type: 'direct' };
  const title = str(chat['display_name']);
  return { id: str(chat['guid']) ?? 'unknown', type: int(chat['style']) === 43 ? 'group' : 'direct', ...(title ? { title: short(title) } : {}) };
}

function partyOf(handle: SqlRow): Party {
  const id = str(handle['id']) ?? 'unknown';
  const alias = str(handle['uncanonicalized_id']);
  return alias && alias !== id ? { id, aliases: [alias] } : { id };
}

function membershipOf(itemType: number, action: number, bundle: RowBundle): NonNullable<CaptureInput['membership']> {
  const other = bundle.otherHandle ? [partyOf(bundle.otherHandle)] : [];
  if (itemType === 1) return { action: action === 1 ? 'remove' : 'add', members: other };
  if (itemType === 2) {
    const title = str(bundle.message['group_title']);
    return title ? { action: 'title', value: short(title) } : { action: 'title' };
  }
  const settings: Record<number, string> = { 1: 'icon-changed', 2: 'icon-removed', 4: 'background-changed', 6: 'background-removed' };
  if (action === 0) return { action: 'leave' };
  return { action: settings[action] ? 'settings' : 'other', value: settings[action] ?? `group-action-${action}` };
}

interface Body {
  readonly text?: string;
  readonly mentions: string[];
  readonly meta: Record<string, MetaValue>;
  readonly error?: string;
}

/** `text` when non-empty, else the decoded attributedBody; mentions and links from the attribute runs. */
function bodyOf(text: SqlValue | undefined, attributedBody: SqlValue | undefined): Body {
  let decoded: AttributedBody | undefined;
  let error: string | undefined;
  if (attributedBody instanceof Uint8Array && attributedBody.length > 0) {
    try {
      decoded = decodeAttributedBody(attributedBody);
    } catch (caught) {
      error = codeOf(caught);
    }
  }
  const mentions = new Set<string>();
  const links = new Set<string>();
  let attachmentMarkers = 0;
  for (const run of decoded?.runs ?? []) {
    const mention = run.attributes['__kIMMentionConfirmedMention'];
    if (typeof mention === 'string' && mention) mentions.add(mention);
    const link = run.attributes['__kIMLinkAttributeName'];
    if (typeof link === 'object' && link !== null && 'url' in link && typeof link.url === 'string' && link.url) links.add(link.url);
    if (typeof run.attributes['__kIMFileTransferGUIDAttributeName'] === 'string') attachmentMarkers++;
  }
  const meta: Record<string, MetaValue> = {};
  if (links.size > 0) meta['imessage.links'] = short([...links].join(' '));
  if (attachmentMarkers > 0) meta['imessage.attachmentMarkers'] = attachmentMarkers;
  if (error) meta['imessage.bodyError'] = error;
  // Real Macs write `text` as NULL or as "" with the message only in attributedBody; "" is
  // kept only when there is no body to read it from, and never over a body that failed to decode.
  const value = typeof text === 'string' && text !== '' ? text : (decoded?.text ?? (error === undefined && typeof text === 'string' ? text : undefined));
  return { ...(value === undefined ? {} : { text: value.isWellFormed() ? value : value.toWellFormed() }), mentions: [...mentions], meta, ...(error ? { error } : {}) };
}

function isRetracted(m: SqlRow): boolean {
  if (isSet(m['date_retracted'])) return true;
  const blob = m['message_summary_info'];
  if (!(blob instanceof Uint8Array) || blob.length === 0) return false;
  try {
    return parseSummaryInfo(blob).retractedParts.length > 0;
  } catch {
    return false;
  }
}

function balloonOf(m: SqlRow): string | undefined {
  const balloon = str(m['balloon_bundle_id']);
  return balloon === undefined ? undefined : short(balloon);
}

/** Record strings (meta, titles) are at most 1,024 characters: cut there, never inside a surrogate pair. */
function short(value: string): string {
  return value.length <= 1024 ? value : value.slice(0, 1024).toWellFormed();
}

/** An attachment whose bytes are not (yet) in the archive, described from its row. */
export function unavailable(row: SqlRow, reason: string): AttachmentInput {
  return { status: 'unavailable', reason, mime: str(row['mime_type']) ?? 'application/octet-stream', ...(str(row['transfer_name']) ? { name: str(row['transfer_name']) as string } : {}) };
}

function at(sentAt: string | undefined): { sentAt?: string } {
  return sentAt === undefined ? {} : { sentAt };
}

function codeOf(error: unknown): string {
  return OffchannelError.isInstance(error) ? error.code : 'UNEXPECTED';
}

function str(value: SqlValue | undefined): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** A chat.db date or flag that is set: non-zero and not NULL (dates are BigInt nanoseconds). */
function isSet(value: SqlValue | undefined): boolean {
  return (typeof value === 'bigint' && value > 0n) || (typeof value === 'number' && value > 0);
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function int(value: SqlValue | undefined): number {
  if (typeof value === 'bigint') return value >= MIN_SAFE && value <= MAX_SAFE ? Number(value) : 0;
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : 0;
}
