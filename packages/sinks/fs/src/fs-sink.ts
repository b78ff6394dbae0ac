/**
 * `FsSink`: the embedded default archive — a directory of append-only segment files,
 * content-addressed blobs and checkpoints. It is also the durable local spool in front of
 * remote sinks. Layout and verification by hand: `docs/storage-format.md`.
 *
 * Guarantees: `retention: 'append-only'` (sealed files are read-only, but an administrator
 * could still change them — tampering is detectable, not prevented; use S3 Object Lock for
 * WORM), `durability: 'fsync'`, `exclusiveWriter: 'lock'` (one writer per stream on a host).
 */
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { lstat, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  type AppendBatch,
  ArchiveCorruptError,
  type AttestationId,
  type AuditFinding,
  BlobMismatchError,
  type BlobInfo,
  type CheckpointFile,
  type CheckpointRange,
  ClosedError,
  InvalidBatchError,
  type Logger,
  MAX_RECORD_BYTES,
  NotRegularFileError,
  ReadOnlySinkError,
  RecordsPrunedError,
  SINK_SPEC_VERSION,
  type Sink,
  SinkConflictError,
  SinkUnsuitableError,
  type StoredRecord,
  type StreamHead,
  type TileId,
  ZERO_HASH,
  assertAppendBatch,
  assertAttestationId,
  assertBlobName,
  assertCheckpointKey,
  assertStreamName,
  assertTileKey,
  checkpointRangeAfter,
  isArchiveLogName,
  isAttestationDay,
  isHostId,
  isStreamName,
  knownBlobSha256,
  noopLogger,
  redactingLogger,
  sha256Hex,
  tilePath,
} from '@offchannel/core';
import { ARCHIVE_FORMAT, ATTESTATION_FILE, ArchiveLayout, padSeq, parseCheckpointFileName } from './archive-layout.ts';
import { BlobBatchWriter } from './blob-batch-writer.ts';
import { type BlobPruneRequest, type BlobPruneResult, BlobPruneGuard, SpoolPresence } from './blob-prune.ts';
import { auditArchive } from './fs-audit.ts';
import { SegmentDigests } from './segment-digests.ts';
import { SegmentPieces, countLines } from './segment-pieces.ts';
import { createReadOnlyFile, ensureDirectory, isNotFound, openRegularFile, readIfExists, readRegularFile, syncDirectory, syncFile } from './fs-utils.ts';
import { IoLimit } from './io-limit.ts';
import { type PrunedPrefix, prunedHead, readPrunedPrefix, writePrunedPrefix } from './pruned-prefix.ts';
import { listSegments, parseSeal, splitLines } from './segments.ts';
import { StreamAppender } from './stream-appender.ts';

/** What {@link FsSink.prune} may remove (see `PrunableSpool` in core). */
export interface PruneRequest {
  /** No record at or above this seq is pruned. */
  readonly below: number;
  /** Segments sealed before this time may go. */
  readonly sealedBefore?: Date;
  /** Segments may go regardless of age while the stream's segments exceed this many bytes. */
  readonly maxBytes?: number;
  /** Clock for the prefix's `at` (default: now). */
  readonly now?: Date;
}

export interface PruneResult {
  /** Segments and bytes removed by this call. */
  readonly segments: number;
  readonly bytes: number;
  /** The last pruned seq after this call (0: nothing pruned, ever). */
  readonly throughSeq: number;
  /** Bytes of the stream's segments still in the spool. */
  readonly heldBytes: number;
}

export interface FsSinkOptions {
  /** The archive directory. Created (with its marker) when opened for writing. */
  readonly dir: string;
  /** Open without writing anything, not even locks. Default false. */
  readonly readOnly?: boolean;
  /** A segment is sealed once it reaches this size. Default 32 MiB. */
  readonly segmentBytes?: number;
  readonly logger?: Logger;
}

const DEFAULT_SEGMENT_BYTES = 32 * 1024 * 1024;
/** Blob writes in flight per sink: enough to keep the disk busy, far below a 1,024 descriptor limit. */
const BLOB_WRITES_AT_ONCE = 64;
/** Blobs up to this size are written in batches on worker threads; larger ones one by one. */
const BATCHED_BLOB_BYTES = 256 * 1024;
/** Small blob writes in flight per sink: enough to fill every batch writer thread's next batch. */
const SMALL_BLOB_WRITES_AT_ONCE = 256;

/**
 * Opens the archive in `options.dir`. For writing, creates it if missing (a non-empty
 * directory that is not an archive is refused). For reading, it must exist.
 */
export async function openFsSink(options: FsSinkOptions): Promise<FsSink> {
  const layout = new ArchiveLayout(options.dir);
  const readOnly = options.readOnly ?? false;
  const marker = await readIfExists(layout.marker, layout.name(layout.marker));
  if (marker) {
    let parsed: { format?: unknown; version?: unknown };
    try {
      parsed = JSON.parse(marker.toString('utf8')) as typeof parsed;
    } catch {
      parsed = {};
    }
    if (parsed.format !== ARCHIVE_FORMAT.format || parsed.version !== ARCHIVE_FORMAT.version) {
      throw new SinkUnsuitableError(`${layout.marker} is not an offchannel archive marker of version ${ARCHIVE_FORMAT.version}.`);
    }
  } else if (readOnly) {
    throw new SinkUnsuitableError(`no offchannel archive at ${layout.root} (missing ${path.basename(layout.marker)}).`);
  } else {
    const existing = await readdir(layout.root).catch((error: unknown) => {
      if (isNotFound(error)) return [];
      throw error;
    });
    if (existing.length > 0) {
      throw new SinkUnsuitableError(`${layout.root} is not empty and is not an offchannel archive; choose an empty or new directory.`);
    }
    await ensureDirectory(layout.root);
    await ensureDirectory(layout.tmpDir);
    await createReadOnlyFile(layout.tmpDir, layout.marker, Buffer.from(`${JSON.stringify(ARCHIVE_FORMAT)}\n`, 'utf8'));
  }
  // A linked archive directory could lead reads (and writes) outside the archive.
  for (const dir of [layout.streamsDir, path.dirname(layout.blobsDir), layout.blobsDir, path.join(layout.root, 'checkpoints'), path.join(layout.root, 'tiles')]) {
    await assertNotLinked(dir, layout.name(dir));
  }
  if (!readOnly) {
    await ensureDirectory(layout.tmpDir);
    await ensureDirectory(layout.blobsDir);
    await removeStaleStaging(layout.tmpDir);
  }
  const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes < 1) throw new InvalidBatchError('segmentBytes must be a positive integer');
  // A writable sink holds the spool's shared writer lock while open: a blob-pruning pass runs
  // only while no other sink holds it (blob-prune.ts).
  const presence = readOnly ? undefined : await SpoolPresence.open(layout);
  return new FsSink(layout, readOnly, segmentBytes, redactingLogger(options.logger ?? noopLogger).child({ component: 'sink-fs' }), presence);
}

/** Bytes read at a time; memory stays flat and a caller that stops early stops the read. */
const READ_CHUNK = 1024 * 1024;

/**
 * The lines of an open segment (closed when done) from byte `offset` (a line start) on, each with the offset just past
 * its newline (`next`); a final line without a newline is yielded only with `keepTail`, with
 * `next` -1. A line longer than any record can be (`MAX_RECORD_BYTES`) is yielded cut to one
 * byte over the limit — it then fails decoding as too large — and the rest of it is skipped,
 * not buffered: time and memory stay linear in the file size, whatever the file holds.
 */
async function* readLines(handle: FileHandle, keepTail: boolean, offset = 0): AsyncGenerator<{ readonly bytes: Uint8Array; readonly next: number }> {
  try {
    const chunk = Buffer.allocUnsafe(READ_CHUNK);
    /** The current line's bytes from earlier reads (never a newline; at most MAX_RECORD_BYTES + 1). */
    let carry: Buffer = Buffer.alloc(0);
    /** The current line is longer than a record can be; `carry` holds its first bytes. */
    let overlong = false;
    let position = offset;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      let read = chunk.subarray(0, bytesRead);
      let readAt = position;
      position += bytesRead;
      if (overlong) {
        const end = read.indexOf(0x0a);
        if (end === -1) continue;
        yield { bytes: new Uint8Array(carry.buffer, carry.byteOffset, carry.length), next: readAt + end + 1 };
        carry = Buffer.alloc(0);
        overlong = false;
        read = read.subarray(end + 1);
        readAt += end + 1;
      }
      // `data` starts at file offset `base`; its first `carry.length` bytes hold no newline.
      const base = readAt - carry.length;
      const data = carry.length > 0 ? Buffer.concat([carry, read]) : Buffer.from(read);
      let start = 0;
      for (let end = data.indexOf(0x0a, carry.length); end !== -1; end = data.indexOf(0x0a, start)) {
        yield { bytes: new Uint8Array(data.buffer, data.byteOffset + start, end - start), next: base + end + 1 };
        start = end + 1;
      }
      carry = data.subarray(start);
      if (carry.length > MAX_RECORD_BYTES) {
        carry = Buffer.from(carry.subarray(0, MAX_RECORD_BYTES + 1));
        overlong = true;
      }
    }
    if (keepTail && carry.length > 0) yield { bytes: new Uint8Array(carry.buffer, carry.byteOffset, carry.length), next: -1 };
  } finally {
    await handle.close();
  }
}

/** Staged files older than this are leftovers of a crash, never a write in progress. */
const STALE_STAGING_MS = 10 * 60 * 1000;

/** Removes staging files a crashed writer left in `tmp/` (never archive content: see fs-utils). */
async function removeStaleStaging(dir: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(dir)) {
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info?.isFile() && now - info.mtimeMs > STALE_STAGING_MS) await rm(file, { force: true });
  }
}

export class FsSink implements Sink {
  readonly specVersion = SINK_SPEC_VERSION;
  readonly kind = 'fs';
  readonly guarantees = { retention: 'append-only', durability: 'fsync', exclusiveWriter: 'lock' } as const;
  readonly readOnly: boolean;
  /** Absolute path of the archive directory. */
  readonly dir: string;
  private readonly layout: ArchiveLayout;
  private readonly segmentBytes: number;
  /** Sealed segments as `readSegments` read them, for the audit (see segment-digests.ts). */
  private readonly segmentDigests = new SegmentDigests();
  /** Per stream: where the record `seq` starts in segment `segment` (from the last read). */
  private readonly positions = new Map<string, { segment: number; seq: number; offset: number }>();
  private readonly logger: Logger;
  private readonly appenders = new Map<string, Promise<StreamAppender>>();
  /** Appenders whose open has completed, for a synchronous fast path to the write. */
  private readonly openAppenders = new Map<string, StreamAppender>();
  /** Blobs this instance stored or fsync'd itself: known durable, no need to check again. */
  private readonly durableBlobs = new Set<string>();
  /** Streams whose checkpoint and tile directories were found not to be links. */
  private readonly unlinkedStreams = new Set<string>();
  /** Blob writes at once (each holds up to two file descriptors). */
  private readonly blobIo = new IoLimit(BLOB_WRITES_AT_ONCE);
  /** Small blob writes at once: batched, they hold at most a worker batch's descriptors each. */
  private readonly smallBlobIo = new IoLimit(SMALL_BLOB_WRITES_AT_ONCE);
  /** Writes small blobs in batches on worker threads; started with the first one. */
  private blobFiles: BlobBatchWriter | undefined;
  /** Blob pruning's marks and checks (blob-prune.ts). */
  private readonly blobGuard = new BlobPruneGuard();
  private readonly presence: SpoolPresence | undefined;
  private closed = false;

  /** Use {@link openFsSink}. */
  constructor(layout: ArchiveLayout, readOnly: boolean, segmentBytes: number, logger: Logger, presence?: SpoolPresence) {
    this.layout = layout;
    this.presence = presence;
    this.dir = layout.root;
    this.readOnly = readOnly;
    this.segmentBytes = segmentBytes;
    this.logger = logger;
  }

  async head(stream: string): Promise<StreamHead> {
    this.assertOpen();
    assertStreamName(stream);
    if (this.readOnly) return this.readHead(stream);
    const appender = await this.appender(stream);
    return appender.exclusive(async () => appender.currentHead);
  }

  async appendBatch(batch: AppendBatch): Promise<StreamHead> {
    this.assertWritable();
    assertAppendBatch(batch);
    // No await before the write when the stream is open and idle: the write is issued in the
    // caller's tick, so the disk starts while the caller goes on with other work.
    const open = this.openAppenders.get(batch.stream);
    const appender = open && !open.broken ? open : await this.appender(batch.stream);
    return appender.exclusive(async () => {
      this.assertWritable();
      const blobsChecked = this.blobGuard.beforeAppend(batch.records, (sha256) => this.durableBlobs.has(sha256), async (sha256) => (await this.statBlob(sha256)) !== undefined);
      if (blobsChecked) await blobsChecked;
      try {
        return await appender.append(batch);
      } catch (error) {
        // Bytes a read may have seen past the acknowledged end were cut: forget read positions.
        this.positions.delete(batch.stream);
        throw error;
      }
    });
  }

  async *read(stream: string, options?: { readonly fromSeq?: number }): AsyncIterable<StoredRecord> {
    this.assertOpen();
    assertStreamName(stream);
    const fromSeq = options?.fromSeq ?? 1;
    // Listed before the pruned prefix is read: a prune writes its prefix before it removes any
    // segment, so a segment missing from this listing is one the prefix read next covers.
    const segments = await listSegments(this.layout, stream);
    const prefix = await readPrunedPrefix(this.layout, stream);
    if (prefix && fromSeq <= prefix.throughSeq) throw new RecordsPrunedError(stream, prefix.throughSeq);
    // This instance's own writer knows what is acknowledged: records of an append still in
    // flight (written, not yet synced — it may yet be rolled back) are not returned.
    const writer = this.openAppenders.get(stream);
    const acknowledged = writer ? writer.currentHead.seq : Number.POSITIVE_INFINITY;
    /** The next seq the caller is owed. */
    let due = fromSeq;
    for (const [index, segment] of segments.entries()) {
      const next = segments[index + 1];
      if (next && next.firstSeq <= fromSeq) continue;
      const handle = await openRegularFile(segment.path, this.layout.name(segment.path));
      if (!handle) throw await this.segmentGone(stream, segment.path, due);
      // A partial last line of the active segment is an append in progress (or a torn tail
      // awaiting recovery): not a record. In a sealed segment it is damage: return it.
      const keepTail = segment.sealed || next !== undefined;
      // Continue where an earlier read of this segment stopped, instead of scanning it again
      // (segments only grow; the forwarder reads the newest records over and over).
      const known = this.positions.get(stream);
      const resume = known?.segment === segment.firstSeq && known.seq <= fromSeq;
      let seq = resume ? known.seq : segment.firstSeq;
      for await (const line of readLines(handle, keepTail, resume ? known.offset : 0)) {
        this.assertOpen();
        if (seq > acknowledged) return;
        seq++;
        // Positions are remembered only where a writer vouches for them: without one, bytes read
        // here may belong to another process's append that it has yet to roll back.
        if (writer && line.next !== -1) this.positions.set(stream, { segment: segment.firstSeq, seq, offset: line.next });
        if (seq - 1 >= fromSeq) {
          yield { seq: seq - 1, bytes: line.bytes };
          due = seq;
        }
      }
    }
  }

  /**
   * A segment listed a moment ago could not be opened: never skipped (its records would be a
   * silent gap in the read). A prune that ran meanwhile covers `due` with its new prefix: then
   * `RecordsPrunedError`, as at the start of a read (a reader through the archive of record
   * continues there). Otherwise the segment vanished for another reason: the spool is damaged.
   * Returns the error to throw.
   */
  private async segmentGone(stream: string, file: string, due: number): Promise<Error> {
    const prefix = await readPrunedPrefix(this.layout, stream);
    if (prefix && due <= prefix.throughSeq) return new RecordsPrunedError(stream, prefix.throughSeq);
    return new ArchiveCorruptError(`segment ${this.layout.name(file)} was removed while it was being read, and no pruning covers seq ${due}`, { stream, seq: due });
  }

  /**
   * The segments in line-aligned pieces of at most 4 MiB, for fast bulk verification (see
   * `Sink.readSegments`): each piece is a view of one buffer used again for the next piece
   * (segment-pieces.ts), so memory stays a few MiB whatever the segment size.
   */
  async *readSegments(stream: string): AsyncIterable<{ readonly firstSeq: number; readonly bytes: Uint8Array }> {
    this.assertOpen();
    assertStreamName(stream);
    const segments = await listSegments(this.layout, stream);
    const pruned = (await readPrunedPrefix(this.layout, stream))?.throughSeq ?? 0;
    const pieces = new SegmentPieces();
    for (const [index, segment] of segments.entries()) {
      // Left by a prune interrupted after its prefix was written: no longer part of the stream.
      if (segment.firstSeq <= pruned) continue;
      // A sealed segment is hashed as it is read, for the audit's seal check (segment-digests.ts).
      const identity = segment.sealed ? await this.segmentDigests.identify(segment.path) : undefined;
      const handle = await openRegularFile(segment.path, this.layout.name(segment.path));
      if (!handle) throw await this.segmentGone(stream, segment.path, segment.firstSeq);
      try {
        const digest = identity ? createHash('sha256') : undefined;
        // The active segment may end in an append in progress: stop at its last complete record.
        const whole = segment.sealed || index < segments.length - 1;
        let firstSeq = segment.firstSeq;
        for await (const bytes of pieces.read(handle, whole, digest)) {
          this.assertOpen();
          yield { firstSeq, bytes };
          firstSeq += countLines(bytes);
        }
        this.assertOpen();
        if (identity && digest) this.segmentDigests.rememberDigest(segment.path, identity, { bytes: pieces.bytesRead, sha256: digest.digest('hex') });
      } finally {
        await handle.close();
      }
    }
  }

  async pruned(stream: string): Promise<StreamHead | undefined> {
    this.assertOpen();
    assertStreamName(stream);
    const prefix = await readPrunedPrefix(this.layout, stream);
    return prefix ? prunedHead(prefix) : undefined;
  }

  /**
   * Spool pruning: removes the oldest sealed segments of `stream` whose records all lie below
   * `request.below` — which the caller (the forwarder) guarantees every target holds, with a
   * signed checkpoint at `below` or later — and that are old enough (`sealedBefore`) or that
   * the stream's spool exceeds `maxBytes` without. Never the stream's last segment, never out
   * of order (only a prefix goes), never past a segment that does not qualify. The pruned
   * prefix is written first, durably, then the files are removed (see `pruned-prefix.ts`).
   * Runs under the stream's writer lock, between appends. Blobs go by {@link pruneBlobs}.
   */
  async prune(stream: string, request: PruneRequest): Promise<PruneResult> {
    this.assertWritable();
    assertStreamName(stream);
    const appender = await this.appender(stream);
    return appender.exclusive(async () => {
      this.assertWritable();
      const before = await readPrunedPrefix(this.layout, stream);
      const segments = await listSegments(this.layout, stream);
      const sizes = await Promise.all(segments.map(async (segment) => (await stat(segment.path)).size));
      let held = 0;
      for (const [index, segment] of segments.entries()) if (segment.firstSeq > (before?.throughSeq ?? 0)) held += sizes[index] ?? 0;
      let prefix: PrunedPrefix | undefined = before;
      const doomed: string[] = [];
      for (const [index, segment] of segments.entries()) {
        if (index === segments.length - 1 || !segment.sealed) break;
        if (segment.firstSeq <= (before?.throughSeq ?? 0)) {
          doomed.push(segment.path, segment.sealPath); // left by an interrupted prune
          continue;
        }
        const seal = parseSeal(await readRegularFile(segment.sealPath, this.layout.name(segment.sealPath)), stream, segment.firstSeq);
        if (seal.lastSeq >= request.below) break;
        const old = request.sealedBefore !== undefined && (await stat(segment.sealPath)).mtimeMs < request.sealedBefore.getTime();
        const over = request.maxBytes !== undefined && held > request.maxBytes;
        if (!old && !over) break;
        held -= seal.bytes;
        prefix = {
          v: 1,
          format: 'offchannel-pruned-prefix',
          stream,
          throughSeq: seal.lastSeq,
          lastHash: seal.lastHash,
          segments: (prefix?.segments ?? 0) + 1,
          bytes: (prefix?.bytes ?? 0) + seal.bytes,
          at: (request.now ?? new Date()).toISOString(),
        };
        doomed.push(segment.path, segment.sealPath);
      }
      if (prefix && prefix !== before) await writePrunedPrefix(this.layout, prefix);
      if (doomed.length > 0) {
        for (const file of doomed) await rm(file, { force: true });
        await syncDirectory(this.layout.streamDir(stream));
        this.positions.delete(stream);
      }
      const pruned = prefix === before ? 0 : (prefix?.segments ?? 0) - (before?.segments ?? 0);
      const bytes = prefix === before ? 0 : (prefix?.bytes ?? 0) - (before?.bytes ?? 0);
      if (pruned > 0) this.logger.info({ stream, seq: prefix?.throughSeq, count: pruned, bytes }, 'pruned forwarded segments from the spool');
      return { segments: pruned, bytes, throughSeq: prefix?.throughSeq ?? 0, heldBytes: held };
    });
  }

  /**
   * Blob pruning: removes blobs no record still in the spool names (any stream), written before
   * `request.modifiedBefore`, that `request.held` confirms every forward target holds. Safe
   * against captures in this sink storing or naming the same blobs meanwhile; skipped while
   * another writable sink has the spool open. See blob-prune.ts.
   */
  async pruneBlobs(request: BlobPruneRequest): Promise<BlobPruneResult> {
    this.assertWritable();
    const presence = this.presence as SpoolPresence;
    const result = await this.blobGuard.prune(
      {
        layout: this.layout,
        forgetDurable: (sha256) => this.durableBlobs.delete(sha256),
        barrier: async () => {
          await Promise.all([...this.openAppenders.values()].map((appender) => appender.exclusive(async () => undefined)));
        },
        assertOpen: () => {
          this.assertOpen();
        },
      },
      presence,
      request,
    );
    if (result.blobs > 0) this.logger.info({ count: result.blobs, bytes: result.bytes }, 'pruned forwarded blobs from the spool');
    return result;
  }

  async streams(): Promise<readonly string[]> {
    this.assertOpen();
    let entries: Dirent[] = [];
    try {
      entries = await readdir(this.layout.streamsDir, { withFileTypes: true });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    // Anything that is not a directory with a valid stream name is not a stream (the audit reports it).
    const names = entries.filter((entry) => entry.isDirectory() && isStreamName(entry.name)).map((entry) => entry.name);
    const streams = new Set<string>();
    for (const name of names) {
      for (const segment of await listSegments(this.layout, name)) {
        // A segment listed a moment ago may be gone: a pruning pass removes old sealed ones.
        const size = await stat(segment.path).then(
          (info) => info.size,
          (error: unknown) => {
            if (isNotFound(error)) return 0;
            throw error;
          },
        );
        if (size > 0) {
          streams.add(name);
          break;
        }
      }
    }
    // A stream whose records are gone but whose checkpoints or tiles remain is still a stream:
    // verification must see it to report the removal.
    for (const [dir, holds] of [
      [path.join(this.layout.root, 'checkpoints'), (files: string[]) => files.some((file) => parseCheckpointFileName(file) !== undefined)],
      [path.join(this.layout.root, 'tiles'), (files: string[]) => files.length > 0],
    ] as const) {
      for (const name of await listDirectories(dir)) {
        if (streams.has(name) || !isStreamName(name)) continue;
        if (holds(await readdir(path.join(dir, name)))) streams.add(name);
      }
    }
    return [...streams].sort();
  }

  async putBlob(sha256: string, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertBlobName(sha256);
    if (!(bytes instanceof Uint8Array)) throw new BlobMismatchError(sha256, 'bytes must be a Uint8Array');
    if (knownBlobSha256(bytes) !== sha256) {
      // Not the recorder's own hashed copy (hashed-blob.ts): copied, then hashed, because the
      // bytes are written a turn or more later and the caller may change its array meanwhile.
      bytes = new Uint8Array(bytes);
      if (sha256Hex(bytes) !== sha256) throw new BlobMismatchError(sha256, 'bytes do not hash to this name; nothing was stored');
    }
    // Being pruned: wait for the pass, then store it again (never the fast path; blob-prune.ts).
    const pruning = this.blobGuard.beforePut(sha256);
    if (pruning) return pruning.then(() => this.putBlob(sha256, bytes));
    if (this.durableBlobs.has(sha256)) {
      this.blobGuard.handOut(sha256, Date.now());
      return { created: false };
    }
    // Written alone (large, or no writer thread runs: not yet, or no more): the thread pool's bound.
    const limit = bytes.length > BATCHED_BLOB_BYTES || this.blobFiles?.batching !== true ? this.blobIo : this.smallBlobIo;
    // Handed out while still tracked as a put in flight: never a moment a pass could take it.
    const store = limit.run(() => this.storeBlob(sha256, bytes)).then((stored) => {
      if (!stored.created) this.blobGuard.handOut(sha256, Date.now());
      return stored;
    });
    return this.blobGuard.track(sha256, store);
  }

  private async storeBlob(sha256: string, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable(); // the sink may have been closed while this write waited for a slot
    const target = this.layout.blob(sha256);
    if (this.durableBlobs.has(sha256)) return { created: false };
    // Written first, checked after: in a backlog nearly every blob is new, and looking for it
    // first cost one more thread-pool call (and a thrown ENOENT) per blob. The hard link never
    // replaces a file that is there (EEXIST): then that file is checked instead.
    if (await this.createBlobFile(target, bytes)) {
      this.rememberDurable(sha256);
      return { created: true };
    }
    if (!(await this.sameBlobStored(target, sha256))) throw new BlobMismatchError(sha256, 'a different, damaged file is stored under this name; run offchannel verify');
    // Another writer (or an earlier, crashed process) created it: it may not be durable yet.
    // A record naming it must not be acknowledged until it is, so make sure.
    await syncFile(target);
    await syncDirectory(this.layout.blobsDir);
    this.rememberDurable(sha256);
    return { created: false };
  }

  /**
   * A new blob file, durable (`createReadOnlyFile`'s steps): small ones in batches on the blob
   * writer's threads (blob-batch-writer.ts), large ones alone on libuv's pool. False if a file
   * already has the name.
   */
  private createBlobFile(target: string, bytes: Uint8Array): Promise<boolean> {
    if (bytes.length > BATCHED_BLOB_BYTES) return createReadOnlyFile(this.layout.tmpDir, target, bytes);
    return this.blobWriter().create(target, bytes);
  }

  /**
   * Starts the small-blob writer threads and resolves once they run. Optional: blobs put before
   * the threads run are written one by one (a first blob never waits for a thread to start);
   * a caller about to write a backlog can call this first so that all of it goes in batches.
   */
  async prepareBlobWriters(): Promise<void> {
    this.assertWritable();
    await this.blobWriter().ready();
  }

  private blobWriter(): BlobBatchWriter {
    this.blobFiles ??= new BlobBatchWriter(this.layout.tmpDir, syncDirectory, (file, blob) => createReadOnlyFile(this.layout.tmpDir, file, blob), undefined, undefined, () => {
      this.logger.warn({}, 'a blob writer thread could not start or died; every blob is now written alone on the thread pool (slower, same durability) until the sink is reopened');
    });
    return this.blobFiles;
  }

  /**
   * Creates `target` with `bytes`, or confirms (and makes durable) an identical file already
   * there — stored by another writer or an earlier, crashed process. `undefined` when a
   * different file holds the name: the caller reports the conflict.
   */
  private async writeOnce(target: string, bytes: Uint8Array): Promise<{ readonly created: boolean } | undefined> {
    await ensureDirectory(path.dirname(target));
    if (await createReadOnlyFile(this.layout.tmpDir, target, bytes)) return { created: true };
    if (!(await readIfExists(target, this.layout.name(target)))?.equals(bytes)) return undefined;
    await syncFile(target);
    await syncDirectory(path.dirname(target));
    return { created: false };
  }

  private rememberDurable(sha256: string): void {
    if (this.durableBlobs.size >= 100_000) this.durableBlobs.clear();
    this.durableBlobs.add(sha256);
  }

  async getBlob(sha256: string): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertBlobName(sha256);
    const target = this.layout.blob(sha256);
    const bytes = await readIfExists(target, this.layout.name(target));
    return bytes ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) : undefined;
  }

  async statBlob(sha256: string): Promise<BlobInfo | undefined> {
    this.assertOpen();
    assertBlobName(sha256);
    // Opened and fstat'd rather than stat'd, so a link or FIFO is refused as it is on reading.
    const target = this.layout.blob(sha256);
    const handle = await openRegularFile(target, this.layout.name(target));
    if (!handle) return undefined;
    try {
      return { sha256, size: (await handle.stat()).size };
    } finally {
      await handle.close();
    }
  }

  async putCheckpoint(stream: string, size: number, file: CheckpointFile, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertCheckpointKey(stream, size, file);
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InvalidBatchError('checkpoint bytes must be a non-empty Uint8Array');
    const stored = await this.writeOnce(this.layout.checkpoint(stream, size, file), bytes);
    if (stored) return stored;
    throw new SinkConflictError(stream, `a different ${file} checkpoint for tree size ${size} is already stored`);
  }

  async getCheckpoint(stream: string, size: number, file: CheckpointFile): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertCheckpointKey(stream, size, file);
    await this.assertStreamDirsNotLinked(stream);
    const target = this.layout.checkpoint(stream, size, file);
    const bytes = await readIfExists(target, this.layout.name(target));
    return bytes ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) : undefined;
  }

  async checkpoints(stream: string, range?: CheckpointRange): Promise<readonly number[]> {
    return (await this.checkpointFiles(stream, range)).filter((entry) => entry.file === 'note').map((entry) => entry.size);
  }

  /**
   * One `readdir` of `checkpoints/<stream>/`, whatever `range` asks: a directory has no range
   * read, so this costs what the stream's whole history of checkpoints costs (about 0.6 s for
   * 525,600 names, a year at one a minute). Paths that run often learn new checkpoints
   * otherwise (the forwarder: from the spooling sink's notifications).
   */
  async checkpointFiles(stream: string, range?: CheckpointRange): Promise<readonly { readonly size: number; readonly file: CheckpointFile }[]> {
    this.assertOpen();
    const after = checkpointRangeAfter(stream, range);
    await this.assertStreamDirsNotLinked(stream);
    const names = await readdir(this.layout.checkpointsDir(stream)).catch((error: unknown) => {
      if (isNotFound(error)) return [];
      throw error;
    });
    // Names start with the zero-padded size: those of sizes ≤ after sort before `<after>/`.
    const floor = after > 0 ? `${padSeq(after)}/` : '';
    return names
      .filter((name) => name > floor)
      .map(parseCheckpointFileName)
      .filter((parsed) => parsed !== undefined)
      .filter((parsed) => parsed.size > after)
      .sort((a, b) => a.size - b.size || (a.file < b.file ? -1 : 1));
  }

  async putTile(stream: string, tile: TileId, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertTileKey(stream, tile, bytes);
    const stored = await this.writeOnce(this.layout.tile(stream, tile), bytes);
    if (stored) return stored;
    throw new SinkConflictError(stream, `a different tile ${tilePath(tile)} is already stored`);
  }

  async getTile(stream: string, tile: TileId): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertTileKey(stream, tile);
    await this.assertStreamDirsNotLinked(stream);
    const target = this.layout.tile(stream, tile);
    const bytes = await readIfExists(target, this.layout.name(target));
    return bytes ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) : undefined;
  }

  /** Physical checks: seals match their segments, sealed files are read-only, no stray files. */
  audit(options?: { readonly streams?: readonly string[]; readonly since?: ReadonlyMap<string, number> }): AsyncIterable<AuditFinding> {
    this.assertOpen();
    return auditArchive(this.layout, options?.streams, options?.since, this.segmentDigests);
  }

  async putAttestation(id: AttestationId, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertAttestationId(id);
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InvalidBatchError('attestation bytes must be a non-empty Uint8Array');
    await this.assertAttestationDirsNotLinked(id.host);
    const stored = await this.writeOnce(this.layout.attestation(id), bytes);
    if (stored) return stored;
    throw new SinkConflictError(`attestations/${id.host}`, `a different attestation ${id.seq} is already stored`);
  }

  async getAttestation(id: AttestationId): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertAttestationId(id);
    await this.assertAttestationDirsNotLinked(id.host);
    const target = this.layout.attestation(id);
    const bytes = await readIfExists(target, this.layout.name(target));
    return bytes ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) : undefined;
  }

  async archiveLogs(): Promise<readonly string[]> {
    this.assertOpen();
    return (await listDirectories(path.join(this.layout.root, 'checkpoints'))).filter((name) => isArchiveLogName(name)).sort();
  }

  async attestationHosts(): Promise<readonly string[]> {
    this.assertOpen();
    await assertNotLinked(this.layout.attestationsDir, 'attestations');
    return (await listDirectories(this.layout.attestationsDir)).filter((name) => isHostId(name)).sort();
  }

  async attestations(host: string, range?: { readonly fromDay?: string; readonly toDay?: string }): Promise<readonly AttestationId[]> {
    this.assertOpen();
    assertAttestationId({ host, day: '1970-01-01', seq: 1 });
    await this.assertAttestationDirsNotLinked(host);
    const hostDir = path.join(this.layout.attestationsDir, host);
    const days = (await listDirectories(hostDir))
      .filter((day) => isAttestationDay(day) && (range?.fromDay === undefined || day >= range.fromDay) && (range?.toDay === undefined || day <= range.toDay))
      .sort();
    const ids: AttestationId[] = [];
    for (const day of days) {
      await assertNotLinked(path.join(hostDir, day), `attestations/${host}/${day}`);
      const names = (await readdir(path.join(hostDir, day))).sort();
      for (const name of names) {
        const match = ATTESTATION_FILE.exec(name);
        if (match) ids.push({ host, day, seq: Number(match[1]) });
      }
    }
    return ids;
  }

  private async assertAttestationDirsNotLinked(host: string): Promise<void> {
    await assertNotLinked(this.layout.attestationsDir, 'attestations');
    await assertNotLinked(path.join(this.layout.attestationsDir, host), `attestations/${host}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.blobGuard.idle();
    await this.blobFiles?.close();
    const appenders = await Promise.allSettled(this.appenders.values());
    this.appenders.clear();
    this.openAppenders.clear();
    // Every stream is closed even if one fails (its error is passed on once all are).
    const closed = await Promise.allSettled(appenders.flatMap((result) => (result.status === 'fulfilled' ? [result.value.close()] : [])));
    this.presence?.release();
    const failed = closed.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async appender(stream: string): Promise<StreamAppender> {
    const current = this.openAppenders.get(stream);
    if (current?.broken) {
      // Reopen: recovery repairs what the failure left (finishes a seal, cuts a torn tail).
      this.openAppenders.delete(stream);
      this.appenders.delete(stream);
      await current.close();
      // close() may have run meanwhile and missed the reopen: it would hold the stream's lock
      // and segment with nothing left to close them.
      this.assertOpen();
    }
    let appender = this.appenders.get(stream);
    if (!appender) {
      const opening = StreamAppender.open(stream, this.layout, this.segmentBytes, this.logger);
      appender = opening;
      this.appenders.set(stream, opening);
      opening.then(
        (opened) => {
          if (this.appenders.get(stream) === opening && !this.closed) {
            this.openAppenders.set(stream, opened);
            // Recovery found where the newest record starts: a read of it (the recorder's check
            // of its newest checkpoint) starts there instead of scanning the segment.
            const newest = opened.newestRecord;
            if (newest && !this.positions.has(stream)) this.positions.set(stream, newest);
          }
        },
        // A failed open (locked by another writer, damaged) is retried on the next call.
        () => {
          if (this.appenders.get(stream) === opening) this.appenders.delete(stream);
        },
      );
    }
    return appender;
  }

  /** Head without a lock, for read-only use: from the last seal or the last complete line. */
  private async readHead(stream: string): Promise<StreamHead> {
    const segments = await listSegments(this.layout, stream);
    for (const segment of segments.reverse()) {
      if (segment.sealed) {
        const seal = parseSeal(await readRegularFile(segment.sealPath, this.layout.name(segment.sealPath)), stream, segment.firstSeq);
        return { seq: seal.lastSeq, hash: seal.lastHash };
      }
      const { lines } = splitLines(await readRegularFile(segment.path, this.layout.name(segment.path)));
      const last = lines.at(-1);
      if (last) return { seq: segment.firstSeq + lines.length - 1, hash: sha256Hex(last) };
    }
    return { seq: 0, hash: ZERO_HASH };
  }

  private async sameBlobStored(target: string, sha256: string): Promise<boolean> {
    const existing = await readIfExists(target, this.layout.name(target));
    if (!existing) return false;
    if (sha256Hex(existing) === sha256) return true;
    this.logger.error({ blob: sha256 }, 'stored blob does not match its name');
    throw new BlobMismatchError(sha256, 'the file stored under this name is damaged (its content hashes differently); run offchannel verify');
  }

  /** A stream's checkpoint and tile directories are real directories (checked once per stream). */
  private async assertStreamDirsNotLinked(stream: string): Promise<void> {
    if (this.unlinkedStreams.has(stream)) return;
    for (const dir of [this.layout.checkpointsDir(stream), this.layout.tilesDir(stream)]) await assertNotLinked(dir, this.layout.name(dir));
    this.unlinkedStreams.add(stream);
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('fs sink');
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new ReadOnlySinkError('fs');
  }
}

/** Names of the subdirectories of `dir` (none if it does not exist). */
async function listDirectories(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

/** Throws `NotRegularFileError` if `dir` is a symbolic link (a missing one is fine). */
async function assertNotLinked(dir: string, name: string): Promise<void> {
  const info = await lstat(dir).catch((error: unknown) => {
    if (isNotFound(error)) return undefined;
    throw error;
  });
  if (info?.isSymbolicLink()) throw new NotRegularFileError(name, 'a symbolic link');
}
