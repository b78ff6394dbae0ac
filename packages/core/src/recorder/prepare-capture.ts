/**
 * Turns a connector's {@link CaptureInput} into a record template (everything but `seq`,
 * `prev` and `capturedAt`) plus the blobs that must be stored before the record.
 * Pure and synchronous: hashing happens here, storage happens in the recorder.
 */
import { InvalidRecordError, RecordTooLargeError } from '../errors/record-errors.ts';
import { hashedBlobCopy } from '../hash/hashed-blob.ts';
import { ZERO_HASH } from '../hash/sha256.ts';
import { canonicalMembers, canonicalize } from '../json/canonical-json.ts';
import type { AttachmentInput, BlobInput, CaptureInput } from '../record/capture-input.ts';
import {
  type ArchiveRecord,
  type Attachment,
  type BlobRef,
  MAX_RECORD_BYTES,
  RECORD_VERSION,
  type SourceInfo,
  TEXT_INLINE_MAX_BYTES,
} from '../record/record.ts';
import { validateRecord } from '../record/validate-record.ts';

/** A blob the recorder must store before the record. */
export interface PendingBlob {
  readonly sha256: string;
  readonly bytes: Uint8Array;
}

/**
 * A validated record whose `seq`, `prev` and `capturedAt` are placeholders until the recorder
 * sequences it (it then sets them in place: the template is created fresh for each capture).
 */
export type RecordTemplate = ArchiveRecord;

export interface PreparedCapture {
  readonly key: string;
  readonly template: RecordTemplate;
  /** Blobs to store first (raw bytes, attachment bytes, long text). Empty for most text messages. */
  readonly blobs: readonly PendingBlob[];
  /** Blob refs given by the connector as already stored; the recorder checks they exist. */
  readonly existingBlobs: readonly BlobRef[];
  /**
   * When the template names blobs: its canonical JSON (computed for the size check anyway) cut
   * where the values of `capturedAt`, `prev` and `seq` go, in that order (see
   * {@link SplicedRecord}). The recorder sequences this text, not the template: the record is
   * serialized once, and nothing the caller still holds can change it while its blobs are stored.
   */
  readonly spliced?: SplicedRecord;
}

/**
 * A record's canonical text without the values of its three sequencing members, which canonical
 * order puts in this order: the text before `capturedAt`'s value, between it and `prev`'s,
 * between that and `seq`'s, and after it. Their values contain nothing JSON escapes (an ISO
 * time, lowercase hex, digits), so the record's text is the four parts with the three values
 * between them.
 */
export type SplicedRecord = readonly [string, string, string, string];

/** The members a {@link SplicedRecord} leaves out, in canonical (sorted) order. */
const SEQUENCING = ['capturedAt', 'prev', 'seq'] as const;

const encoder = new TextEncoder();
/** Fields only the recorder may set. */
const RECORDER_FIELDS = new Set(['v', 'stream', 'seq', 'prev', 'channel', 'account', 'capturedAt', 'source', 'textBlob']);
/** Placeholders as long as the largest real values, so a size check on them is an upper bound. */
const PLACEHOLDER_SEQ = Number.MAX_SAFE_INTEGER;
const PLACEHOLDER_TIME = '2000-01-01T00:00:00.000Z';

/**
 * The default idempotency key: `<kind>:<canonical JSON of native>`, or a random key (never
 * deduplicated) when the input has neither `key` nor `native`.
 */
export function defaultCaptureKey(input: CaptureInput): string {
  if (input.key !== undefined) return input.key;
  if (input.native !== undefined) return `${input.kind}:${canonicalize(input.native)}`;
  return `auto:${crypto.randomUUID()}`;
}

/**
 * Validates `input` for `stream` and prepares it. Throws `InvalidRecordError` naming the field,
 * or `RecordTooLargeError`, before anything is written.
 */
export function prepareCapture(input: CaptureInput, stream: { stream: string; channel: string; account: string }, source: SourceInfo): PreparedCapture {
  if (typeof input !== 'object' || input === null) throw new InvalidRecordError('input', 'must be an object');
  const key = defaultCaptureKey(input);
  const blobs: PendingBlob[] = [];
  const existingBlobs: BlobRef[] = [];
  // The sequencing fields' placeholders are in the literal, not added last: an object made with
  // its members costs less than one that grows (recorder-cpu bench, see validate-record.ts).
  const fields: Record<string, unknown> = {
    v: RECORD_VERSION,
    stream: stream.stream,
    key,
    kind: input.kind,
    channel: stream.channel,
    account: stream.account,
    source,
    seq: PLACEHOLDER_SEQ,
    prev: ZERO_HASH,
    capturedAt: PLACEHOLDER_TIME,
  };
  // Own enumerable string keys, as Object.entries gives them, without an array per field.
  for (const name of Object.keys(input)) {
    const value: unknown = input[name as keyof CaptureInput];
    if (value === undefined || name === 'key' || name === 'kind') continue;
    if (RECORDER_FIELDS.has(name)) throw new InvalidRecordError(`input.${name}`, 'is assigned by the recorder and must not be set by a connector');
    switch (name) {
      case 'forwarded':
        if (value !== false) fields.forwarded = value;
        break;
      case 'sentAt':
        fields.sentAt = value instanceof Date ? isoOrFail('record.sentAt', value) : value;
        break;
      case 'text':
        // Length first: most texts are short, and isWellFormed scans a two-byte string whole.
        if (typeof value === 'string' && utf8Length(value) > TEXT_INLINE_MAX_BYTES && value.isWellFormed()) {
          fields.textBlob = addBlob(blobs, encoder.encode(value));
        } else {
          fields.text = value;
        }
        break;
      case 'attachments':
        if (!Array.isArray(value)) throw new InvalidRecordError('record.attachments', 'must be an array');
        fields.attachments = (value as AttachmentInput[]).map((item, index) => attachment(item, index, blobs, existingBlobs));
        break;
      case 'raw': {
        const raw = value as CaptureInput['raw'] & object;
        const ref = blobInput('record.raw', raw, blobs, existingBlobs);
        fields.raw = { sha256: ref.sha256, size: ref.size, format: raw.format };
        break;
      }
      default:
        fields[name] = value;
    }
  }
  validateRecord(fields);
  const template: RecordTemplate = fields;
  if (blobs.length > 0 || existingBlobs.length > 0) {
    // Check the size now, before any blob is stored, so a rejected record leaves nothing behind
    // (the placeholders are as long as the longest real values: an upper bound).
    const spliced = splice(template);
    let length = 0;
    for (const part of spliced) length += part.length;
    // UTF-8 takes at most three bytes per UTF-16 unit: counted exactly only when that could be too many.
    if (length * 3 + PLACEHOLDER_BYTES > MAX_RECORD_BYTES) {
      let size = PLACEHOLDER_BYTES;
      for (const part of spliced) size += Buffer.byteLength(part, 'utf8');
      if (size > MAX_RECORD_BYTES) throw new RecordTooLargeError(size, MAX_RECORD_BYTES);
    }
    return { key, template, blobs, existingBlobs, spliced };
  }
  return { key, template, blobs, existingBlobs };
}

/** UTF-8 bytes of the placeholders' values in canonical text: `"…time…"`, `"…hash…"` and the seq. */
const PLACEHOLDER_BYTES = PLACEHOLDER_TIME.length + 2 + ZERO_HASH.length + 2 + String(PLACEHOLDER_SEQ).length;

/** The template's canonical text, cut where its sequencing members' values are. */
function splice(template: RecordTemplate): SplicedRecord {
  const { names, texts } = canonicalMembers(template);
  const parts: string[] = [];
  let text = '{';
  for (let index = 0; index < names.length; index++) {
    const name = names[index] as string;
    const member = texts[index] as string;
    if (index > 0) text += ',';
    if (name === SEQUENCING[parts.length]) {
      // The member's name and colon stay; its value is left out.
      parts.push(text + member.slice(0, name.length + 3));
      text = '';
    } else {
      text += member;
    }
  }
  if (parts.length !== SEQUENCING.length) throw new Error('a record template lacks its sequencing members'); // cannot happen: set above
  return [parts[0] as string, parts[1] as string, parts[2] as string, `${text}}`];
}

function attachment(item: AttachmentInput, index: number, blobs: PendingBlob[], existing: BlobRef[]): Attachment | AttachmentInput {
  const field = `record.attachments[${index}]`;
  if (typeof item !== 'object' || item === null) throw new InvalidRecordError(field, 'must be an object');
  if ('status' in item) {
    // An unavailable marker is validated with the record. A "stored" attachment names a blob
    // that must already be in the sink: check it like any other blob ref.
    if ((item as { status: unknown }).status === 'stored') {
      const stored = item as unknown as { sha256: string; size: number };
      existing.push({ sha256: stored.sha256, size: stored.size });
    }
    return item;
  }
  const ref = blobInput(field, item, blobs, existing);
  return { status: 'stored', sha256: ref.sha256, size: ref.size, mime: item.mime, ...(item.name === undefined ? {} : { name: item.name }) };
}

function blobInput(field: string, input: BlobInput, blobs: PendingBlob[], existing: BlobRef[]): BlobRef {
  if (typeof input !== 'object' || input === null) throw new InvalidRecordError(field, 'must be an object');
  if ('bytes' in input) {
    if (!(input.bytes instanceof Uint8Array)) throw new InvalidRecordError(`${field}.bytes`, 'must be a Uint8Array');
    return addBlob(blobs, input.bytes);
  }
  if ('blob' in input) {
    const blob = input.blob as unknown;
    if (typeof blob !== 'object' || blob === null) throw new InvalidRecordError(`${field}.blob`, 'must be a blob ref {sha256, size}');
    // Copied in the caller's tick: the existence check runs after an await, and must check the
    // very blob the record names, whatever the caller does with its object meanwhile.
    const ref: BlobRef = { sha256: (blob as BlobRef).sha256, size: (blob as BlobRef).size };
    existing.push(ref);
    return ref;
  }
  throw new InvalidRecordError(field, 'needs either bytes or blob');
}

/** Hashes a private copy of the bytes (hashed-blob.ts): the sink stores exactly what was hashed, without hashing it again. */
function addBlob(blobs: PendingBlob[], bytes: Uint8Array): BlobRef {
  const blob = hashedBlobCopy(bytes);
  if (!blobs.some((pending) => pending.sha256 === blob.sha256)) blobs.push(blob);
  return { sha256: blob.sha256, size: blob.bytes.length };
}

function isoOrFail(field: string, date: Date): string {
  if (Number.isNaN(date.getTime())) throw new InvalidRecordError(field, 'is an invalid Date');
  return date.toISOString();
}

function utf8Length(text: string): number {
  // Fast path: a string of n UTF-16 units encodes to at most 3n bytes.
  if (text.length * 3 <= TEXT_INLINE_MAX_BYTES) return text.length;
  return Buffer.byteLength(text, 'utf8');
}
