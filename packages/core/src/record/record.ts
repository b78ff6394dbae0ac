/**
 * Record schema v1 — one JSON object per platform event, stored as RFC 8785 canonical JSON.
 *
 * `hash(record) = sha256(canonical bytes)`, and every record carries the hash of the record
 * before it in its stream (`prev`), so the stream is a hash chain. `docs/record-schema.md`
 * documents every field with examples; this file is the normative definition and
 * `validateRecord` enforces it.
 *
 * Rules that hold for every record:
 * - no fractional numbers: integers only, and only safe integers (≤ 2^53 − 1); larger
 *   platform numbers (Telegram ids, iMessage nanosecond dates) are strings;
 * - no unknown fields: a field not defined here is a validation error (extensions go in `meta`);
 * - at most {@link MAX_RECORD_BYTES} of canonical JSON; text longer than
 *   {@link TEXT_INLINE_MAX_BYTES} is stored as a blob and referenced by `textBlob`;
 * - nothing is ever rewritten: an edit, delete or reaction is a new record whose `target`
 *   names the original.
 */

/** Current schema version, the value of `v` in every record. */
export const RECORD_VERSION = 1;

/**
 * Largest canonical record in bytes: 65,535, so that every record fits one C2SP tlog-tiles
 * entry (uint16 length prefix).
 */
export const MAX_RECORD_BYTES = 65_535;

/** Text longer than this many UTF-8 bytes is stored in a blob and referenced by `textBlob`. */
export const TEXT_INLINE_MAX_BYTES = 32_768;

/** Every record kind, in schema order. */
export const RECORD_KINDS = [
  'message',
  'edit',
  'delete',
  'reaction',
  'receipt',
  'membership',
  'undecryptable',
  'unsupported',
  'gap',
  'system',
  'policy',
] as const;

/**
 * What happened:
 * - `message` — a message was sent or received (text and/or attachments);
 * - `edit` — the sender changed an earlier message (`target`); `text` is the new text;
 * - `delete` — a message was deleted (`target`, `deletion.scope`); the original stays archived;
 * - `reaction` — a reaction was added or removed on `target`;
 * - `receipt` — delivery/read/played state of `target`;
 * - `membership` — someone joined, left, was added/removed, or the conversation's title or
 *   settings changed;
 * - `undecryptable` — an event arrived that could not be decrypted; `raw` holds its bytes;
 * - `unsupported` — an event arrived that the connector cannot map; `raw` holds its bytes;
 * - `gap` — the connector detected that events may be missing and could not recover them;
 * - `system` — an account-level fact (identity key changed, session logged out, capture started);
 * - `policy` — a capture-policy fact (retention class, legal hold, configuration in force).
 */
export type RecordKind = (typeof RECORD_KINDS)[number];

/**
 * A platform's own identity for a message or event. `id` is the platform id; other members
 * scope it where the platform scopes ids (e.g. WhatsApp `chat` and `participant`, Telegram
 * `peer`). Values are strings. Within a stream, the same event always maps to the same ref.
 */
export interface NativeRef {
  readonly id: string;
  readonly [scope: string]: string;
}

/** The conversation an event belongs to. */
export interface ConversationRef {
  /** Platform id of the chat (JID, group id, peer id, chat GUID…). */
  readonly id: string;
  /** `direct` = one-to-one; `group` = many members; `channel` = broadcast to subscribers. */
  readonly type: 'direct' | 'group' | 'channel';
  /** The conversation's name at the time of the event, when the platform has one. */
  readonly title?: string;
}

/** A person or account taking part. */
export interface Party {
  /** Stable platform id (phone JID, ACI, user id, handle…). */
  readonly id: string;
  /** Display name as the platform showed it at the time, if known. */
  readonly name?: string;
  /** Other ids the platform uses for the same party (e.g. WhatsApp LID and phone number). */
  readonly aliases?: readonly string[];
}

/** A content-addressed blob: `blobs/sha256/<sha256>` in the archive. */
export interface BlobRef {
  /** Lowercase hex SHA-256 of the blob's bytes. */
  readonly sha256: string;
  /** Length of the blob in bytes. */
  readonly size: number;
}

/** An attachment whose bytes are in the archive. */
export interface StoredAttachment extends BlobRef {
  readonly status: 'stored';
  /** MIME type as the platform declared it (e.g. `image/jpeg`). */
  readonly mime: string;
  /** File name, when the platform has one. */
  readonly name?: string;
}

/**
 * An attachment that exists on the platform but whose bytes could not be archived
 * (view-once media, expired CDN link, download or decryption failure). Never silently dropped.
 */
export interface UnavailableAttachment {
  readonly status: 'unavailable';
  /** Why the bytes are missing, e.g. `view-once`, `download-failed: HTTP 410`. No message text. */
  readonly reason: string;
  readonly mime?: string;
  readonly name?: string;
  /** Declared size, when the platform states one. */
  readonly size?: number;
  /** Declared hash of the plaintext, when the platform states one (lowercase hex SHA-256). */
  readonly sha256?: string;
}

export type Attachment = StoredAttachment | UnavailableAttachment;

/** The platform's own bytes for this event (decrypted protobuf, TL object, chat.db row…). */
export interface RawRef extends BlobRef {
  /** How to read the blob, e.g. `whatsapp.WebMessageInfo.proto`, `imessage.chatdb-row.json`. */
  readonly format: string;
}

/** Which code produced the record. */
export interface SourceInfo {
  /** npm package of the connector, e.g. `@offchannel/whatsapp`. */
  readonly package: string;
  /** Its version. */
  readonly version: string;
  /** The platform library and version it used, e.g. `@whiskeysockets/baileys@7.0.0-rc14`. */
  readonly upstream?: string;
  /**
   * The capture policy in force when the record was made (the runner's `policy.version`, e.g.
   * `firm-comms-policy@2026-11-01`): which contacts and conversations were excluded is itself
   * evidence. Absent when no policy was configured.
   */
  readonly policy?: string;
}

/** `reaction` records: which reaction, added or removed. */
export interface ReactionDetail {
  /** The emoji, or the platform's name for it (iMessage tapbacks: `love`, `like`, …). */
  readonly value: string;
  readonly action: 'add' | 'remove';
}

/** `delete` records: how the message was deleted. */
export interface DeletionDetail {
  /** `everyone` = retracted for all (revoke, unsend); `me` = hidden on the custodian's devices only. */
  readonly scope: 'everyone' | 'me';
  /** True when a group admin deleted someone else's message (`sender` is the admin). */
  readonly admin?: boolean;
}

/** `receipt` records: delivery state of `target` as seen by `sender`. */
export interface ReceiptDetail {
  readonly status: 'delivered' | 'read' | 'played';
}

/** `membership` records. */
export interface MembershipDetail {
  readonly action:
    | 'create'
    | 'join'
    | 'leave'
    | 'add'
    | 'remove'
    | 'promote'
    | 'demote'
    | 'title'
    | 'description'
    | 'settings'
    | 'other';
  /** The parties the action applies to (added, removed, promoted…). `sender` is who did it. */
  readonly members?: readonly Party[];
  /** The new title for `title`, a short platform code for `settings`/`other`. */
  readonly value?: string;
}

/** `undecryptable` and `unsupported` records: why the event could not be mapped. */
export interface ProblemDetail {
  /** A short code, e.g. `no-session`, `bad-mac`, `unknown-message-type`. */
  readonly reason: string;
  /** Diagnostic detail (library error code, protobuf field numbers). Never message text. */
  readonly detail?: string;
}

/** `gap` records: what may be missing. */
export interface GapDetail {
  /** A short code, e.g. `channel-too-long`, `history-unavailable`, `cursor-reset`. */
  readonly reason: string;
  /** Platform position where the gap starts (exclusive), e.g. a pts or ROWID, as a string. */
  readonly from?: string;
  /** Platform position where it ends (exclusive). */
  readonly to?: string;
  /** Number of events known to be missing, when the platform says. */
  readonly missing?: number;
}

/** `system` and `policy` records. */
export interface SystemDetail {
  /** What happened, e.g. `identity-key-changed`, `logged-out`, `capture-started`, `retention`. */
  readonly event: string;
  /** Flat string facts about it. No message text, no secrets. */
  readonly fields?: { readonly [name: string]: string };
}

/** Flat extension values for channel-specific facts that have no field of their own. */
export type MetaValue = string | boolean | number;

/**
 * One archived event (schema v1). Which optional fields are required or allowed depends on
 * `kind`; see {@link KIND_RULES} and `docs/record-schema.md`.
 */
export interface ArchiveRecord {
  /** Schema version: always 1. */
  readonly v: 1;
  /** `<channel>:<account>` — one capturing account. */
  readonly stream: string;
  /** Position in the stream: 1, 2, 3… with no gaps. */
  readonly seq: number;
  /** SHA-256 (hex) of the previous record's canonical bytes; 64 zeros when `seq` is 1. */
  readonly prev: string;
  /** Idempotency key, unique within the stream: a replayed platform event is recorded once. */
  readonly key: string;
  readonly kind: RecordKind;
  /** Channel name, e.g. `whatsapp`, `signal`, `telegram`, `imessage`. Equals the stream's prefix. */
  readonly channel: string;
  /** The custodian's account on that channel. Equals the stream's suffix. */
  readonly account: string;
  /** When the recorder built this record (recorder clock), ISO 8601 UTC. */
  readonly capturedAt: string;
  /** When the platform says the event happened (platform clock), ISO 8601 UTC. */
  readonly sentAt?: string;
  readonly conversation?: ConversationRef;
  /** Who sent the message or performed the action. */
  readonly sender?: Party;
  /** `outbound` when the custodian sent it, `inbound` otherwise. */
  readonly direction?: 'inbound' | 'outbound';
  /** The platform's identity for this event. */
  readonly native?: NativeRef;
  /** The platform identity of the message an edit, delete, reaction or receipt refers to. */
  readonly target?: NativeRef;
  /** Message text (for `edit`: the new text). Absent when there is none or it is in `textBlob`. */
  readonly text?: string;
  /** Text longer than {@link TEXT_INLINE_MAX_BYTES}, stored as a UTF-8 blob. */
  readonly textBlob?: BlobRef;
  readonly attachments?: readonly Attachment[];
  /** The message this one replies to or quotes. */
  readonly replyTo?: NativeRef;
  /** True when the platform marks the message as forwarded. */
  readonly forwarded?: boolean;
  /** Party ids mentioned in the text. */
  readonly mentions?: readonly string[];
  readonly reaction?: ReactionDetail;
  readonly deletion?: DeletionDetail;
  readonly receipt?: ReceiptDetail;
  readonly membership?: MembershipDetail;
  readonly problem?: ProblemDetail;
  readonly gap?: GapDetail;
  readonly system?: SystemDetail;
  /** The platform's own bytes for this event. */
  readonly raw?: RawRef;
  readonly source: SourceInfo;
  /** Channel-specific extension facts (flat; string, boolean or safe-integer values). */
  readonly meta?: { readonly [name: string]: MetaValue };
}

/** Fields every record has. */
export const COMMON_FIELDS = [
  'v',
  'stream',
  'seq',
  'prev',
  'key',
  'kind',
  'channel',
  'account',
  'capturedAt',
  'source',
] as const;

/** Per-kind field rules: `required` must be present, `allowed` may be present, anything else is rejected. */
export interface KindRule {
  readonly required: readonly (keyof ArchiveRecord)[];
  readonly allowed: readonly (keyof ArchiveRecord)[];
}

const MESSAGE_BODY = ['text', 'textBlob', 'attachments', 'replyTo', 'forwarded', 'mentions'] as const;
const CONTEXT = ['sentAt', 'conversation', 'sender', 'direction', 'native', 'raw', 'meta'] as const;
const MESSAGE_LIKE = ['sentAt', 'conversation', 'sender', 'direction'] as const;

/** Which fields each kind requires and allows, besides {@link COMMON_FIELDS}. */
export const KIND_RULES: { readonly [kind in RecordKind]: KindRule } = {
  message: { required: [...MESSAGE_LIKE, 'native'], allowed: [...CONTEXT, ...MESSAGE_BODY] },
  edit: { required: [...MESSAGE_LIKE, 'target'], allowed: [...CONTEXT, ...MESSAGE_BODY, 'target'] },
  delete: { required: [...MESSAGE_LIKE, 'target', 'deletion'], allowed: [...CONTEXT, 'target', 'deletion'] },
  reaction: { required: [...MESSAGE_LIKE, 'target', 'reaction'], allowed: [...CONTEXT, 'target', 'reaction'] },
  receipt: { required: [...MESSAGE_LIKE, 'target', 'receipt'], allowed: [...CONTEXT, 'target', 'receipt'] },
  membership: { required: ['sentAt', 'conversation', 'membership'], allowed: [...CONTEXT, 'membership'] },
  undecryptable: { required: ['problem', 'raw'], allowed: [...CONTEXT, 'target', 'problem'] },
  unsupported: { required: ['problem', 'raw'], allowed: [...CONTEXT, 'target', 'problem'] },
  gap: { required: ['gap'], allowed: [...CONTEXT, 'gap'] },
  system: { required: ['system'], allowed: [...CONTEXT, 'system'] },
  policy: { required: ['system'], allowed: [...CONTEXT, 'system'] },
};
