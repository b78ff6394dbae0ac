import { type AttestationId, isAttestationDay, isHostId } from '../attest/attestation.ts';
/**
 * Input checks every sink runs before touching storage. Sinks call these so that the
 * rules (and their error messages) are the same everywhere.
 */
import { BlobMismatchError, InvalidBatchError } from '../errors/sink-errors.ts';
import { isSha256Hex } from '../hash/sha256.ts';
import { MAX_RECORD_BYTES } from '../record/record.ts';
import { assertStreamName } from '../record/stream-name.ts';
import { HASH_BYTES } from '../merkle/merkle-hash.ts';
import { assertLogName } from './log-name.ts';
import { type TileId, assertTileId } from '../merkle/tiles.ts';
import type { AppendBatch, CheckpointFile, CheckpointRange } from './sink.ts';

/** Most records one batch may carry. */
export const MAX_BATCH_RECORDS = 100_000;

/**
 * Throws `InvalidStreamNameError` or {@link InvalidBatchError} unless `batch` is well formed:
 * valid stream, `firstSeq` a safe integer ≥ 1, `prev` 64 lowercase hex, 1–{@link MAX_BATCH_RECORDS}
 * records of 1–65,535 bytes each with no 0x0A byte.
 */
export function assertAppendBatch(batch: AppendBatch): void {
  if (typeof batch !== 'object' || batch === null) throw new InvalidBatchError('batch must be an object');
  assertStreamName(batch.stream);
  if (!Number.isSafeInteger(batch.firstSeq) || batch.firstSeq < 1) throw new InvalidBatchError('firstSeq must be a safe integer ≥ 1');
  if (!isSha256Hex(batch.prev)) throw new InvalidBatchError('prev must be 64 lowercase hex characters');
  if (!Array.isArray(batch.records) || batch.records.length === 0) throw new InvalidBatchError('records must be a non-empty array');
  if (batch.records.length > MAX_BATCH_RECORDS) throw new InvalidBatchError(`a batch carries at most ${MAX_BATCH_RECORDS} records`);
  if (!Number.isSafeInteger(batch.firstSeq + batch.records.length)) throw new InvalidBatchError('seq would exceed 2^53 − 1');
  const records: readonly unknown[] = batch.records;
  // With `lines`, one pass over it finds any newline inside a record (see assertLines).
  const framed = batch.lines !== undefined;
  for (let index = 0; index < records.length; index++) {
    const bytes = records[index];
    if (!(bytes instanceof Uint8Array)) throw new InvalidBatchError(`record ${index} must be a Uint8Array`);
    if (bytes.length === 0 || bytes.length > MAX_RECORD_BYTES) {
      throw new InvalidBatchError(`record ${index} is ${bytes.length} bytes; records are 1–${MAX_RECORD_BYTES} bytes`);
    }
    if (!framed && newlineIn(bytes) !== -1) throw new InvalidBatchError(`record ${index} contains a newline byte`);
  }
  if (framed) assertLines(batch.lines, batch.records);
}

/** Where the first 0x0A of `bytes` is, or -1 (memchr: a Buffer view of the same memory, no copy). */
function newlineIn(bytes: Uint8Array): number {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).indexOf(0x0a);
}

/**
 * `lines` must be exactly `records`, each followed by 0x0A, with every record a view of `lines`
 * at its place: checked from the views' buffers and offsets, without comparing bytes.
 */
function assertLines(lines: unknown, records: readonly Uint8Array[]): void {
  if (!(lines instanceof Uint8Array)) throw new InvalidBatchError('lines must be a Uint8Array when present');
  let position = 0;
  for (let index = 0; index < records.length; index++) {
    const bytes = records[index] as Uint8Array;
    if (bytes.buffer !== lines.buffer || bytes.byteOffset !== lines.byteOffset + position || lines[position + bytes.length] !== 0x0a) {
      throw new InvalidBatchError(`record ${index} is not the view of lines at offset ${position}; lines, when present, must be the records each followed by a newline, and each record a view of it`);
    }
    position += bytes.length + 1;
  }
  if (position !== lines.length) throw new InvalidBatchError(`lines is ${lines.length} bytes but the records and their newlines are ${position}`);
  // Each record's own newline is where it was checked above; any other is inside a record. One
  // scan of the whole buffer instead of one per record.
  const framed = Buffer.from(lines.buffer, lines.byteOffset, lines.length);
  let index = 0;
  let end = -1;
  for (let at = framed.indexOf(0x0a); at !== -1; at = framed.indexOf(0x0a, at + 1)) {
    const bytes = records[index];
    if (bytes === undefined) throw new InvalidBatchError('lines holds more newlines than records');
    end += bytes.length + 1;
    if (at !== end) throw new InvalidBatchError(`record ${index} contains a newline byte`);
    index++;
  }
}

/**
 * The batch as stored lines (each record followed by 0x0A): `batch.lines` when the caller
 * supplied it (no copy), else the records framed into one new buffer. Call after
 * {@link assertAppendBatch}.
 */
export function batchLines(batch: AppendBatch): Uint8Array {
  if (batch.lines !== undefined) return batch.lines;
  let size = 0;
  for (const record of batch.records) size += record.length + 1;
  const lines = Buffer.allocUnsafe(size);
  let offset = 0;
  for (const record of batch.records) {
    lines.set(record, offset);
    offset += record.length;
    lines[offset++] = 0x0a;
  }
  return lines;
}

/** Throws {@link BlobMismatchError} unless `sha256` is 64 lowercase hex characters. */
export function assertBlobName(sha256: string): void {
  if (!isSha256Hex(sha256)) throw new BlobMismatchError(String(sha256).slice(0, 80), 'is not 64 lowercase hex characters');
}

/** Throws `InvalidStreamNameError` (the log is a stream or an archive log, see `log-name.ts`) or {@link InvalidBatchError} unless the tile id (and bytes, if given) are valid. */
export function assertTileKey(stream: string, tile: TileId, bytes?: Uint8Array): void {
  assertLogName(stream);
  try {
    assertTileId(tile);
  } catch (error) {
    throw new InvalidBatchError((error as Error).message);
  }
  if (bytes !== undefined && (!(bytes instanceof Uint8Array) || bytes.length !== tile.width * HASH_BYTES)) {
    throw new InvalidBatchError(`a tile of width ${tile.width} is ${tile.width * HASH_BYTES} bytes`);
  }
}

/** Throws {@link InvalidBatchError} unless `size` is a safe integer ≥ 1 and `file` is known. */
export function assertCheckpointKey(stream: string, size: number, file?: CheckpointFile): void {
  assertLogName(stream);
  if (!Number.isSafeInteger(size) || size < 1) throw new InvalidBatchError('checkpoint size must be a safe integer ≥ 1');
  if (file !== undefined && file !== 'note' && file !== 'rfc3161' && !/^cosigned-[0-9a-f]{8}$/.test(file)) {
    throw new InvalidBatchError('checkpoint file must be "note", "rfc3161" or "cosigned-<8 hex witness key id>"');
  }
}

/**
 * Throws `InvalidStreamNameError` or {@link InvalidBatchError} unless `stream` and `range` are
 * valid (`after` a safe integer ≥ 0). Returns `after`, 0 when there is none.
 */
export function checkpointRangeAfter(stream: string, range: CheckpointRange | undefined): number {
  assertLogName(stream);
  const after = range?.after ?? 0;
  if (!Number.isSafeInteger(after) || after < 0) throw new InvalidBatchError('a checkpoint range\'s "after" must be a safe integer ≥ 0');
  return after;
}

/** Throws {@link InvalidBatchError} unless `id` names a valid attestation (host id, `yyyy-mm-dd` day, seq ≥ 1). */
export function assertAttestationId(id: AttestationId): void {
  if (typeof id !== 'object' || id === null) throw new InvalidBatchError('an attestation id is {host, day, seq}');
  if (!isHostId(id.host)) throw new InvalidBatchError('an attestation host id is 1–63 characters of a-z, 0-9, "." and "-"');
  if (!isAttestationDay(id.day)) throw new InvalidBatchError('an attestation day is yyyy-mm-dd');
  if (!Number.isSafeInteger(id.seq) || id.seq < 1) throw new InvalidBatchError('an attestation seq is a safe integer ≥ 1');
}
