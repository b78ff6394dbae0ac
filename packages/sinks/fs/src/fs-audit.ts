/**
 * Physical checks of an archive directory that the record chain cannot make on its own:
 * every sealed segment still has exactly the size and SHA-256 its seal states (a truncated or
 * edited sealed segment is caught even when it is the last one), only the last segment of a
 * stream is unsealed, sealed files are read-only, no checkpoint note was removed from beside
 * its timestamp token, and nothing unexpected sits in the tree.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { type AuditFinding, isSha256Hex, isStreamName } from '@offchannel/core';
import { ARCHIVE_MARKER, type ArchiveLayout, parseCheckpointFileName, parseSealFileName, parseSegmentFileName } from './archive-layout.ts';
import { isNotFound } from './fs-utils.ts';
import { listSegments, parseSeal, splitLines } from './segments.ts';

const TOP_LEVEL = new Set([ARCHIVE_MARKER, 'streams', 'blobs', 'checkpoints', 'tiles', 'quarantine', 'locks', 'tmp']);

export async function* auditArchive(layout: ArchiveLayout): AsyncIterable<AuditFinding> {
  for (const name of await readdir(layout.root)) {
    if (!TOP_LEVEL.has(name)) yield { code: 'UNEXPECTED_FILE', message: `unexpected entry ${name} at the top of the archive` };
  }
  for (const stream of await entries(layout.streamsDir)) {
    if (!isStreamName(stream) || !(await isDirectory(layout.streamDir(stream)))) {
      yield { code: 'UNEXPECTED_FILE', message: `streams/${stream} is not a stream directory` };
      continue;
    }
    yield* auditStream(layout, stream);
  }
  for (const name of await entries(layout.blobsDir)) {
    if (!isSha256Hex(name)) yield { code: 'UNEXPECTED_FILE', message: `blobs/sha256/${String(name)} is not named by a SHA-256` };
  }
  for (const stream of await entries(path.join(layout.root, 'checkpoints'))) {
    if (!(await isDirectory(layout.checkpointsDir(stream)))) {
      yield { code: 'UNEXPECTED_FILE', message: `checkpoints/${stream} is not a directory` };
      continue;
    }
    const notes = new Set<number>();
    const tokens: number[] = [];
    for (const name of await entries(layout.checkpointsDir(stream))) {
      const parsed = parseCheckpointFileName(name);
      if (!isStreamName(stream) || !parsed) yield { code: 'UNEXPECTED_FILE', message: `checkpoints/${stream}/${name} is not a checkpoint file`, stream };
      else if (parsed.file === 'note') notes.add(parsed.size);
      else tokens.push(parsed.size);
    }
    // A token is stored only after its note: a token alone means the note was removed.
    for (const size of tokens) {
      if (!notes.has(size)) yield { code: 'CHECKPOINT_NOTE_MISSING', stream, seq: size, message: `stream ${stream}: the checkpoint at size ${size} has a timestamp token but its signed note is missing — it was removed` };
    }
  }
}

async function* auditStream(layout: ArchiveLayout, stream: string): AsyncIterable<AuditFinding> {
  const names = await entries(layout.streamDir(stream));
  const segments = await listSegments(layout, stream);
  const segmentSeqs = new Set(segments.map((segment) => segment.firstSeq));
  for (const name of names) {
    const sealOf = parseSealFileName(name);
    if (sealOf !== undefined && !segmentSeqs.has(sealOf)) {
      yield { code: 'SEGMENT_MISSING', stream, seq: sealOf, message: `stream ${stream} seq ${sealOf}: segment ${name.replace('.seal.json', '.jsonl')} is missing but its seal exists` };
    } else if (sealOf === undefined && parseSegmentFileName(name) === undefined) {
      yield { code: 'UNEXPECTED_FILE', stream, message: `streams/${stream}/${name} is not a segment or seal` };
    }
  }
  for (const [index, segment] of segments.entries()) {
    const isLast = index === segments.length - 1;
    if (!segment.sealed) {
      if (!isLast) yield { code: 'SEGMENT_UNSEALED', stream, seq: segment.firstSeq, message: `stream ${stream} seq ${segment.firstSeq}: segment is followed by another but has no seal` };
      continue;
    }
    let seal;
    try {
      seal = parseSeal(await readFile(segment.sealPath), stream, segment.firstSeq);
    } catch (error) {
      yield { code: 'SEAL_INVALID', stream, seq: segment.firstSeq, message: (error as Error).message };
      continue;
    }
    const content = await readFile(segment.path);
    const digest = createHash('sha256').update(content).digest('hex');
    if (content.length !== seal.bytes || digest !== seal.sha256) {
      const { lines } = splitLines(content);
      const intact = Math.min(lines.length, seal.lastSeq - seal.firstSeq + 1);
      const seq = content.length < seal.bytes ? seal.firstSeq + intact : seal.firstSeq;
      const what = content.length < seal.bytes ? `truncated to ${content.length} of ${seal.bytes} bytes` : `altered (${content.length} bytes, SHA-256 ${digest}; seal says ${seal.bytes} bytes, ${seal.sha256})`;
      yield { code: 'SEGMENT_SEAL_MISMATCH', stream, seq, message: `stream ${stream} seq ${seq}: sealed segment ${path.basename(segment.path)} ${what}` };
    }
    for (const file of [segment.path, segment.sealPath]) {
      if (((await stat(file)).mode & 0o222) !== 0) {
        yield { code: 'SEALED_FILE_WRITABLE', stream, seq: segment.firstSeq, message: `stream ${stream}: sealed file ${path.basename(file)} is writable; it should be read-only (0444)` };
      }
    }
  }
}

async function entries(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (error) {
    if (isNotFound(error) || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw error;
  }
}

async function isDirectory(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isDirectory() ?? false;
}
