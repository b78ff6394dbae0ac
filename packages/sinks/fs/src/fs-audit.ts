/**
 * Physical checks of an archive directory that the record chain cannot make on its own:
 * every sealed segment still has exactly the size and SHA-256 its seal states (a truncated or
 * edited sealed segment is caught even when it is the last one), only the last segment of a
 * stream is unsealed, sealed files are read-only, no checkpoint note was removed from beside
 * its timestamp token, nothing unexpected sits in the tree, every archive file is a regular
 * file (no FIFO, device or symbolic link), and the newest segment ends in a complete record —
 * a partial last line (torn tail) is named with its byte offset.
 */
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { type AuditFinding, MAX_RECORD_BYTES, OffchannelError, isArchiveLogName, isSha256Hex, isStreamName } from '@offchannel/core';
import { ARCHIVE_MARKER, type ArchiveLayout, parseCheckpointFileName, parseSealFileName, parseSegmentFileName } from './archive-layout.ts';
import { isNotFound, openRegularFile, readRegularFile } from './fs-utils.ts';
import { PRUNED_FILE, type PrunedPrefix, readPrunedPrefix } from './pruned-prefix.ts';
import type { SegmentDigests } from './segment-digests.ts';
import { listSegments, parseSeal, splitLines } from './segments.ts';

const TOP_LEVEL = new Set(['attestations', ARCHIVE_MARKER, 'streams', 'blobs', 'checkpoints', 'tiles', 'quarantine', 'locks', 'tmp']);

/**
 * Audits the whole archive, or with `streams` only those streams' files. With `since` (stream →
 * records an earlier audit verified), a sealed segment that ends at or before that record is
 * not hashed again (its seal and file mode still are checked). With `digests`, a sealed segment
 * the verify pass hashed as it read it, unchanged since, is not read again (segment-digests.ts).
 */
export async function* auditArchive(layout: ArchiveLayout, streams?: readonly string[], since?: ReadonlyMap<string, number>, digests?: SegmentDigests): AsyncIterable<AuditFinding> {
  try {
    yield* auditFiles(layout, streams, since, digests);
  } finally {
    digests?.clear();
  }
}

async function* auditFiles(layout: ArchiveLayout, streams: readonly string[] | undefined, since: ReadonlyMap<string, number> | undefined, digests: SegmentDigests | undefined): AsyncIterable<AuditFinding> {
  if (streams) {
    for (const stream of streams) {
      if (isStreamName(stream)) yield* auditStreamFiles(layout, stream, since?.get(stream) ?? 0, digests);
    }
    return;
  }
  for (const name of await readdir(layout.root)) {
    if (!TOP_LEVEL.has(name)) yield { code: 'UNEXPECTED_FILE', message: `unexpected entry ${name} at the top of the archive` };
  }
  for (const stream of await entries(layout.streamsDir)) {
    if (!isStreamName(stream) || !(await isDirectory(layout.streamDir(stream)))) {
      yield { code: 'UNEXPECTED_FILE', message: `streams/${stream} is not a stream directory` };
      continue;
    }
    yield* auditStream(layout, stream, since?.get(stream) ?? 0, digests);
  }
  for (const entry of await direntries(layout.blobsDir)) {
    if (!isSha256Hex(entry.name)) yield { code: 'UNEXPECTED_FILE', message: `blobs/sha256/${String(entry.name)} is not named by a SHA-256` };
    else if (!entry.isFile()) yield notRegular(`blobs/sha256/${entry.name}`, entry);
  }
  for (const stream of await entries(path.join(layout.root, 'checkpoints'))) {
    if (!(await isDirectory(layout.checkpointsDir(stream)))) {
      yield { code: 'UNEXPECTED_FILE', message: `checkpoints/${stream} is not a directory` };
      continue;
    }
    if (isStreamName(stream) || isArchiveLogName(stream)) yield* auditCheckpoints(layout, stream);
    else yield { code: 'UNEXPECTED_FILE', message: `checkpoints/${String(stream)} is not named by a stream or an archive log` };
  }
  for (const stream of await entries(path.join(layout.root, 'tiles'))) {
    if (isStreamName(stream) || isArchiveLogName(stream)) yield* auditTiles(layout, stream);
  }
}

/** One stream's segments, seals, checkpoints and tiles. */
async function* auditStreamFiles(layout: ArchiveLayout, stream: string, verified: number, digests: SegmentDigests | undefined): AsyncIterable<AuditFinding> {
  if (await isDirectory(layout.streamDir(stream))) yield* auditStream(layout, stream, verified, digests);
  if (await isDirectory(layout.checkpointsDir(stream))) yield* auditCheckpoints(layout, stream);
  yield* auditTiles(layout, stream);
}

async function* auditCheckpoints(layout: ArchiveLayout, stream: string): AsyncIterable<AuditFinding> {
  const notes = new Set<number>();
  const tokens = new Set<number>();
  for (const entry of await direntries(layout.checkpointsDir(stream))) {
    const name = entry.name;
    const parsed = parseCheckpointFileName(name);
    if (!parsed) {
      yield { code: 'UNEXPECTED_FILE', message: `checkpoints/${stream}/${name} is not a checkpoint file`, stream };
      continue;
    }
    if (!entry.isFile()) yield { ...notRegular(`checkpoints/${stream}/${name}`, entry), stream, seq: parsed.size };
    if (parsed.file === 'note') notes.add(parsed.size);
    else tokens.add(parsed.size);
  }
  // A token or a witness's cosigned copy is stored only after its note: alone, the note was removed.
  for (const size of tokens) {
    if (!notes.has(size)) yield { code: 'CHECKPOINT_NOTE_MISSING', stream, seq: size, message: `stream ${stream}: the checkpoint at size ${size} has a timestamp token or a witness cosignature but its signed note is missing — it was removed` };
  }
}

/** Every tile file is a regular file (a link could lead outside the archive, a FIFO hangs a reader). */
async function* auditTiles(layout: ArchiveLayout, stream: string): AsyncIterable<AuditFinding> {
  const root = layout.tilesDir(stream);
  const pending = [root];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    for (const entry of await direntries(dir)) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) pending.push(file);
      else if (!entry.isFile()) yield { ...notRegular(layout.name(file), entry), stream };
    }
  }
}

async function* auditStream(layout: ArchiveLayout, stream: string, verified: number, digests: SegmentDigests | undefined): AsyncIterable<AuditFinding> {
  const names = await entries(layout.streamDir(stream));
  const segments = await listSegments(layout, stream);
  const segmentSeqs = new Set(segments.map((segment) => segment.firstSeq));
  for (const entry of await direntries(layout.streamDir(stream))) {
    if (!entry.isFile()) yield { ...notRegular(`streams/${stream}/${entry.name}`, entry), stream };
  }
  for (const name of names) {
    const sealOf = parseSealFileName(name);
    if (sealOf !== undefined && !segmentSeqs.has(sealOf)) {
      yield { code: 'SEGMENT_MISSING', stream, seq: sealOf, message: `stream ${stream} seq ${sealOf}: segment ${name.replace('.seal.json', '.jsonl')} is missing but its seal exists` };
    } else if (sealOf === undefined && parseSegmentFileName(name) === undefined && name !== PRUNED_FILE) {
      yield { code: 'UNEXPECTED_FILE', stream, message: `streams/${stream}/${name} is not a segment or seal` };
    }
  }
  let prefix: PrunedPrefix | undefined;
  try {
    prefix = await readPrunedPrefix(layout, stream);
  } catch (error) {
    if (!OffchannelError.isInstance(error)) throw error;
    yield { code: 'PRUNED_PREFIX_INVALID', stream, message: error.message };
  }
  // A pruned spool keeps whole segments from the one after its pruned prefix.
  const first = segments.find((segment) => segment.firstSeq > (prefix?.throughSeq ?? 0));
  if (prefix && first && first.firstSeq !== prefix.throughSeq + 1) {
    yield { code: 'SEGMENT_MISSING', stream, seq: prefix.throughSeq + 1, message: `stream ${stream} seq ${prefix.throughSeq + 1}: the spool was pruned through seq ${prefix.throughSeq} but its next segment starts at seq ${first.firstSeq}` };
  }
  for (const [index, segment] of segments.entries()) {
    const isLast = index === segments.length - 1;
    if (!segment.sealed) {
      if (!isLast) yield { code: 'SEGMENT_UNSEALED', stream, seq: segment.firstSeq, message: `stream ${stream} seq ${segment.firstSeq}: segment is followed by another but has no seal` };
      else yield* auditTail(layout, stream, segment.path);
      continue;
    }
    let seal;
    let content;
    let read;
    try {
      seal = parseSeal(await readRegularFile(segment.sealPath, layout.name(segment.sealPath)), stream, segment.firstSeq);
      // Hashed by the earlier audit, or by this verify pass as it read the records (unchanged since).
      read = seal.lastSeq <= verified ? undefined : await digests?.take(segment.path);
      if (seal.lastSeq <= verified || (read?.bytes === seal.bytes && read.sha256 === seal.sha256)) content = undefined;
      else content = await readRegularFile(segment.path, layout.name(segment.path));
    } catch (error) {
      if (OffchannelError.hasCode(error, 'FILE_NOT_REGULAR')) continue; // reported above
      if (!OffchannelError.isInstance(error)) throw error;
      yield { code: 'SEAL_INVALID', stream, seq: segment.firstSeq, message: error.message };
      continue;
    }
    const digest = content && createHash('sha256').update(content).digest('hex');
    if (content && (content.length !== seal.bytes || digest !== seal.sha256)) {
      const { lines } = splitLines(content);
      const intact = Math.min(lines.length, seal.lastSeq - seal.firstSeq + 1);
      const seq = content.length < seal.bytes ? seal.firstSeq + intact : seal.firstSeq;
      const what = content.length < seal.bytes ? `truncated to ${content.length} of ${seal.bytes} bytes` : `altered (${content.length} bytes, SHA-256 ${digest}; seal says ${seal.bytes} bytes, ${seal.sha256})`;
      yield { code: 'SEGMENT_SEAL_MISMATCH', stream, seq, message: `stream ${stream} seq ${seq}: sealed segment ${path.basename(segment.path)} ${what}` };
    } else if (content && read && (read.bytes !== seal.bytes || read.sha256 !== seal.sha256)) {
      // The records were verified from bytes that do not match the seal; the file matches it again now.
      const what = `altered while it was verified (${read.bytes} bytes, SHA-256 ${read.sha256} when its records were read; seal says ${seal.bytes} bytes, ${seal.sha256})`;
      yield { code: 'SEGMENT_SEAL_MISMATCH', stream, seq: seal.firstSeq, message: `stream ${stream} seq ${seal.firstSeq}: sealed segment ${path.basename(segment.path)} ${what}` };
    }
    for (const file of [segment.path, segment.sealPath]) {
      if (((await lstat(file)).mode & 0o222) !== 0) {
        yield { code: 'SEALED_FILE_WRITABLE', stream, seq: segment.firstSeq, message: `stream ${stream}: sealed file ${path.basename(file)} is writable; it should be read-only (0444)` };
      }
    }
  }
}

/**
 * The newest segment's end: bytes after its last newline are a partial line — an append in
 * progress or a write torn by a crash (recovery moves it aside), never an acknowledged record,
 * so it is a warning that names where it starts. A partial line longer than any record can be
 * was not written by a writer at all: a failure.
 */
async function* auditTail(layout: ArchiveLayout, stream: string, file: string): AsyncIterable<AuditFinding> {
  const handle = await openRegularFile(file, layout.name(file)).catch(() => undefined); // a non-regular file is reported above
  if (!handle) return;
  let size: number;
  let end: Buffer;
  try {
    size = (await handle.stat()).size;
    const window = Math.min(size, MAX_RECORD_BYTES + 1);
    end = Buffer.alloc(window);
    const { bytesRead } = await handle.read(end, 0, window, size - window);
    end = end.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  if (end.length === 0 || end.at(-1) === 0x0a) return;
  const newline = end.lastIndexOf(0x0a);
  const name = layout.name(file);
  if (newline === -1 && end.length > MAX_RECORD_BYTES) {
    yield { code: 'SEGMENT_TAIL_INVALID', stream, message: `stream ${stream}: ${name} ends in more than ${MAX_RECORD_BYTES} bytes without a newline (from before byte offset ${size - end.length}) — longer than any record, so not an append in progress; the file was altered` };
    return;
  }
  const offset = size - end.length + newline + 1;
  yield { code: 'TORN_TAIL', severity: 'warning', stream, message: `stream ${stream}: ${name} ends in a partial line of ${size - offset} bytes at byte offset ${offset} — an append in progress or a write torn by a crash; it is not a record and was not verified (the writer's recovery moves it to quarantine/)` };
}

function notRegular(file: string, entry: Dirent): AuditFinding {
  const what = entry.isSymbolicLink() ? 'a symbolic link' : entry.isFIFO() ? 'a FIFO (named pipe)' : entry.isDirectory() ? 'a directory' : entry.isSocket() ? 'a socket' : 'a device or other special file';
  return { code: 'FILE_NOT_REGULAR', message: `${file} is ${what}, not a regular file; an archive holds only regular files` };
}

/** Entries of `dir` with their types (not following links), sorted; none if it does not exist. */
async function direntries(dir: string): Promise<Dirent[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (error) {
    if (isNotFound(error) || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw error;
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

/** A directory, not a link to one (a link could lead outside the archive). */
async function isDirectory(file: string): Promise<boolean> {
  return (await lstat(file).catch(() => undefined))?.isDirectory() ?? false;
}
