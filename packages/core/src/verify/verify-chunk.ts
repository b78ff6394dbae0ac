/**
 * Verifying one chunk of consecutive records (a segment), independently of the others, so
 * that chunks can be verified in parallel (worker threads). The caller stitches chunks
 * together: each result carries the first record's `prev` and the last record's hash, so the
 * chain across chunks is checked exactly as if the stream had been read in one pass.
 *
 * Any problem inside a chunk is only flagged here (`problem`); the caller then verifies the
 * stream sequentially to name it precisely, so parallel and sequential verification always
 * report the same failures.
 */
import { HASH_BYTES, writeLeafHash } from '../merkle/merkle-hash.ts';
import { TILE_WIDTH, perfectRoot } from '../merkle/tiles.ts';
import { decodeRecord } from '../record/encode-record.ts';
import { blobRefs } from './blob-refs.ts';
import { sha256Hex } from '../hash/sha256.ts';
import { keyFingerprint } from './key-fingerprints.ts';
import { RecordScanner } from './scan-record.ts';

const HEX_CHARS = 64;

/** True when `line` holds the 64 characters of `hex` at `offset`. */
function hexAt(line: Uint8Array, offset: number, hex: string): boolean {
  if (hex.length !== HEX_CHARS) return false;
  for (let index = 0; index < HEX_CHARS; index++) if (line[offset + index] !== hex.charCodeAt(index)) return false;
  return true;
}

/** A chunk to verify: `bytes` holds whole records, each followed by a newline; the first has seq `firstSeq`. */
export interface VerifyChunkRequest {
  readonly id: number;
  readonly stream: string;
  readonly firstSeq: number;
  readonly bytes: Uint8Array;
}

export interface VerifyChunkResult {
  readonly id: number;
  readonly firstSeq: number;
  readonly count: number;
  /** The first record's `prev` (to check against the previous chunk's last hash). */
  readonly firstPrev: string;
  /** SHA-256 of the last record (the next chunk's first `prev`). */
  readonly lastHash: string;
  /** Leaf hashes (RFC 9162) of the records, 32 bytes each, in order. */
  readonly leaves: Uint8Array;
  /**
   * Roots of the level-0 tiles (256 leaves from a multiple of 256) wholly in the chunk, in
   * order, 32 bytes each: this thread hashed their leaves, so it hashes their subtrees too
   * (see `CheckpointCheck.feedLeaves`). Empty when the chunk has a problem.
   */
  readonly tileRoots: Uint8Array;
  /**
   * Fingerprints of the idempotency keys (see key-fingerprints.ts), in order: numbers in one
   * buffer instead of a string per record to copy between threads. A fingerprint seen before
   * is only a candidate; the caller confirms it by reading both records' keys.
   */
  readonly fingerprints: Float64Array;
  /** Blobs the records name: [seq, field, sha256, size]. */
  readonly blobs: readonly (readonly [number, string, string, number])[];
  /** Set when a record in the chunk failed a check; the caller re-verifies sequentially. */
  readonly problem?: string;
  /** The request's buffer, handed back by the worker for reuse. */
  readonly returned?: ArrayBuffer;
}

/** The roots of the level-0 tiles wholly among `count` leaves, the first of record `firstSeq`. */
export function tileRoots(firstSeq: number, leaves: Uint8Array, count: number): Uint8Array {
  const first = (TILE_WIDTH - ((firstSeq - 1) % TILE_WIDTH)) % TILE_WIDTH;
  const tiles = count > first ? Math.floor((count - first) / TILE_WIDTH) : 0;
  const roots = new Uint8Array(tiles * HASH_BYTES);
  for (let tile = 0; tile < tiles; tile++) roots.set(perfectRoot(leaves, first + tile * TILE_WIDTH, TILE_WIDTH), tile * HASH_BYTES);
  return roots;
}

/** Verifies a chunk's records: canonical, valid, in this stream, contiguous, chained. */
export function verifyChunk(request: VerifyChunkRequest): VerifyChunkResult {
  const { stream, firstSeq, id } = request;
  // A Buffer view (no copy): its indexOf is a native byte search, a Uint8Array's is not.
  const bytes = Buffer.from(request.bytes.buffer, request.bytes.byteOffset, request.bytes.byteLength);
  const blobs: [number, string, string, number][] = [];
  let leaves = Buffer.alloc(HASH_BYTES * 1024);
  let fingerprints = new Float64Array(1024);
  let count = 0;
  let firstPrev = '';
  let lastHash = '';
  let start = 0;
  const scanner = new RecordScanner(stream);
  const result = (problem?: string): VerifyChunkResult => ({ id, firstSeq, count, firstPrev, lastHash, leaves: leaves.subarray(0, count * HASH_BYTES), tileRoots: problem ? new Uint8Array(0) : tileRoots(firstSeq, leaves, count), fingerprints: fingerprints.subarray(0, count), blobs, ...(problem ? { problem } : {}) });
  for (let end = bytes.indexOf(0x0a, start); end !== -1; end = bytes.indexOf(0x0a, start)) {
    // A plain view: cheaper to make than a Buffer (made for every record).
    const line = new Uint8Array(bytes.buffer, bytes.byteOffset + start, end - start);
    const lineStart = start;
    start = end + 1;
    const seq = firstSeq + count;
    if (count === fingerprints.length) {
      const grownLeaves = Buffer.alloc(leaves.length * 2);
      grownLeaves.set(leaves);
      leaves = grownLeaves;
      const grownFingerprints = new Float64Array(fingerprints.length * 2);
      grownFingerprints.set(fingerprints);
      fingerprints = grownFingerprints;
    }
    // Most records are read by the scan; the rest (and every bad one) by decodeRecord.
    const scanned = scanner.scan(bytes, lineStart, end);
    let hash: string;
    if (scanned) {
      if (scanned.seq !== seq) return result(`seq ${seq} is out of place`);
      hash = sha256Hex(line);
      if (count === 0) firstPrev = bytes.toString('latin1', scanned.prevAt, scanned.prevAt + HEX_CHARS);
      else if (!hexAt(bytes, scanned.prevAt, lastHash)) return result(`seq ${seq} does not chain`);
      fingerprints[count] = scanned.keyFingerprint;
      if (scanned.blobs) for (const [field, sha256, size] of scanned.blobs) blobs.push([seq, field, sha256, size]);
    } else {
      let decoded;
      try {
        decoded = decodeRecord(line);
      } catch {
        return result(`seq ${seq} is not a valid record`);
      }
      const { record } = decoded;
      hash = decoded.hash;
      if (record.stream !== stream || record.seq !== seq) return result(`seq ${seq} is out of place`);
      if (count === 0) firstPrev = record.prev;
      else if (record.prev !== lastHash) return result(`seq ${seq} does not chain`);
      fingerprints[count] = keyFingerprint(record.key);
      if (record.raw !== undefined || record.textBlob !== undefined || record.attachments !== undefined) {
        for (const [field, ref] of blobRefs(record)) blobs.push([seq, field, ref.sha256, ref.size]);
      }
    }
    writeLeafHash(line, leaves, count * HASH_BYTES);
    lastHash = hash;
    count++;
  }
  if (start !== bytes.length) return result('the chunk ends inside a record');
  return result();
}
