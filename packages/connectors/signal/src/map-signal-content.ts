/**
 * THE MAPPING: Signal content → offchannel capture inputs. Read this file top to bottom to
 * know exactly what the Signal connector records for each kind of Signal message.
 *
 * Identity of a Signal message: Signal clients identify a message by (author ACI, the
 * sender's timestamp in ms). Every record uses that pair as its native ref:
 * `native = { id: "<timestamp>", author: "<aci>" }`, and edits, deletes, reactions, quotes and
 * receipts name their original the same way in `target` / `replyTo`.
 *
 * Idempotency keys (a redelivered envelope maps to the same keys and is recorded once):
 *   message:<author>:<ts>                    edit:<author>:<targetTs>:<editTs>
 *   delete:<deleter>:<targetAuthor>:<targetTs>    reaction:<reactor>:<ts>
 *   receipt:<reader>:<status>:<targetTs>     identity:<serviceId>:<sha256(key)>
 *   event:<author>:<ts>:<what>               undecryptable:<serverGuid> / unsupported:<serverGuid>
 *
 * Nothing here performs I/O: attachments are downloaded and verified before mapping
 * (`attachments.ts`) and passed in by pointer; the group id is derived from the group master
 * key with libsignal's zkgroup (deterministic).
 */
import type { AttachmentInput, CaptureInput, ConversationRef, MetaValue, NativeRef } from '@offchannel/core';
import { groupIdFromMasterKey } from './group-id.ts';
import {
  type AttachmentPointer,
  type Content,
  ContentField,
  type DataMessage,
  DataMessageFlags,
  type EditMessage,
  type Envelope,
  type ReceiptMessage,
  ReceiptType,
  type SyncSent,
  SyncField,
} from './proto/signal-content.ts';

/** Raw formats written by this connector. */
export const RAW_CONTENT_FORMAT = 'signal.Content.proto';
export const RAW_ENVELOPE_FORMAT = 'signal.Envelope.proto';
export const RAW_PADDED_PLAINTEXT_FORMAT = 'signal.Content.padded';

/** What the receiver knows about an envelope once it is decrypted. */
export interface EnvelopeFacts {
  /** The custodian's own ACI (the account this linked device belongs to). */
  readonly selfAci: string;
  /** Who sent it: from the envelope, or from the validated sealed-sender certificate. */
  readonly senderAci: string;
  readonly senderDevice: number;
  readonly sealedSender: boolean;
  readonly envelopeType: number;
  readonly serverGuid?: string;
  /** Server receive time, ms. */
  readonly serverTimestamp?: number;
  /** Sender's timestamp from the envelope, ms. */
  readonly clientTimestamp?: number;
  /** Which of our ids it was sent to (ACI, or `PNI:…` for first contact by phone number). */
  readonly destinationServiceId?: string;
}

/** Attachment bytes (or the reason they are missing), by pointer, from `attachments.ts`. */
export type AttachmentResults = ReadonlyMap<AttachmentPointer, AttachmentInput>;

/** DataMessage fields this mapping interprets; others are listed in `meta['signal.unmappedFields']`. */
const MAPPED_DATA_FIELDS = new Set([1, 2, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 23, 29]);
/** SyncMessage parts that carry account secrets: recorded without raw bytes. */
const SECRET_SYNC_FIELDS = new Set<number>([SyncField.Keys, SyncField.PniChangeNumber, SyncField.CallLinkUpdate]);

/** Every attachment pointer in `content` whose bytes the archive should hold, in order. */
export function attachmentPointersOf(content: Content): AttachmentPointer[] {
  const fromData = (dm: DataMessage | undefined): AttachmentPointer[] =>
    dm === undefined ? [] : [...dm.attachments, ...(dm.sticker?.data === undefined ? [] : [dm.sticker.data])];
  const sent = content.syncMessage?.sent;
  return [
    ...fromData(content.dataMessage),
    ...fromData(content.editMessage?.dataMessage),
    ...fromData(sent?.message),
    ...fromData(sent?.editMessage?.dataMessage),
  ];
}

/**
 * Maps one decrypted, unpadded Content. Returns zero records only for typing indicators,
 * null messages, and content that carries nothing but protocol keys (sender-key distribution,
 * PNI signatures) — documented in the README as not captured. Everything else yields at least
 * one record; content this mapping does not understand becomes `unsupported` with its bytes.
 */
export function mapSignalContent(facts: EnvelopeFacts, content: Content, contentBytes: Uint8Array, attachments: AttachmentResults): CaptureInput[] {
  const raw = { bytes: contentBytes, format: RAW_CONTENT_FORMAT };
  const base = envelopeMeta(facts);
  const out: CaptureInput[] = [];

  if (content.dataMessage !== undefined) {
    const who = { author: facts.senderAci, direction: directionOf(facts, facts.senderAci) } as const;
    out.push(mapDataMessage(content.dataMessage, who, directConversation(facts.senderAci), facts.clientTimestamp, attachments, raw, base));
  }
  if (content.editMessage !== undefined) {
    const who = { author: facts.senderAci, direction: directionOf(facts, facts.senderAci) } as const;
    out.push(mapEdit(content.editMessage, who, directConversation(facts.senderAci), attachments, raw, base));
  }
  if (content.syncMessage !== undefined && facts.senderAci !== facts.selfAci) {
    // Only the account's own devices send sync messages; anything else would let a contact
    // forge "outgoing" messages in the employee's name. Kept as evidence, never as outbound.
    out.push(unsupportedContent(facts, raw, 'sync-message-from-another-account', `sender ${facts.senderAci}`));
  } else if (content.syncMessage !== undefined) {
    const sync = content.syncMessage;
    if (sync.sent !== undefined) {
      out.push(...mapSyncSent(facts, sync.sent, attachments, raw, base));
    } else {
      const secret = sync.fields.some((f) => SECRET_SYNC_FIELDS.has(f));
      out.push({
        kind: 'system',
        key: `event:${facts.senderAci}:${facts.clientTimestamp ?? 0}:sync:${facts.serverGuid ?? 'no-guid'}`,
        ...sentAtOf(facts.clientTimestamp),
        sender: { id: facts.senderAci },
        system: { event: 'sync-message', fields: { parts: sync.fields.join(','), ...(secret ? { rawOmitted: 'carries account keys' } : {}) } },
        ...(secret ? {} : { raw }),
        meta: base,
      });
    }
  }
  if (content.receiptMessage !== undefined) out.push(...mapReceipts(facts, content.receiptMessage, raw, base));
  if (content.decryptionErrorMessage !== undefined) {
    out.push({
      kind: 'system',
      key: `event:${facts.senderAci}:${facts.clientTimestamp ?? 0}:retry-request`,
      ...sentAtOf(facts.clientTimestamp),
      sender: { id: facts.senderAci },
      system: { event: 'decryption-retry-requested', fields: { senderDevice: String(facts.senderDevice) } },
      raw,
      meta: base,
    });
  }
  if (out.length > 0) return out;

  const fields = content.fields;
  const ignorable = new Set<number>([ContentField.NullMessage, ContentField.TypingMessage, ContentField.SenderKeyDistributionMessage, ContentField.PniSignatureMessage]);
  if (fields.every((f) => ignorable.has(f))) return [];
  if (fields.includes(ContentField.CallMessage)) {
    return [
      {
        kind: 'system',
        key: `event:${facts.senderAci}:${facts.clientTimestamp ?? 0}:call:${facts.serverGuid ?? 'no-guid'}`,
        ...sentAtOf(facts.clientTimestamp),
        sender: { id: facts.senderAci },
        direction: directionOf(facts, facts.senderAci),
        system: { event: 'call-signalling' },
        raw,
        meta: base,
      },
    ];
  }
  return [unsupportedContent(facts, raw, fields.includes(ContentField.StoryMessage) ? 'story-not-captured' : 'content-not-mapped', `content fields ${fields.join(',')}`)];
}

/** The employee's own message sent from another device: `SyncMessage.Sent`. */
function mapSyncSent(facts: EnvelopeFacts, sent: SyncSent, attachments: AttachmentResults, raw: RawBytes, base: Meta): CaptureInput[] {
  const who = { author: facts.selfAci, direction: 'outbound' } as const;
  const to = sent.destinationServiceId ?? (sent.destinationE164 === undefined ? undefined : `e164:${sent.destinationE164}`);
  const conversation = to === undefined ? undefined : directConversation(to);
  const meta: Meta = {
    ...base,
    'signal.syncTranscript': true,
    ...(sent.expirationStartTimestamp === undefined ? {} : { 'signal.expirationStart': sent.expirationStartTimestamp }),
    ...(sent.isRecipientUpdate ? { 'signal.recipientUpdate': true } : {}),
  };
  if (sent.editMessage !== undefined) return [mapEdit(sent.editMessage, who, conversation, attachments, raw, meta)];
  if (sent.message !== undefined) return [mapDataMessage(sent.message, who, conversation, sent.timestamp, attachments, raw, meta)];
  return [unsupportedContent(facts, raw, sent.hasStory ? 'story-not-captured' : 'sync-sent-without-message', 'SyncMessage.Sent without message or edit')];
}

/** A DataMessage: a message, or one of the actions it can carry (reaction, delete, timer…). */
function mapDataMessage(
  dm: DataMessage,
  who: Who,
  direct: ConversationRef | undefined,
  fallbackTs: number | undefined,
  attachments: AttachmentResults,
  raw: RawBytes,
  base: Meta,
): CaptureInput {
  const ts = dm.timestamp ?? fallbackTs ?? 0;
  const conversation = dm.groupMasterKey === undefined ? direct : groupConversation(dm.groupMasterKey);
  const common = {
    ...sentAtOf(ts),
    ...(conversation === undefined ? {} : { conversation }),
    sender: { id: who.author },
    direction: who.direction,
    native: ref(ts, who.author),
    raw,
  } as const;
  const meta: Meta = { ...base, ...dataMeta(dm) };

  if (dm.reaction !== undefined) {
    const r = dm.reaction;
    return {
      kind: 'reaction',
      key: `reaction:${who.author}:${ts}`,
      ...common,
      target: ref(r.targetSentTimestamp ?? 0, r.targetAuthorAci ?? 'unknown'),
      reaction: { value: r.emoji ?? '', action: r.remove ? 'remove' : 'add' },
      meta,
    };
  }
  if (dm.deleteTargetSentTimestamp !== undefined) {
    // "Delete for everyone": only the author can delete their own message.
    return {
      kind: 'delete',
      key: `delete:${who.author}:${who.author}:${dm.deleteTargetSentTimestamp}`,
      ...common,
      target: ref(dm.deleteTargetSentTimestamp, who.author),
      deletion: { scope: 'everyone' },
      meta,
    };
  }
  if (dm.adminDelete !== undefined) {
    const author = dm.adminDelete.targetAuthorAci ?? 'unknown';
    const target = dm.adminDelete.targetSentTimestamp ?? 0;
    return { kind: 'delete', key: `delete:${who.author}:${author}:${target}`, ...common, target: ref(target, author), deletion: { scope: 'everyone', admin: true }, meta };
  }
  if ((dm.flags & DataMessageFlags.EndSession) !== 0) {
    return { kind: 'system', key: `event:${who.author}:${ts}:end-session`, ...common, system: { event: 'session-reset' }, meta };
  }
  const hasContent = dm.body !== undefined || dm.attachments.length > 0 || dm.sticker !== undefined || dm.quote !== undefined;
  if ((dm.flags & DataMessageFlags.ExpirationTimerUpdate) !== 0 && !hasContent) {
    // Recorded for the record only: the archive never expires anything.
    return {
      kind: 'membership',
      key: `event:${who.author}:${ts}:expire-timer`,
      ...common,
      conversation: conversation ?? { id: who.author, type: 'direct' },
      membership: { action: 'settings', value: `disappearing-messages:${dm.expireTimer ?? 0}s` },
      meta,
    };
  }
  if (hasContent) {
    const files = [...dm.attachments, ...(dm.sticker?.data === undefined ? [] : [dm.sticker.data])];
    return {
      kind: 'message',
      key: `message:${who.author}:${ts}`,
      ...common,
      ...(dm.body === undefined ? {} : { text: dm.body }),
      ...(files.length === 0 ? {} : { attachments: files.map((p) => attachmentOf(p, attachments)) }),
      ...(dm.quote?.id === undefined ? {} : { replyTo: ref(dm.quote.id, dm.quote.authorAci ?? 'unknown') }),
      ...((dm.flags & DataMessageFlags.Forward) !== 0 ? { forwarded: true } : {}),
      ...(dm.mentions.length === 0 ? {} : { mentions: [...new Set(dm.mentions)] }),
      meta,
    };
  }
  if (dm.hasProfileKey || (dm.flags & DataMessageFlags.ProfileKeyUpdate) !== 0) {
    // Profile keys decrypt the sender's profile: a secret, so no raw bytes for this one.
    const { raw: _raw, ...rest } = common;
    return { kind: 'system', key: `event:${who.author}:${ts}:profile-key`, ...rest, system: { event: 'profile-key-shared' }, meta };
  }
  if (dm.groupMasterKey !== undefined) {
    return { kind: 'system', key: `event:${who.author}:${ts}:group-update`, ...common, system: { event: 'group-update', fields: { revision: String(dm.groupRevision ?? 0) } }, meta };
  }
  return {
    kind: 'unsupported',
    key: `unsupported:${who.author}:${ts}`,
    ...common,
    problem: { reason: 'data-message-not-mapped', detail: `DataMessage fields ${dm.fields.join(',')}` },
    meta,
  };
}

/** An edit: a new record whose `target` is the original; the original's record is untouched. */
function mapEdit(edit: EditMessage, who: Who, direct: ConversationRef | undefined, attachments: AttachmentResults, raw: RawBytes, base: Meta): CaptureInput {
  const dm = edit.dataMessage;
  const target = edit.targetSentTimestamp ?? 0;
  const ts = dm?.timestamp ?? 0;
  const conversation = dm?.groupMasterKey === undefined ? direct : groupConversation(dm.groupMasterKey);
  return {
    kind: 'edit',
    key: `edit:${who.author}:${target}:${ts}`,
    ...sentAtOf(ts),
    ...(conversation === undefined ? {} : { conversation }),
    sender: { id: who.author },
    direction: who.direction,
    native: ref(ts, who.author),
    target: ref(target, who.author),
    ...(dm?.body === undefined ? {} : { text: dm.body }),
    ...(dm === undefined || dm.attachments.length === 0 ? {} : { attachments: dm.attachments.map((p) => attachmentOf(p, attachments)) }),
    ...(dm?.quote?.id === undefined ? {} : { replyTo: ref(dm.quote.id, dm.quote.authorAci ?? 'unknown') }),
    raw,
    meta: { ...base, ...(dm === undefined ? {} : dataMeta(dm)) },
  };
}

/** Delivery/read/viewed receipts: one record per receipted message. */
function mapReceipts(facts: EnvelopeFacts, receipt: ReceiptMessage, raw: RawBytes, base: Meta): CaptureInput[] {
  const status = receipt.type === ReceiptType.Read ? 'read' : receipt.type === ReceiptType.Viewed ? 'played' : 'delivered';
  return receipt.timestamps.map((target) => ({
    kind: 'receipt',
    key: `receipt:${facts.senderAci}:${status}:${target}`,
    ...sentAtOf(facts.clientTimestamp ?? facts.serverTimestamp ?? 0),
    conversation: directConversation(facts.senderAci),
    sender: { id: facts.senderAci },
    direction: directionOf(facts, facts.senderAci),
    target: ref(target, facts.selfAci),
    receipt: { status },
    raw,
    meta: { ...base, ...(receipt.type > ReceiptType.Viewed ? { 'signal.receiptType': receipt.type } : {}) },
  }));
}

/** A contact's identity key changed (reinstall, new phone): a `system` record, never a refusal. */
export function mapIdentityChange(facts: Pick<EnvelopeFacts, 'serverTimestamp' | 'serverGuid'>, serviceId: string, keyFingerprint: string): CaptureInput {
  return {
    kind: 'system',
    key: `identity:${serviceId}:${keyFingerprint}`,
    ...sentAtOf(facts.serverTimestamp ?? 0),
    sender: { id: serviceId },
    system: { event: 'identity-key-changed', fields: { serviceId, keySha256: keyFingerprint } },
    ...(facts.serverGuid === undefined ? {} : { meta: { 'signal.serverGuid': facts.serverGuid } }),
  };
}

/**
 * This linked device's own identity, recorded once per device when capture starts: the `selfAci`
 * every record's direction (and a receipt's target) was computed with, so re-derivation needs
 * nothing the archive does not hold.
 */
export function mapLinkedDevice(aci: string, deviceId: number, linkedAt: string): CaptureInput {
  return {
    kind: 'system',
    key: `signal:linked-device:${aci}:${deviceId}`,
    sentAt: linkedAt,
    sender: { id: aci },
    system: { event: 'linked-device', fields: { aci, deviceId: String(deviceId) } },
  };
}

/** Offline longer than Signal keeps a device's queue (about 30 days): what was queued may be gone. */
export function mapOfflineGap(from: string, to: string): CaptureInput {
  return { kind: 'gap', key: `gap:offline:${from}`, sentAt: to, gap: { reason: 'offline-beyond-signal-retention', from, to } };
}

/**
 * A warning well before Signal unlinks a device that stays offline (about 30 days): one record
 * per whole day offline from the warning threshold on, for as long as the outage lasts.
 */
export function mapUnlinkRisk(lastOnline: string, at: string, offlineDays: number, unlinkRiskAt: string): CaptureInput {
  return {
    kind: 'system',
    key: `signal:unlink-risk:${lastOnline}:${offlineDays}`,
    sentAt: at,
    system: { event: 'unlink-risk', fields: { lastOnline, offlineDays: String(offlineDays), unlinkRiskAt } },
  };
}

/** Signal unlinked this device (or refused its credentials): capture stops until it is relinked. */
export function mapDeviceUnlinked(deviceId: number, at: string, reason: string | undefined): CaptureInput {
  return {
    kind: 'system',
    key: `event:device-unlinked:${at}`,
    sentAt: at,
    system: { event: 'device-unlinked', fields: { deviceId: String(deviceId), ...(reason === undefined ? {} : { reason }) } },
  };
}

/** What is known of an envelope before (or without) decryption. */
export interface EnvelopeHeader {
  readonly id: string;
  readonly type?: number;
  readonly sourceServiceId?: string;
  readonly sourceDevice?: number;
  readonly clientTimestamp?: number;
  readonly serverTimestamp?: number;
  readonly serverGuid?: string;
}

/** An envelope's header: its server guid is its id, or `fallbackId` (a hash of its bytes) without one. */
export function envelopeHeader(envelope: Envelope, fallbackId: string): EnvelopeHeader {
  return {
    id: envelope.serverGuid ?? fallbackId,
    type: envelope.type,
    ...(envelope.sourceServiceId === undefined ? {} : { sourceServiceId: envelope.sourceServiceId }),
    ...(envelope.sourceDevice === undefined ? {} : { sourceDevice: envelope.sourceDevice }),
    ...(envelope.clientTimestamp === undefined ? {} : { clientTimestamp: envelope.clientTimestamp }),
    ...(envelope.serverTimestamp === undefined ? {} : { serverTimestamp: envelope.serverTimestamp }),
    ...(envelope.serverGuid === undefined ? {} : { serverGuid: envelope.serverGuid }),
  };
}

/** An envelope that could not be decrypted: its encrypted bytes are the evidence. */
export function mapUndecryptable(header: EnvelopeHeader, envelopeBytes: Uint8Array, reason: string, detail: string): CaptureInput {
  return {
    kind: 'undecryptable',
    key: `undecryptable:${header.id}`,
    ...sentAtOf(header.clientTimestamp ?? header.serverTimestamp),
    ...(header.sourceServiceId === undefined ? {} : { sender: { id: header.sourceServiceId } }),
    problem: { reason, detail },
    raw: { bytes: envelopeBytes, format: RAW_ENVELOPE_FORMAT },
    ...headerMeta(header),
  };
}

/**
 * Decrypted bytes this mapping cannot read (bad padding, malformed protobuf, a mapping error):
 * recorded as `unsupported` with the decrypted bytes, which cannot be decrypted again.
 */
export function mapUnreadable(header: EnvelopeHeader, sender: string | undefined, plaintext: Uint8Array, format: string, reason: string, detail: string): CaptureInput {
  return {
    kind: 'unsupported',
    key: `unsupported:${header.id}`,
    ...sentAtOf(header.clientTimestamp ?? header.serverTimestamp),
    ...(sender === undefined ? {} : { sender: { id: sender } }),
    problem: { reason, detail },
    raw: { bytes: plaintext, format },
    ...headerMeta(header),
  };
}

/** Envelope types that carry no content (server delivery receipts). */
export function mapContentless(header: EnvelopeHeader, envelopeBytes: Uint8Array): CaptureInput {
  return {
    kind: 'system',
    key: `event:${header.id}:server-receipt`,
    ...sentAtOf(header.clientTimestamp ?? header.serverTimestamp),
    ...(header.sourceServiceId === undefined ? {} : { sender: { id: header.sourceServiceId } }),
    system: { event: 'server-delivery-receipt', ...(header.clientTimestamp === undefined ? {} : { fields: { targetTimestamp: String(header.clientTimestamp) } }) },
    raw: { bytes: envelopeBytes, format: RAW_ENVELOPE_FORMAT },
    ...headerMeta(header),
  };
}

// ---- helpers ----

type Meta = { readonly [name: string]: MetaValue };
type RawBytes = { readonly bytes: Uint8Array; readonly format: string };
type Who = { readonly author: string; readonly direction: 'inbound' | 'outbound' };

function ref(timestamp: number, author: string): NativeRef {
  return { id: String(timestamp), author };
}

function directConversation(serviceId: string): ConversationRef {
  return { id: serviceId, type: 'direct' };
}

function groupConversation(masterKey: Uint8Array): ConversationRef {
  return { id: `group:${groupIdFromMasterKey(masterKey)}`, type: 'group' };
}

function directionOf(facts: EnvelopeFacts, author: string): 'inbound' | 'outbound' {
  return author === facts.selfAci ? 'outbound' : 'inbound';
}

function sentAtOf(ms: number | undefined): { sentAt?: string } {
  return ms === undefined || ms <= 0 || ms > 8.64e15 ? {} : { sentAt: new Date(ms).toISOString() };
}

function attachmentOf(pointer: AttachmentPointer, results: AttachmentResults): AttachmentInput {
  return (
    results.get(pointer) ?? {
      status: 'unavailable',
      reason: 'not-downloaded',
      ...(pointer.contentType === undefined ? {} : { mime: pointer.contentType }),
      ...(pointer.fileName === undefined ? {} : { name: pointer.fileName }),
      ...(pointer.size === undefined ? {} : { size: pointer.size }),
    }
  );
}

function envelopeMeta(facts: EnvelopeFacts): Meta {
  return {
    ...(facts.clientTimestamp === undefined ? {} : { 'signal.clientTimestamp': facts.clientTimestamp }),
    'signal.envelopeType': facts.envelopeType,
    'signal.sealedSender': facts.sealedSender,
    'signal.senderDevice': facts.senderDevice,
    ...(facts.serverGuid === undefined ? {} : { 'signal.serverGuid': facts.serverGuid }),
    ...(facts.serverTimestamp === undefined ? {} : { 'signal.serverTimestamp': facts.serverTimestamp }),
    ...(facts.destinationServiceId?.startsWith('PNI:') === true ? { 'signal.toPni': true } : {}),
  };
}

/** `{ meta }` with what the envelope header says, or `{}` when it says nothing. */
function headerMeta(header: EnvelopeHeader): { meta?: Meta } {
  const meta: Meta = {
    ...(header.type === undefined ? {} : { 'signal.envelopeType': header.type }),
    ...(header.sourceDevice === undefined ? {} : { 'signal.senderDevice': header.sourceDevice }),
    ...(header.serverGuid === undefined ? {} : { 'signal.serverGuid': header.serverGuid }),
    ...(header.serverTimestamp === undefined ? {} : { 'signal.serverTimestamp': header.serverTimestamp }),
  };
  return Object.keys(meta).length === 0 ? {} : { meta };
}

function dataMeta(dm: DataMessage): Meta {
  const unmapped = dm.fields.filter((f) => !MAPPED_DATA_FIELDS.has(f));
  return {
    // Disappearing messages: the timer is recorded; the archived copy never expires.
    ...(dm.expireTimer === undefined || dm.expireTimer === 0 ? {} : { 'signal.expireTimerSeconds': dm.expireTimer }),
    ...(dm.isViewOnce ? { 'signal.viewOnce': true } : {}),
    ...(dm.sticker?.emoji === undefined ? {} : { 'signal.stickerEmoji': dm.sticker.emoji }),
    ...(dm.groupRevision === undefined ? {} : { 'signal.groupRevision': dm.groupRevision }),
    ...(dm.quote?.text === undefined ? {} : { 'signal.quoteHasText': true }),
    ...(unmapped.length === 0 ? {} : { 'signal.unmappedFields': unmapped.join(',') }),
  };
}

function unsupportedContent(facts: EnvelopeFacts, raw: RawBytes, reason: string, detail: string): CaptureInput {
  return {
    kind: 'unsupported',
    key: `unsupported:${facts.serverGuid ?? `${facts.senderAci}:${facts.clientTimestamp ?? 0}`}`,
    ...sentAtOf(facts.clientTimestamp),
    sender: { id: facts.senderAci },
    problem: { reason, detail },
    raw,
    meta: envelopeMeta(facts),
  };
}
