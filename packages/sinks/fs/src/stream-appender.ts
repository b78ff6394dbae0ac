/**
 * Internal: the single writer of one stream in one archive.
 *
 * Opening it takes the stream's OS lock and recovers the stream: the head comes from the last
 * segment's seal or from its last complete line; bytes after the last newline of the active
 * segment are a torn, never-acknowledged tail — they are copied to `quarantine/` and cut off.
 * A newest complete line that does not continue the chain is NOT treated as torn: it may be
 * acknowledged data, so the writer refuses to open (ArchiveCorruptError) instead of touching it.
 * Recovery reads the active segment once in fixed-size chunks (its cost is bounded by the
 * segment size, never by the stream's history); checking every record is verify's job.
 *
 * Appends go to the active segment at its known end and are durable before the append
 * resolves: the segment is opened with O_DSYNC, so each write returns only after the kernel has
 * done what fdatasync does for it (POSIX synchronized I/O data integrity completion). Write and
 * sync are one operation on libuv's thread pool: the disk works on a batch while the main thread
 * acknowledges the previous one, instead of the fdatasync waiting for the main thread to be free
 * between write and sync. On every platform but Linux (macOS: fdatasync is F_FULLFSYNC
 * there and O_DSYNC is weaker; Windows: no O_DSYNC) the write is followed by fdatasync. A segment that reaches the size limit is sealed: its seal (size, SHA-256,
 * last seq and hash) is written read-only, then the segment is made read-only. The segment's
 * SHA-256 runs on a worker thread as batches are appended (segment-hasher.ts); a seal waits for it.
 */
import { type Hash, createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, chmod, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  type AppendBatch,
  ArchiveCorruptError,
  InvalidStreamNameError,
  type Logger,
  OffchannelError,
  SinkConflictError,
  type StreamHead,
  ZERO_HASH,
  batchLines,
  sha256Hex,
} from '@offchannel/core';
import { type ArchiveLayout, SEAL_FORMAT } from './archive-layout.ts';
import { createReadOnlyFile, ensureDirectory, openRegularFile, readIfExists, readRegularFile, syncDirectory, syncWriteFlag, writeFully } from './fs-utils.ts';
import { prunedHead, readPrunedPrefix } from './pruned-prefix.ts';
import { type SegmentHash, localSegmentHash, workerSegmentHash } from './segment-hasher.ts';
import { type Seal, type SegmentFile, listSegments, parseSeal, sealBytes, splitLines } from './segments.ts';
import { type StreamLock, acquireStreamLock } from './stream-lock.ts';

interface ActiveSegment {
  readonly firstSeq: number;
  readonly path: string;
  handle: FileHandle;
  size: number;
  /** The running SHA-256 for the seal: on the worker for a new segment, local for a recovered one. */
  readonly hash: SegmentHash;
}

/** Writes to the active segment are durable on return (see the module comment); 0 off Linux. */
const DSYNC = syncWriteFlag();

export class StreamAppender {
  readonly stream: string;
  private head: StreamHead = { seq: 0, hash: ZERO_HASH };
  private active: ActiveSegment | undefined;
  /** Where the newest record starts in the active segment, as recovery found it. */
  newestRecord: { readonly segment: number; readonly seq: number; readonly offset: number } | undefined;
  /** Set when the appender can no longer be trusted to continue; the sink reopens (recovers) it. */
  broken: Error | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private tasks = 0;
  private readonly layout: ArchiveLayout;
  private readonly lock: StreamLock;
  private readonly segmentBytes: number;
  private readonly logger: Logger;

  private constructor(stream: string, layout: ArchiveLayout, lock: StreamLock, segmentBytes: number, logger: Logger) {
    this.stream = stream;
    this.layout = layout;
    this.lock = lock;
    this.segmentBytes = segmentBytes;
    this.logger = logger;
  }

  /** Locks and recovers `stream`. Rejects with `SinkConflictError` if another writer holds it. */
  static async open(stream: string, layout: ArchiveLayout, segmentBytes: number, logger: Logger): Promise<StreamAppender> {
    await StreamAppender.assertNoCaseTwin(layout, stream);
    await ensureDirectory(layout.locksDir);
    const lock = await acquireStreamLock(layout.lock(stream), stream);
    const appender = new StreamAppender(stream, layout, lock, segmentBytes, logger);
    try {
      await ensureDirectory(layout.streamDir(stream));
      await appender.recover();
    } catch (error) {
      await appender.close();
      throw error;
    }
    return appender;
  }

  get currentHead(): StreamHead {
    return this.head;
  }

  /**
   * Runs `task` after every earlier call on this stream has settled — at once, in the
   * caller's tick, when nothing is running.
   */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    this.tasks++;
    const run = this.tasks === 1 ? task() : this.queue.then(task, task);
    const done = run.then(
      () => {
        this.tasks--;
      },
      () => {
        this.tasks--;
      },
    );
    this.queue = done;
    return run;
  }

  /** Compare-and-append; durable before it resolves. Call inside {@link exclusive}. */
  async append(batch: AppendBatch): Promise<StreamHead> {
    if (this.broken) throw this.broken;
    const { head } = this;
    if (batch.firstSeq !== head.seq + 1 || batch.prev !== head.hash) {
      throw new SinkConflictError(this.stream, `append at seq ${batch.firstSeq} refused: the stream's head is seq ${head.seq}; another writer may have appended, or this batch is stale.`, {
        expected: { seq: batch.firstSeq - 1, hash: batch.prev },
        actual: head,
      });
    }
    const segment = this.active ?? (await this.createSegment(batch.firstSeq));
    // The recorder hands the lines ready to store (`batch.lines`): written as they are, no copy.
    const bytes = batchLines(batch);
    try {
      await writeFully(segment.handle, bytes, segment.size);
      if (DSYNC === 0) await segment.handle.datasync();
    } catch (error) {
      await this.undoPartialWrite(segment, error);
      throw error;
    }
    segment.hash.update(bytes, segment.size);
    segment.size += bytes.length;
    this.head = { seq: batch.firstSeq + batch.records.length - 1, hash: sha256Hex(batch.records[batch.records.length - 1] as Uint8Array) };
    if (segment.size >= this.segmentBytes) {
      // The batch is durable whatever happens to the seal: resolve it. A failed seal leaves the
      // segment closed to writes and the appender broken, so the sink reopens the stream and
      // recovery finishes the seal before anything else is written.
      try {
        await this.seal(segment);
      } catch (error) {
        this.broken = new ArchiveCorruptError(`stream ${this.stream}: sealing segment ${segment.firstSeq} failed; the stream is reopened to finish it`, { stream: this.stream });
        const code = (error as { code?: unknown }).code;
        this.logger.error({ stream: this.stream, segment: segment.firstSeq, code: typeof code === 'string' ? code : undefined }, 'segment seal failed; reopening the stream to finish it');
      }
    }
    return this.head;
  }

  async close(): Promise<void> {
    await this.queue;
    const active = this.active;
    this.active = undefined;
    try {
      await active?.hash.discard(); // the worker reads the file by its descriptor: done first
      await active?.handle.close();
    } finally {
      // Also when the close failed (EIO from close(2): the descriptor is gone all the same).
      this.lock.release();
    }
  }

  private async recover(): Promise<void> {
    const segments = await listSegments(this.layout, this.stream);
    const last = segments.at(-1);
    if (!last) return;
    const previous = segments.at(-2);
    let prevHead: StreamHead = { seq: last.firstSeq - 1, hash: ZERO_HASH };
    const prefix = await readPrunedPrefix(this.layout, this.stream);
    if (prefix && prefix.throughSeq === last.firstSeq - 1) {
      // Every segment before the last was pruned (or is left over from an interrupted prune).
      prevHead = prunedHead(prefix);
    } else if (previous) {
      if (!previous.sealed) throw new ArchiveCorruptError(`segment ${previous.firstSeq} of stream ${this.stream} is not the last segment but has no seal`, { stream: this.stream, seq: previous.firstSeq });
      const seal = parseSeal(await readRegularFile(previous.sealPath, this.layout.name(previous.sealPath)), this.stream, previous.firstSeq);
      prevHead = { seq: seal.lastSeq, hash: seal.lastHash };
      // A crash between writing its seal and chmod leaves the newest sealed segment writable.
      await chmod(previous.path, 0o444);
    }
    if (prevHead.seq !== last.firstSeq - 1) {
      throw new ArchiveCorruptError(`stream ${this.stream}: segment ${last.firstSeq} does not follow the previous segment (ends at seq ${prevHead.seq})`, { stream: this.stream, seq: prevHead.seq + 1 });
    }
    if (last.sealed) await this.recoverSealed(last);
    else await this.recoverActive(last, prevHead);
  }

  private async recoverSealed(segment: SegmentFile): Promise<void> {
    const seal = parseSeal(await readRegularFile(segment.sealPath, this.layout.name(segment.sealPath)), this.stream, segment.firstSeq);
    const content = await readRegularFile(segment.path, this.layout.name(segment.path));
    const { lines, tail } = splitLines(content);
    const lastLine = lines.at(-1);
    if (tail.length > 0 || content.length !== seal.bytes || !lastLine || sha256Hex(lastLine) !== seal.lastHash || segment.firstSeq + lines.length - 1 !== seal.lastSeq) {
      throw new ArchiveCorruptError(`stream ${this.stream}: sealed segment ${segment.firstSeq} does not match its seal`, { stream: this.stream, seq: segment.firstSeq });
    }
    // A crash between writing the seal and chmod leaves the segment writable; finish the seal.
    await chmod(segment.path, 0o444);
    this.head = { seq: seal.lastSeq, hash: seal.lastHash };
  }

  /**
   * Recovers the active segment in one streaming pass whose memory does not depend on the
   * segment's size: the running SHA-256 (for its seal), the count of complete lines (the head's
   * seq) and where the last two end. The newest complete record must continue the chain from
   * the one before it (or from the previous segment's seal); verify checks every other record.
   */
  private async recoverActive(segment: SegmentFile, prevHead: StreamHead): Promise<void> {
    // Only a regular file is opened (no FIFO, device or symbolic link planted as a segment).
    const handle = await openRegularFile(segment.path, this.layout.name(segment.path), { write: true, flags: DSYNC });
    if (!handle) throw new ArchiveCorruptError(`stream ${this.stream}: segment ${segment.firstSeq} vanished while it was being recovered`, { stream: this.stream, seq: segment.firstSeq });
    let keep = false;
    try {
      const scan = await scanSegment(handle);
      let head = prevHead;
      if (scan.lines > 0) {
        const seq = segment.firstSeq + scan.lines - 1;
        const last = await readRange(handle, scan.lastStart, scan.size - 1);
        const before = scan.lines > 1 ? sha256Hex(await readRange(handle, scan.beforeStart, scan.lastStart - 1)) : prevHead.hash;
        let fields: { seq?: unknown; prev?: unknown };
        try {
          fields = JSON.parse(last.toString('utf8')) as { seq?: unknown; prev?: unknown };
        } catch {
          fields = {};
        }
        if (fields.seq !== seq || fields.prev !== before) {
          throw new ArchiveCorruptError(`stream ${this.stream}: the complete record at seq ${seq} does not continue the chain, so it is not a torn write and will not be discarded`, {
            stream: this.stream,
            seq,
          });
        }
        head = { seq, hash: sha256Hex(last) };
        this.newestRecord = { segment: segment.firstSeq, seq, offset: scan.lastStart };
      }
      if (scan.tail.length > 0) {
        await this.quarantine(segment, scan.size, scan.tail);
        await handle.truncate(scan.size);
        await handle.sync();
      }
      this.active = { firstSeq: segment.firstSeq, path: segment.path, handle, size: scan.size, hash: localSegmentHash(scan.hash) };
      this.head = head;
      keep = true;
    } finally {
      if (!keep) await handle.close();
    }
    if (this.active.size >= this.segmentBytes) await this.seal(this.active);
  }

  /**
   * Stream names must be unique ignoring case: on case-insensitive file systems (macOS, Windows)
   * `slack:Alice` and `slack:alice` would share one directory, and an archive must stay valid
   * when copied between systems.
   */
  private static async assertNoCaseTwin(layout: ArchiveLayout, stream: string): Promise<void> {
    const existing = await readdir(layout.streamsDir).catch(() => [] as string[]);
    const twin = existing.find((name) => name !== stream && name.toLowerCase() === stream.toLowerCase());
    if (twin !== undefined) {
      throw new InvalidStreamNameError(`stream "${stream}" differs only in letter case from existing stream "${twin}" in this archive; case-insensitive file systems cannot keep them apart`);
    }
  }

  /** Moves a torn tail aside (never deleted: it is evidence of the crash) before cutting it off. */
  private async quarantine(segment: SegmentFile, offset: number, tail: Buffer): Promise<void> {
    const dir = this.layout.quarantineDir(this.stream);
    await ensureDirectory(dir);
    const name = `${path.basename(segment.path, '.jsonl')}-at-${offset}-${Date.now()}.torn`;
    await createReadOnlyFile(dir, path.join(dir, name), tail);
    this.logger.warn({ stream: this.stream, segment: segment.firstSeq, offset, bytes: tail.length }, 'discarded a torn, never-acknowledged tail after a crash (copy kept in quarantine/)');
  }

  private async createSegment(firstSeq: number): Promise<ActiveSegment> {
    const file = this.layout.segment(this.stream, firstSeq);
    let handle: FileHandle;
    try {
      handle = await open(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | DSYNC, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ArchiveCorruptError(`stream ${this.stream}: segment ${firstSeq} already exists although the head is seq ${firstSeq - 1}`, { stream: this.stream, seq: firstSeq });
      }
      throw error;
    }
    const active: ActiveSegment = { firstSeq, path: file, handle, size: 0, hash: workerSegmentHash(() => createHash('sha256'), handle.fd) };
    this.active = active;
    // The new file's directory entry must be durable before anything in it is acknowledged.
    await syncDirectory(path.dirname(file));
    return active;
  }

  private async seal(segment: ActiveSegment): Promise<void> {
    // From here on nothing is ever written to this segment again, whatever fails below.
    this.active = undefined;
    try {
      await this.writeSeal(segment);
    } catch (error) {
      await segment.handle.close().catch(() => undefined); // no longer the active one: close it here
      throw error;
    }
    await segment.handle.close();
    await chmod(segment.path, 0o444);
    await syncDirectory(path.dirname(segment.path));
    this.logger.debug({ stream: this.stream, segment: segment.firstSeq, lastSeq: this.head.seq, bytes: segment.size }, 'segment sealed');
  }

  /** The seal file of `segment` (its bytes, last record and SHA-256), durable, or the same one already there. */
  private async writeSeal(segment: ActiveSegment): Promise<void> {
    const seal: Seal = {
      v: 1,
      format: SEAL_FORMAT,
      stream: this.stream,
      firstSeq: segment.firstSeq,
      lastSeq: this.head.seq,
      lastHash: this.head.hash,
      bytes: segment.size,
      // The worker's digest, or (it failed) the file's own bytes hashed here: same value.
      sha256: await segment.hash.digest().catch((error: unknown) => {
        if (OffchannelError.hasCode(error, 'SEGMENT_HASH_TIMEOUT')) this.logger.warn({ stream: this.stream, segment: segment.firstSeq, code: error.code }, error.message);
        return hashFilePrefix(segment.handle, segment.size);
      }),
    };
    await ensureDirectory(this.layout.tmpDir);
    const sealPath = this.layout.seal(this.stream, segment.firstSeq);
    if (!(await createReadOnlyFile(this.layout.tmpDir, sealPath, sealBytes(seal)))) {
      const existing = await readIfExists(sealPath);
      if (!existing?.equals(sealBytes(seal))) throw new ArchiveCorruptError(`stream ${this.stream}: a different seal for segment ${segment.firstSeq} already exists`, { stream: this.stream, seq: segment.firstSeq });
    }
  }

  /** After a failed write nothing may remain past the acknowledged end; if that cannot be ensured, stop. */
  private async undoPartialWrite(segment: ActiveSegment, cause: unknown): Promise<void> {
    try {
      await segment.handle.truncate(segment.size);
      await segment.handle.sync();
      if ((await stat(segment.path)).size !== segment.size) throw new Error('size mismatch after truncate');
    } catch {
      this.broken = new ArchiveCorruptError(`stream ${this.stream}: a failed write could not be undone; reopen the archive to recover it`, { stream: this.stream });
      this.logger.error({ stream: this.stream, code: (cause as { code?: unknown }).code }, 'write failed and could not be undone; the stream refuses appends until reopened');
    }
  }
}

/** What one pass over an active segment learns (see `recoverActive`). */
interface SegmentScan {
  /** Complete lines. */
  readonly lines: number;
  /** Bytes up to and including the last newline. */
  readonly size: number;
  /** Where the last complete line starts, and the one before it. */
  readonly lastStart: number;
  readonly beforeStart: number;
  /** SHA-256 over the first `size` bytes, ready to continue with appends. */
  readonly hash: Hash;
  /** Bytes after the last newline: a torn, never-acknowledged write. */
  readonly tail: Buffer;
}

const SCAN_CHUNK = 1024 * 1024;

async function scanSegment(handle: FileHandle): Promise<SegmentScan> {
  const hash = createHash('sha256');
  const chunk = Buffer.allocUnsafe(SCAN_CHUNK);
  let position = 0;
  let lines = 0;
  let size = 0;
  let lastStart = 0;
  let beforeStart = 0;
  /** Bytes read after the last newline, not yet hashed (a line that spans chunks, or the tail). */
  let pending: Buffer[] = [];
  for (;;) {
    const { bytesRead } = await handle.read(chunk, 0, SCAN_CHUNK, position);
    if (bytesRead === 0) break;
    const data = chunk.subarray(0, bytesRead);
    const lastNewline = data.lastIndexOf(0x0a);
    if (lastNewline === -1) {
      pending.push(Buffer.from(data));
    } else {
      for (const part of pending) hash.update(part);
      pending = [];
      hash.update(data.subarray(0, lastNewline + 1));
      for (let at = data.indexOf(0x0a); at !== -1 && at <= lastNewline; at = data.indexOf(0x0a, at + 1)) {
        beforeStart = lastStart;
        lastStart = size;
        size = position + at + 1;
        lines++;
      }
      if (lastNewline + 1 < bytesRead) pending.push(Buffer.from(data.subarray(lastNewline + 1)));
    }
    position += bytesRead;
  }
  return { lines, size, lastStart, beforeStart, hash, tail: Buffer.concat(pending) };
}

async function readRange(handle: FileHandle, start: number, end: number): Promise<Buffer> {
  const bytes = Buffer.alloc(end - start);
  let done = 0;
  while (done < bytes.length) {
    const { bytesRead } = await handle.read(bytes, done, bytes.length - done, start + done);
    if (bytesRead === 0) throw new ArchiveCorruptError('a segment shrank while it was being recovered; is another process writing the archive?', {});
    done += bytesRead;
  }
  return bytes;
}

/** The SHA-256 of the first `size` bytes of an open file (a seal's hash when the worker failed). */
async function hashFilePrefix(handle: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(Math.min(size, 1024 * 1024) || 1);
  for (let position = 0; position < size; ) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - position), position);
    if (bytesRead === 0) throw new ArchiveCorruptError(`a segment is shorter than its acknowledged ${size} bytes while it is being sealed`, {});
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return hash.digest('hex');
}
