import { RecordTooLargeError } from '../errors/record-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes, parseCanonical } from '../json/canonical-json.ts';
import { type ArchiveRecord, MAX_RECORD_BYTES } from './record.ts';
import { validateRecord } from './validate-record.ts';

/** A record with its canonical bytes and their hash: what a sink stores and a chain links. */
export interface EncodedRecord {
  readonly record: ArchiveRecord;
  /** RFC 8785 canonical JSON, UTF-8, no trailing newline. */
  readonly bytes: Uint8Array;
  /** `sha256(bytes)`, lowercase hex. The next record's `prev`. */
  readonly hash: string;
}

/**
 * Validates `record`, serializes it canonically and hashes it.
 * Throws `InvalidRecordError`, `NonCanonicalJsonError` or {@link RecordTooLargeError}.
 */
export function encodeRecord(record: ArchiveRecord): EncodedRecord {
  validateRecord(record);
  const bytes = canonicalBytes(record);
  if (bytes.length > MAX_RECORD_BYTES) throw new RecordTooLargeError(bytes.length, MAX_RECORD_BYTES);
  return { record, bytes, hash: sha256Hex(bytes) };
}

/**
 * Parses stored bytes back into a record, checking that they are canonical, within the size
 * limit and valid schema v1. Throws `NonCanonicalJsonError`, `RecordTooLargeError` or
 * `InvalidRecordError`.
 */
export function decodeRecord(bytes: Uint8Array): EncodedRecord {
  if (bytes.length > MAX_RECORD_BYTES) throw new RecordTooLargeError(bytes.length, MAX_RECORD_BYTES);
  const record = parseCanonical(bytes);
  validateRecord(record);
  return { record, bytes, hash: sha256Hex(bytes) };
}
