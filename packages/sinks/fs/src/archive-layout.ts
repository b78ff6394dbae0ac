/**
 * Where everything lives in an archive directory. `docs/storage-format.md` describes the same
 * layout for auditors; keep the two in step.
 *
 * ```
 * <archive>/
 *   offchannel-archive.json                          format marker
 *   streams/<stream>/<firstSeq:16>.jsonl             segment: one canonical record per line
 *   streams/<stream>/<firstSeq:16>.seal.json         seal of a full segment (size, sha256, last seq/hash)
 *   blobs/sha256/<sha256>                            content-addressed blob
 *   checkpoints/<stream>/<size:16>.note|.rfc3161|.cosigned-<id>  signed checkpoints, timestamps, witness cosignatures
 *   tiles/<stream>/<L>/<N>[.p/<W>]                   Merkle tiles (c2sp.org/tlog-tiles paths)
 *   attestations/<host>/<yyyy-mm-dd>/<seq:16>.note   host attestations (signed notes)
 *   quarantine/<stream>/…                            torn tails moved aside at recovery (never acknowledged)
 *   locks/, tmp/                                     writer locks and staging; not archive content
 * ```
 */
import path from 'node:path';
import { type AttestationId, type CheckpointFile, type TileId, tilePath } from '@offchannel/core';

export const ARCHIVE_MARKER = 'offchannel-archive.json';
export const ARCHIVE_FORMAT = { format: 'offchannel-archive', version: 1 } as const;
export const SEAL_FORMAT = 'offchannel-segment-seal';
/** Seqs are padded to 16 digits (Number.MAX_SAFE_INTEGER has 16), so names sort numerically. */
export const SEQ_DIGITS = 16;

const SEGMENT = /^(\d{16})\.jsonl$/;
const SEAL = /^(\d{16})\.seal\.json$/;
const CHECKPOINT = /^(\d{16})\.(note|rfc3161|cosigned-[0-9a-f]{8})$/;
/** An attestation file name: its seq. */
export const ATTESTATION_FILE = /^(\d{16})\.note$/;

export function padSeq(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, '0');
}

export function segmentFileName(firstSeq: number): string {
  return `${padSeq(firstSeq)}.jsonl`;
}

export function sealFileName(firstSeq: number): string {
  return `${padSeq(firstSeq)}.seal.json`;
}

/** The first seq a segment file name encodes, or `undefined` if it is not a segment name. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = SEGMENT.exec(name);
  return match ? Number(match[1]) : undefined;
}

export function parseSealFileName(name: string): number | undefined {
  const match = SEAL.exec(name);
  return match ? Number(match[1]) : undefined;
}

export function parseCheckpointFileName(name: string): { size: number; file: CheckpointFile } | undefined {
  const match = CHECKPOINT.exec(name);
  return match ? { size: Number(match[1]), file: match[2] as CheckpointFile } : undefined;
}

/** Paths inside one archive. Stream names are validated before they reach these. */
export class ArchiveLayout {
  readonly root: string;
  readonly marker: string;
  readonly streamsDir: string;
  readonly blobsDir: string;
  readonly tmpDir: string;
  readonly locksDir: string;
  readonly attestationsDir: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    // Joined once: blob() runs for every blob put (in a backlog, every record).
    this.marker = path.join(this.root, ARCHIVE_MARKER);
    this.streamsDir = path.join(this.root, 'streams');
    this.blobsDir = path.join(this.root, 'blobs', 'sha256');
    this.tmpDir = path.join(this.root, 'tmp');
    this.locksDir = path.join(this.root, 'locks');
    this.attestationsDir = path.join(this.root, 'attestations');
  }

  /** `file` relative to the archive root, with `/` separators: how messages name archive files. */
  name(file: string): string {
    return path.relative(this.root, file).split(path.sep).join('/');
  }
  streamDir(stream: string): string {
    return path.join(this.streamsDir, stream);
  }
  segment(stream: string, firstSeq: number): string {
    return path.join(this.streamDir(stream), segmentFileName(firstSeq));
  }
  seal(stream: string, firstSeq: number): string {
    return path.join(this.streamDir(stream), sealFileName(firstSeq));
  }
  blob(sha256: string): string {
    return path.join(this.blobsDir, sha256);
  }
  checkpointsDir(stream: string): string {
    return path.join(this.root, 'checkpoints', stream);
  }
  checkpoint(stream: string, size: number, file: CheckpointFile): string {
    return path.join(this.checkpointsDir(stream), `${padSeq(size)}.${file}`);
  }
  tilesDir(stream: string): string {
    return path.join(this.root, 'tiles', stream);
  }
  tile(stream: string, tile: TileId): string {
    return path.join(this.tilesDir(stream), ...tilePath(tile).split('/'));
  }
  attestation(id: AttestationId): string {
    return path.join(this.attestationsDir, id.host, id.day, `${padSeq(id.seq)}.note`);
  }
  lock(stream: string): string {
    return path.join(this.locksDir, `${stream}.lock`);
  }
  quarantineDir(stream: string): string {
    return path.join(this.root, 'quarantine', stream);
  }
}
