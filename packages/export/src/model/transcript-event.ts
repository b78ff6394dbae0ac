import type { ArchiveRecord, NativeRef, Party } from '@offchannel/core';

/** Where a record sits in the archive: enough to tie any exported line back to the signed log. */
export interface Provenance {
  /** `<stream>/<seq>`: unique across the archive; used as the event id in every format. */
  readonly id: string;
  readonly stream: string;
  readonly seq: number;
  /** SHA-256 of the record's canonical bytes (the hash chain's link), hex. */
  readonly hash: string;
  readonly record: ArchiveRecord;
}

/** An attachment as exported: stored ones carry the file name they get in the export. */
export interface TranscriptAttachment {
  readonly status: 'stored' | 'unavailable';
  readonly sha256?: string;
  readonly size?: number;
  readonly mime?: string;
  /** The original, sender-chosen name, exactly as recorded: never a path, shown only as {@link label}. */
  readonly name?: string;
  /** The original name (else the MIME type) as text safe to show: bidi and control characters made visible, cut at 200 characters. */
  readonly label: string;
  /** Why it could not be archived (unavailable only). */
  readonly reason?: string;
  /** File name inside the export (`<full sha256>.<inert extension or bin>`), stored only. */
  readonly fileName?: string;
  /** Content type the export gives the file: the recorded type when inert, else `application/octet-stream`. Stored only. */
  readonly fileType?: string;
  /** Event id (`<stream>/<seq>`) of the later edit record that added this attachment. */
  readonly addedBy?: string;
}

/**
 * One later version of a message's text, with the text it replaced. An edit record that carries
 * no text (only attachments — e.g. an iMessage attachment whose download finished later) leaves
 * the text unchanged: it is not listed here; its attachments are added to the message's.
 */
export interface TranscriptEdit extends Provenance {
  readonly by: Party | undefined;
  readonly at: string;
  readonly previous: string | undefined;
  readonly text: string | undefined;
}

export interface TranscriptDeletion extends Provenance {
  readonly by: Party | undefined;
  readonly at: string;
  readonly scope: 'everyone' | 'me';
  readonly admin: boolean;
}

export interface TranscriptReaction extends Provenance {
  readonly by: Party | undefined;
  readonly at: string;
  readonly value: string;
  readonly action: 'add' | 'remove';
}

export interface TranscriptReceipt extends Provenance {
  readonly by: Party | undefined;
  readonly at: string;
  readonly status: 'delivered' | 'read' | 'played';
}

/**
 * One line of a conversation as every export format shows it.
 * - `message`: a message with everything later records did to it folded in (edits with their
 *   history, deletions — the original text kept —, reactions, receipts).
 * - `join` / `leave`: membership changes that add or remove people.
 * - `notice`: everything else a reviewer must see — other membership changes (title, settings),
 *   undecryptable and unsupported events, gaps, system and policy facts, and edits, deletes or
 *   reactions whose original is not in the archive. `notice` carries a plain description.
 */
export interface TranscriptEvent extends Provenance {
  readonly type: 'message' | 'join' | 'leave' | 'notice';
  /** Platform time (`sentAt`), or capture time when the platform gave none. ISO 8601 UTC. */
  readonly at: string;
  readonly sender: Party | undefined;
  readonly direction: 'inbound' | 'outbound' | undefined;
  /** The text as first recorded (a long text read from its blob). */
  readonly text: string | undefined;
  /** The text after the last edit (equals `text` when never edited). */
  readonly currentText: string | undefined;
  /** The message's attachments, then those added by later edit records (`addedBy` says which). */
  readonly attachments: readonly TranscriptAttachment[];
  /** Id of the event this one replies to, when that message is in the archive. */
  readonly parent: string | undefined;
  /** `<sender>: <first 80 characters>` of the replied-to message, for readers. */
  readonly parentPreview: string | undefined;
  /** The reply target when it is not in the archive. */
  readonly replyToMissing: NativeRef | undefined;
  readonly forwarded: boolean;
  readonly edits: readonly TranscriptEdit[];
  readonly deletions: readonly TranscriptDeletion[];
  readonly reactions: readonly TranscriptReaction[];
  /** Reactions in force after every add and remove: value → who. */
  readonly reactionState: readonly { readonly value: string; readonly participants: readonly Party[] }[];
  readonly receipts: readonly TranscriptReceipt[];
  /** Description for `join`, `leave` and `notice` events. Never includes secrets. */
  readonly notice: string | undefined;
}
