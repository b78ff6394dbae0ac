import { isUtf8 } from 'node:buffer';
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
 *
 * Fast path, exactly equivalent for valid records: a record that passes schema validation
 * has only ASCII, letter-initial member names (so JavaScript keeps parsed members in source
 * order — no integer-like names), only safe integers and only well-formed strings; for such a
 * value RFC 8785 and `JSON.stringify` produce the same text once members are sorted. So the
 * bytes are canonical exactly when they are valid UTF-8, `JSON.stringify(JSON.parse(text))`
 * reproduces them, and every object's members are in sorted order. Anything that fails the
 * fast path is decided by the full RFC 8785 routine, which also words the error.
 */
export function decodeRecord(bytes: Uint8Array): EncodedRecord {
  if (bytes.length > MAX_RECORD_BYTES) throw new RecordTooLargeError(bytes.length, MAX_RECORD_BYTES);
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (isUtf8(buffer)) {
    const text = buffer.toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    if (value !== undefined && isValid(value) && JSON.stringify(value) === text && membersSorted(value, 0)) {
      return { record: value, bytes, hash: sha256Hex(bytes) };
    }
  }
  const record = parseCanonical(bytes);
  validateRecord(record);
  return { record, bytes, hash: sha256Hex(bytes) };
}

function isValid(value: unknown): value is ArchiveRecord {
  try {
    validateRecord(value);
    return true;
  } catch {
    return false;
  }
}

/** True when every object's member names are in strictly ascending UTF-16 order. */
function membersSorted(value: unknown, depth: number): boolean {
  if (typeof value !== 'object' || value === null || depth > 64) return true;
  if (Array.isArray(value)) return value.every((item: unknown) => membersSorted(item, depth + 1));
  const keys = Object.keys(value);
  for (let index = 0; index < keys.length; index++) {
    if (index > 0 && !((keys[index - 1] as string) < (keys[index] as string))) return false;
    if (!membersSorted((value as Record<string, unknown>)[keys[index] as string], depth + 1)) return false;
  }
  return true;
}
