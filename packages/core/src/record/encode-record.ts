import { RecordTooLargeError } from '../errors/record-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes, parseCanonical } from '../json/canonical-json.ts';
import { scanCanonical } from '../json/scan-canonical.ts';
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
 *
 * Fast path, exactly equivalent: a validating scan (scan-canonical.ts) accepts only bytes
 * that are certainly the canonical form of the value it returns, so nothing is serialized
 * again to compare. Whatever it does not decide — every non-canonical line among them — is
 * decided by the full RFC 8785 routine, which also words the error.
 */
export function decodeRecord(bytes: Uint8Array): EncodedRecord {
  if (bytes.length > MAX_RECORD_BYTES) throw new RecordTooLargeError(bytes.length, MAX_RECORD_BYTES);
  const record = scanCanonical(bytes) ?? parseCanonical(bytes);
  validateRecord(record);
  return { record, bytes, hash: sha256Hex(bytes) };
}
