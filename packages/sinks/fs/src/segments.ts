/** Segment files of one stream: listing, line splitting, seals. */
import { lstat, readdir } from 'node:fs/promises';
import { ArchiveCorruptError, NotRegularFileError, canonicalize, isSha256Hex } from '@offchannel/core';
import { type ArchiveLayout, SEAL_FORMAT, parseSealFileName, parseSegmentFileName } from './archive-layout.ts';
import { isNotFound } from './fs-utils.ts';

export interface SegmentFile {
  readonly firstSeq: number;
  readonly path: string;
  readonly sealPath: string;
  /** A seal file exists for it. */
  readonly sealed: boolean;
}

/**
 * A seal: written once when a segment is full, then the segment and seal are made read-only.
 * `sha256` and `bytes` cover the whole segment file, so `sha256sum` checks it.
 */
export interface Seal {
  readonly v: 1;
  readonly format: typeof SEAL_FORMAT;
  readonly stream: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** SHA-256 of the last record line (without its newline): the stream head at the seal. */
  readonly lastHash: string;
  /** Size of the segment file in bytes. */
  readonly bytes: number;
  /** SHA-256 of the whole segment file. */
  readonly sha256: string;
}

/** Segments of `stream`, ascending by first seq. */
export async function listSegments(layout: ArchiveLayout, stream: string): Promise<SegmentFile[]> {
  let names: string[];
  try {
    // A linked stream directory could lead outside the archive: refuse it (the audit names it).
    if ((await lstat(layout.streamDir(stream))).isSymbolicLink()) throw new NotRegularFileError(layout.name(layout.streamDir(stream)), 'a symbolic link');
    names = await readdir(layout.streamDir(stream));
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const seals = new Set(names.map(parseSealFileName).filter((seq) => seq !== undefined));
  return names
    .map(parseSegmentFileName)
    .filter((seq) => seq !== undefined)
    .sort((a, b) => a - b)
    .map((firstSeq) => ({ firstSeq, path: layout.segment(stream, firstSeq), sealPath: layout.seal(stream, firstSeq), sealed: seals.has(firstSeq) }));
}

/** Splits file content into complete lines (without `\n`) and the bytes after the last `\n`. */
export function splitLines(content: Buffer): { lines: Buffer[]; tail: Buffer } {
  const lines: Buffer[] = [];
  let start = 0;
  for (let index = content.indexOf(0x0a); index !== -1; index = content.indexOf(0x0a, start)) {
    lines.push(content.subarray(start, index));
    start = index + 1;
  }
  return { lines, tail: content.subarray(start) };
}

export function sealBytes(seal: Seal): Buffer {
  return Buffer.from(`${canonicalize(seal)}\n`, 'utf8');
}

/** Parses and checks a seal file's content. Throws `ArchiveCorruptError`. */
export function parseSeal(content: Buffer, stream: string, firstSeq: number): Seal {
  let seal: Seal;
  try {
    seal = JSON.parse(content.toString('utf8')) as Seal;
  } catch {
    throw new ArchiveCorruptError(`seal of segment ${firstSeq} in stream ${stream} is not JSON`, { stream, seq: firstSeq });
  }
  const valid =
    typeof seal === 'object' &&
    seal !== null &&
    seal.v === 1 &&
    seal.format === SEAL_FORMAT &&
    seal.stream === stream &&
    seal.firstSeq === firstSeq &&
    Number.isSafeInteger(seal.lastSeq) &&
    seal.lastSeq >= firstSeq &&
    Number.isSafeInteger(seal.bytes) &&
    isSha256Hex(seal.lastHash) &&
    isSha256Hex(seal.sha256);
  if (!valid) throw new ArchiveCorruptError(`seal of segment ${firstSeq} in stream ${stream} is malformed`, { stream, seq: firstSeq });
  return seal;
}
