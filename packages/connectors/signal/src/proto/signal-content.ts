/**
 * Our own minimal schema of the Signal messages the connector reads, written from wire facts
 * (field numbers and types) only — no `.proto` text was copied. Each decoder takes the bytes
 * of one message and returns the fields the connector uses, plus the field numbers present so
 * the mapping can note data it does not interpret (the raw bytes are archived regardless).
 * Unknown fields are skipped; malformed bytes throw `SignalError('SIGNAL_PROTOBUF_INVALID')`.
 */
import { eitherServiceId, uuidFromBinary } from './service-id.ts';
import { FieldReader, protobufError } from './wire.ts';

/** Envelope.type values. */
export const EnvelopeType = {
  DoubleRatchet: 1,
  PreKey: 3,
  ServerDeliveryReceipt: 5,
  SealedSender: 6,
  PlaintextContent: 8,
} as const;

/** The server's envelope around one encrypted message. */
export interface Envelope {
  readonly type: number;
  readonly sourceServiceId?: string;
  readonly sourceDevice?: number;
  readonly destinationServiceId?: string;
  readonly clientTimestamp?: number;
  readonly content?: Uint8Array;
  readonly serverGuid?: string;
  readonly serverTimestamp?: number;
  readonly urgent: boolean;
  readonly story: boolean;
}

export function decodeEnvelope(bytes: Uint8Array): Envelope {
  const what = 'Envelope';
  const r = new FieldReader(bytes, what);
  const guidBinary = r.bytes(21);
  const source = eitherServiceId(r.string(11), r.bytes(19), what);
  const destination = eitherServiceId(r.string(13), r.bytes(20), what);
  const guid = r.string(9) || (guidBinary !== undefined && guidBinary.length > 0 ? uuidFromBinary(guidBinary, what) : undefined);
  return {
    type: r.number(1) ?? 0,
    ...(source === undefined ? {} : { sourceServiceId: source }),
    ...opt('sourceDevice', r.number(7)),
    ...(destination === undefined ? {} : { destinationServiceId: destination }),
    ...opt('clientTimestamp', r.number(5)),
    ...opt('content', r.bytes(8)),
    ...(guid === undefined || guid === '' ? {} : { serverGuid: guid.toLowerCase() }),
    ...opt('serverTimestamp', r.number(10)),
    urgent: r.bool(14) ?? true,
    story: r.bool(16) ?? false,
  };
}

/** A pointer to an encrypted attachment on Signal's CDN. */
export interface AttachmentPointer {
  /** `cdnId` (fixed64, as a decimal string) or `cdnKey`. */
  readonly cdnId?: string;
  readonly cdnKey?: string;
  readonly cdnNumber: number;
  readonly contentType?: string;
  /** 64 bytes: AES-256 key then HMAC-SHA256 key. */
  readonly key?: Uint8Array;
  /** Plaintext size in bytes (before padding). */
  readonly size?: number;
  /** SHA-256 of the encrypted blob as stored on the CDN. */
  readonly digest?: Uint8Array;
  readonly fileName?: string;
  readonly flags: number;
  readonly caption?: string;
  readonly uploadTimestamp?: number;
}

export function decodeAttachmentPointer(bytes: Uint8Array): AttachmentPointer {
  const r = new FieldReader(bytes, 'AttachmentPointer');
  const cdnId = r.big(1);
  return {
    ...(cdnId === undefined ? {} : { cdnId: cdnId.toString() }),
    ...opt('cdnKey', r.string(15)),
    cdnNumber: r.number(14) ?? 0,
    ...opt('contentType', r.string(2)),
    ...opt('key', r.bytes(3)),
    ...opt('size', r.number(4)),
    ...opt('digest', r.bytes(6)),
    ...opt('fileName', r.string(7)),
    flags: r.number(8) ?? 0,
    ...opt('caption', r.string(11)),
    ...opt('uploadTimestamp', r.number(13)),
  };
}

export interface Quote {
  readonly id?: number;
  readonly authorAci?: string;
  readonly text?: string;
}

export interface Reaction {
  readonly emoji?: string;
  readonly remove: boolean;
  readonly targetAuthorAci?: string;
  readonly targetSentTimestamp?: number;
}

export interface Sticker {
  readonly stickerId?: number;
  readonly emoji?: string;
  readonly data?: AttachmentPointer;
}

/** DataMessage.flags bits. */
export const DataMessageFlags = { EndSession: 1, ExpirationTimerUpdate: 2, ProfileKeyUpdate: 4, Forward: 8 } as const;

/** A message with content: text, attachments, a reaction, a delete… */
export interface DataMessage {
  readonly body?: string;
  readonly attachments: readonly AttachmentPointer[];
  /** Master key of the v2 group the message belongs to (32 bytes). */
  readonly groupMasterKey?: Uint8Array;
  readonly groupRevision?: number;
  readonly flags: number;
  /** Disappearing-message timer in seconds (0 = off). */
  readonly expireTimer?: number;
  readonly timestamp?: number;
  readonly quote?: Quote;
  readonly sticker?: Sticker;
  readonly isViewOnce: boolean;
  readonly hasProfileKey: boolean;
  readonly reaction?: Reaction;
  /** Remote delete ("delete for everyone") of the sender's own message sent at this time. */
  readonly deleteTargetSentTimestamp?: number;
  /** A group admin deleting someone else's message. */
  readonly adminDelete?: { readonly targetAuthorAci?: string; readonly targetSentTimestamp?: number };
  /** ACIs mentioned in the body (BodyRange.mentionAci). */
  readonly mentions: readonly string[];
  /** Field numbers present. */
  readonly fields: readonly number[];
}

export function decodeDataMessage(bytes: Uint8Array): DataMessage {
  const what = 'DataMessage';
  const r = new FieldReader(bytes, what);
  const group = r.bytes(15);
  const g = group === undefined ? undefined : new FieldReader(group, 'GroupContextV2');
  const quoteBytes = r.bytes(8);
  const reactionBytes = r.bytes(16);
  const deleteBytes = r.bytes(17);
  const adminDeleteBytes = r.bytes(29);
  const stickerBytes = r.bytes(11);
  const mentions: string[] = [];
  for (const range of r.repeatedBytes(18)) {
    const br = new FieldReader(range, 'BodyRange');
    const aci = eitherServiceId(br.string(3), br.bytes(5), 'BodyRange');
    if (aci !== undefined) mentions.push(aci);
  }
  return {
    ...opt('body', r.string(1)),
    attachments: r.repeatedBytes(2).map(decodeAttachmentPointer),
    ...opt('groupMasterKey', g?.bytes(1)),
    ...opt('groupRevision', g?.number(2)),
    flags: r.number(4) ?? 0,
    ...opt('expireTimer', r.number(5)),
    ...opt('timestamp', r.number(7)),
    ...(quoteBytes === undefined ? {} : { quote: decodeQuote(quoteBytes) }),
    ...(stickerBytes === undefined ? {} : { sticker: decodeSticker(stickerBytes) }),
    isViewOnce: r.bool(14) ?? false,
    hasProfileKey: r.has(6),
    ...(reactionBytes === undefined ? {} : { reaction: decodeReaction(reactionBytes) }),
    ...opt('deleteTargetSentTimestamp', deleteBytes === undefined ? undefined : new FieldReader(deleteBytes, 'Delete').number(1)),
    ...(adminDeleteBytes === undefined ? {} : { adminDelete: decodeAdminDelete(adminDeleteBytes) }),
    mentions,
    fields: r.numbers(),
  };
}

function decodeQuote(bytes: Uint8Array): Quote {
  const r = new FieldReader(bytes, 'Quote');
  const author = eitherServiceId(r.string(5), r.bytes(8), 'Quote');
  return { ...opt('id', r.number(1)), ...opt('authorAci', author), ...opt('text', r.string(3)) };
}

function decodeReaction(bytes: Uint8Array): Reaction {
  const r = new FieldReader(bytes, 'Reaction');
  const author = eitherServiceId(r.string(4), r.bytes(6), 'Reaction');
  return { ...opt('emoji', r.string(1)), remove: r.bool(2) ?? false, ...opt('targetAuthorAci', author), ...opt('targetSentTimestamp', r.number(5)) };
}

function decodeSticker(bytes: Uint8Array): Sticker {
  const r = new FieldReader(bytes, 'Sticker');
  const data = r.bytes(4);
  return { ...opt('stickerId', r.number(3)), ...opt('emoji', r.string(5)), ...(data === undefined ? {} : { data: decodeAttachmentPointer(data) }) };
}

function decodeAdminDelete(bytes: Uint8Array): { targetAuthorAci?: string; targetSentTimestamp?: number } {
  const r = new FieldReader(bytes, 'AdminDelete');
  return { ...opt('targetAuthorAci', eitherServiceId(undefined, r.bytes(1), 'AdminDelete')), ...opt('targetSentTimestamp', r.number(2)) };
}

export interface EditMessage {
  readonly targetSentTimestamp?: number;
  readonly dataMessage?: DataMessage;
}

export function decodeEditMessage(bytes: Uint8Array): EditMessage {
  const r = new FieldReader(bytes, 'EditMessage');
  const dm = r.bytes(2);
  return { ...opt('targetSentTimestamp', r.number(1)), ...(dm === undefined ? {} : { dataMessage: decodeDataMessage(dm) }) };
}

/** SyncMessage.Sent: a transcript of a message the account sent from another device. */
export interface SyncSent {
  readonly destinationServiceId?: string;
  readonly destinationE164?: string;
  readonly timestamp?: number;
  readonly message?: DataMessage;
  readonly editMessage?: EditMessage;
  readonly expirationStartTimestamp?: number;
  readonly isRecipientUpdate: boolean;
  readonly hasStory: boolean;
}

export interface SyncMessage {
  readonly sent?: SyncSent;
  /** Field numbers present (request, read, contacts, keys, deleteForMe…). */
  readonly fields: readonly number[];
}

/** SyncMessage field numbers the mapping names. */
export const SyncField = { Sent: 1, Contacts: 2, Request: 4, Read: 5, Padding: 8, Keys: 13, PniChangeNumber: 18, CallLinkUpdate: 20, DeleteForMe: 22 } as const;

export function decodeSyncMessage(bytes: Uint8Array): SyncMessage {
  const r = new FieldReader(bytes, 'SyncMessage');
  const sentBytes = r.bytes(1);
  return { ...(sentBytes === undefined ? {} : { sent: decodeSyncSent(sentBytes) }), fields: r.numbers() };
}

function decodeSyncSent(bytes: Uint8Array): SyncSent {
  const what = 'SyncMessage.Sent';
  const r = new FieldReader(bytes, what);
  const message = r.bytes(3);
  const edit = r.bytes(10);
  return {
    ...opt('destinationServiceId', eitherServiceId(r.string(7), r.bytes(12), what)),
    ...opt('destinationE164', r.string(1)),
    ...opt('timestamp', r.number(2)),
    ...(message === undefined ? {} : { message: decodeDataMessage(message) }),
    ...(edit === undefined ? {} : { editMessage: decodeEditMessage(edit) }),
    ...opt('expirationStartTimestamp', r.number(4)),
    isRecipientUpdate: r.bool(6) ?? false,
    hasStory: r.has(8),
  };
}

/** ReceiptMessage.type values. */
export const ReceiptType = { Delivery: 0, Read: 1, Viewed: 2 } as const;

export interface ReceiptMessage {
  readonly type: number;
  readonly timestamps: readonly number[];
}

/** Content field numbers. */
export const ContentField = {
  DataMessage: 1,
  SyncMessage: 2,
  CallMessage: 3,
  NullMessage: 4,
  ReceiptMessage: 5,
  TypingMessage: 6,
  SenderKeyDistributionMessage: 7,
  DecryptionErrorMessage: 8,
  StoryMessage: 9,
  PniSignatureMessage: 10,
  EditMessage: 11,
} as const;

/** The decrypted, unpadded content of one envelope. */
export interface Content {
  readonly dataMessage?: DataMessage;
  readonly syncMessage?: SyncMessage;
  readonly editMessage?: EditMessage;
  readonly receiptMessage?: ReceiptMessage;
  readonly senderKeyDistributionMessage?: Uint8Array;
  readonly decryptionErrorMessage?: Uint8Array;
  /** Field numbers present. */
  readonly fields: readonly number[];
}

export function decodeContent(bytes: Uint8Array): Content {
  const r = new FieldReader(bytes, 'Content');
  const dm = r.bytes(ContentField.DataMessage);
  const sync = r.bytes(ContentField.SyncMessage);
  const edit = r.bytes(ContentField.EditMessage);
  const receipt = r.bytes(ContentField.ReceiptMessage);
  return {
    ...(dm === undefined ? {} : { dataMessage: decodeDataMessage(dm) }),
    ...(sync === undefined ? {} : { syncMessage: decodeSyncMessage(sync) }),
    ...(edit === undefined ? {} : { editMessage: decodeEditMessage(edit) }),
    ...(receipt === undefined ? {} : { receiptMessage: decodeReceipt(receipt) }),
    ...opt('senderKeyDistributionMessage', r.bytes(ContentField.SenderKeyDistributionMessage)),
    ...opt('decryptionErrorMessage', r.bytes(ContentField.DecryptionErrorMessage)),
    fields: r.numbers(),
  };
}

function decodeReceipt(bytes: Uint8Array): ReceiptMessage {
  const r = new FieldReader(bytes, 'ReceiptMessage');
  const timestamps = r.repeatedNumbers(2);
  if (timestamps.length > 10_000) throw protobufError('more than 10,000 receipt timestamps', 'ReceiptMessage');
  return { type: r.number(1) ?? 0, timestamps };
}

/** `{[name]: value}` when value is defined, `{}` otherwise (for exactOptionalPropertyTypes). */
function opt<K extends string, V>(name: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [name]: value }) as { [P in K]?: V };
}
