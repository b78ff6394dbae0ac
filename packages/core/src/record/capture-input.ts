import type {
  BlobRef,
  ConversationRef,
  DeletionDetail,
  GapDetail,
  MembershipDetail,
  MetaValue,
  NativeRef,
  Party,
  ProblemDetail,
  ReactionDetail,
  ReceiptDetail,
  RecordKind,
  SystemDetail,
  UnavailableAttachment,
} from './record.ts';

/** Blob content given either as bytes (the recorder stores them) or as a ref already stored. */
export type BlobInput = { readonly bytes: Uint8Array } | { readonly blob: BlobRef };

/** An attachment to capture: bytes (or a stored blob) with its MIME type, or an unavailable marker. */
export type AttachmentInput = ({ readonly mime: string; readonly name?: string } & BlobInput) | UnavailableAttachment;

/** The platform's own bytes for the event, and how to read them. */
export type RawInput = { readonly format: string } & BlobInput;

/**
 * What a connector hands to `capture()`: the record's content without the fields the
 * recorder owns (`v`, `stream`, `seq`, `prev`, `channel`, `account`, `capturedAt`, `source`).
 * Blob content is passed as bytes; the recorder stores every blob before the record that
 * names it. See {@link ArchiveRecord} for each field's meaning.
 */
export interface CaptureInput {
  readonly kind: RecordKind;
  /**
   * Idempotency key, unique within the stream. A capture whose key is already archived is not
   * recorded again (history sync, redelivery, restarts). Defaults to `<kind>:<canonical native>`
   * when `native` is given; connectors SHOULD set it explicitly for edits, reactions, receipts
   * and anything without its own native id. Without both, every capture is recorded.
   */
  readonly key?: string;
  /** Platform time of the event. */
  readonly sentAt?: string | Date;
  readonly conversation?: ConversationRef;
  readonly sender?: Party;
  readonly direction?: 'inbound' | 'outbound';
  readonly native?: NativeRef;
  readonly target?: NativeRef;
  /** Any length: text over the inline limit is stored as a blob automatically. */
  readonly text?: string;
  readonly attachments?: readonly AttachmentInput[];
  readonly raw?: RawInput;
  readonly replyTo?: NativeRef;
  readonly forwarded?: boolean;
  readonly mentions?: readonly string[];
  readonly reaction?: ReactionDetail;
  readonly deletion?: DeletionDetail;
  readonly receipt?: ReceiptDetail;
  readonly membership?: MembershipDetail;
  readonly problem?: ProblemDetail;
  readonly gap?: GapDetail;
  readonly system?: SystemDetail;
  readonly meta?: { readonly [name: string]: MetaValue };
}

/**
 * How a capture ended. Every outcome means the event is settled and MAY be acknowledged
 * upstream: `recorded` and `duplicate` are durable in the archive; `excluded` means the
 * runner's capture policy keeps this conversation out of the archive (a personal contact) and
 * has durably counted the exclusion for its `policy` record.
 */
export type CaptureResult =
  | {
      readonly status: 'recorded';
      readonly stream: string;
      readonly key: string;
      readonly seq: number;
      /** SHA-256 of the record's canonical bytes. */
      readonly hash: string;
    }
  | {
      /** The key was already archived; nothing new was written. */
      readonly status: 'duplicate';
      readonly stream: string;
      readonly key: string;
      /** Seq of the record that already holds this key. */
      readonly seq: number;
    }
  | {
      /** Out of scope under the capture policy: nothing stored, the exclusion counted. */
      readonly status: 'excluded';
      readonly stream: string;
      readonly key: string;
      /** Always 0: no record holds this event. */
      readonly seq: 0;
    };
