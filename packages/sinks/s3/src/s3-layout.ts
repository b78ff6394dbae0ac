/**
 * Where everything lives in a bucket: the same names as in an archive directory (see
 * `docs/storage-format.md`), under an optional key prefix.
 *
 * ```
 * <prefix>streams/<stream>/<firstSeq:16>.jsonl         one appended batch: canonical records, one per line
 * <prefix>blobs/sha256/<sha256>                        content-addressed blob
 * <prefix>checkpoints/<stream>/<size:16>.note|.rfc3161 signed checkpoints and their timestamps
 * <prefix>tiles/<stream>/<L>/<N>[.p/<W>]               Merkle tiles (c2sp.org/tlog-tiles paths)
 * <prefix>legal-holds/<time>-<id>.json                 log of legal hold changes
 * <prefix>attestations/<host>/<yyyy-mm-dd>/<seq:16>.note host attestations (signed notes)
 * ```
 *
 * Every object is written once, with Object Lock COMPLIANCE retention. When a key has several
 * versions (a writer lost an append race on a store without conditional writes), the OLDEST
 * version is the object; the others are ignored by readers and reported by the audit.
 */
import { type AttestationId, type CheckpointFile, type TileId, isAttestationDay, isHostId, tilePath } from '@offchannel/core';
import { S3SinkError } from './s3-errors.ts';

/** Seqs are padded to 16 digits (Number.MAX_SAFE_INTEGER has 16), so keys sort numerically. */
export const SEQ_DIGITS = 16;

const BATCH = /^(\d{16})\.jsonl$/;
const CHECKPOINT = /^(\d{16})\.(note|rfc3161|cosigned-[0-9a-f]{8})$/;
const ATTESTATION = /^(\d{16})\.note$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function padSeq(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, '0');
}

/** The first seq a batch object's name (the part after the stream prefix) encodes. */
export function parseBatchName(name: string): number | undefined {
  const match = BATCH.exec(name);
  const seq = match ? Number(match[1]) : Number.NaN;
  return Number.isSafeInteger(seq) && seq >= 1 ? seq : undefined;
}

export function parseCheckpointName(name: string): { size: number; file: CheckpointFile } | undefined {
  const match = CHECKPOINT.exec(name);
  const size = match ? Number(match[1]) : Number.NaN;
  return match && Number.isSafeInteger(size) && size >= 1 ? { size, file: match[2] as CheckpointFile } : undefined;
}

/** Throws `S3_CONFIG_INVALID` unless `bucket` is a valid S3 bucket name. */
export function assertBucketName(bucket: string): void {
  if (typeof bucket !== 'string' || !BUCKET.test(bucket) || bucket.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    const shown = typeof bucket === 'string' ? bucket.slice(0, 80) : typeof bucket;
    throw new S3SinkError('S3_CONFIG_INVALID', `"${shown}" is not a valid S3 bucket name (3–63 lowercase letters, digits, dots and hyphens).`);
  }
}

/**
 * Normalizes a key prefix: `''`, or path segments joined by `/` and ending in `/`. Refuses
 * empty, `.` and `..` segments and control characters, so a prefix cannot alias another.
 */
export function normalizePrefix(prefix: string | undefined): string {
  if (prefix === undefined || prefix === '' || prefix === '/') return '';
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  const segments = trimmed.split('/');
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..') || hasControlOrBackslash(trimmed) || trimmed.length > 512) {
    throw new S3SinkError('S3_CONFIG_INVALID', `"${prefix.slice(0, 80)}" is not a valid key prefix (segments separated by single slashes, no "." or "..").`);
  }
  return `${trimmed}/`;
}

function hasControlOrBackslash(text: string): boolean {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x20 || code === 0x7f || code === 0x5c) return true;
  }
  return false;
}

/** Parses `s3://bucket[/prefix]`. */
export function parseS3Url(url: string): { readonly bucket: string; readonly prefix: string } {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!match) throw new S3SinkError('S3_CONFIG_INVALID', `"${url.slice(0, 80)}" is not an s3://bucket/prefix URL.`);
  const bucket = match[1] as string;
  assertBucketName(bucket);
  return { bucket, prefix: normalizePrefix(match[2]) };
}

/** Object keys of one archive in a bucket. Stream names are validated before they reach these. */
export class S3Layout {
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  get streamsPrefix(): string {
    return `${this.prefix}streams/`;
  }
  get blobsPrefix(): string {
    return `${this.prefix}blobs/sha256/`;
  }
  get attestationsRoot(): string {
    return `${this.prefix}attestations/`;
  }
  attestation(id: AttestationId): string {
    return `${this.attestationsRoot}${id.host}/${id.day}/${padSeq(id.seq)}.note`;
  }
  get checkpointsRoot(): string {
    return `${this.prefix}checkpoints/`;
  }
  get tilesRoot(): string {
    return `${this.prefix}tiles/`;
  }
  get holdsPrefix(): string {
    return `${this.prefix}legal-holds/`;
  }
  streamPrefix(stream: string): string {
    return `${this.streamsPrefix}${stream}/`;
  }
  batch(stream: string, firstSeq: number): string {
    return `${this.streamPrefix(stream)}${padSeq(firstSeq)}.jsonl`;
  }
  blob(sha256: string): string {
    return `${this.blobsPrefix}${sha256}`;
  }
  checkpointsPrefix(stream: string): string {
    return `${this.checkpointsRoot}${stream}/`;
  }
  checkpoint(stream: string, size: number, file: CheckpointFile): string {
    return `${this.checkpointsPrefix(stream)}${padSeq(size)}.${file}`;
  }
  tilesPrefix(stream: string): string {
    return `${this.tilesRoot}${stream}/`;
  }
  tile(stream: string, tile: TileId): string {
    return `${this.tilesPrefix(stream)}${tilePath(tile)}`;
  }
}

/** An attestation's key below the attestations root (`<host>/<day>/<seq>.note`), parsed; else `undefined`. */
export function parseAttestationName(name: string): AttestationId | undefined {
  const [host, day, file, ...rest] = name.split('/');
  const match = file === undefined ? null : ATTESTATION.exec(file);
  const seq = match ? Number(match[1]) : Number.NaN;
  if (rest.length > 0 || host === undefined || day === undefined || !isHostId(host) || !isAttestationDay(day) || !Number.isSafeInteger(seq) || seq < 1) return undefined;
  return { host, day, seq };
}
