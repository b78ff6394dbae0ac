/**
 * Internal: the single writer of one stream in one archive.
 *
 * Opening it takes the stream's OS lock and recovers the stream: the head comes from the last
 * segment's seal or from its last complete line; bytes after the last newline of the active
 * segment are a torn, never-acknowledged tail — they are copied to `quarantine/` and cut off.
 * A complete line that does not continue the chain is NOT treated as torn: it may be
 * acknowledged data, so the writer refuses to open (ArchiveCorruptError) instead of touching it.
 *
 * Appends go to the active segment at its known end, then fdatasync; only then does the
 * append resolve. A segment that reaches the size limit is sealed: its seal (size, SHA-256,
 * last seq and hash) is written read-only, then the segment is made read-only.
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
  SinkConflictError,
  type StreamHead,
  ZERO_HASH,
  sha256Hex,
} from '@offchannel/core';
import { type ArchiveLayout, SEAL_FORMAT } from './archive-layout.ts';
import { createReadOnlyFile, ensureDirectory, readIfExists, readRegularFile, syncDirectory, writeFully } from './fs-utils.ts';
import { type Seal, type SegmentFile, listSegments, parseSeal, sealBytes, splitLines } from './segments.ts';
import { type StreamLock, acquireStreamLock } from './stream-lock.ts';

interface ActiveSegment {
  readonly firstSeq: number;
  readonly path: string;
  handle: FileHandle;
  size: number;
  readonly hash: Hash;
}

const NEWLINE = Buffer.from('\n');

export class StreamAppender {
  readonly stream: string;
  private head: StreamHead = { seq: 0, hash: ZERO_HASH };
  private active: ActiveSegment | undefined;
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
    const parts: Uint8Array[] = [];
    for (const record of batch.records) parts.push(record, NEWLINE);
    const bytes = Buffer.concat(parts);
    try {
      await writeFully(segment.handle, bytes, segment.size);
      await segment.handle.datasync();
    } catch (error) {
      await this.undoPartialWrite(segment, error);
      throw error;
    }
    segment.size += bytes.length;
    segment.hash.update(bytes);
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
    await active?.handle.close();
    this.lock.release();
  }

  private async recover(): Promise<void> {
    const segments = await listSegments(this.layout, this.stream);
    const last = segments.at(-1);
    if (!last) return;
    const previous = segments.at(-2);
    let prevHead: StreamHead = { seq: last.firstSeq - 1, hash: ZERO_HASH };
    if (previous) {
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

  private async recoverActive(segment: SegmentFile, prevHead: StreamHead): Promise<void> {
    const content = await readRegularFile(segment.path, this.layout.name(segment.path));
    const { lines, tail } = splitLines(content);
    let head = prevHead;
    for (const [index, line] of lines.entries()) {
      const seq = segment.firstSeq + index;
      let fields: { seq?: unknown; prev?: unknown };
      try {
        fields = JSON.parse(line.toString('utf8')) as { seq?: unknown; prev?: unknown };
      } catch {
        fields = {};
      }
      if (fields.seq !== seq || fields.prev !== head.hash) {
        throw new ArchiveCorruptError(`stream ${this.stream}: the complete record at seq ${seq} does not continue the chain, so it is not a torn write and will not be discarded`, {
          stream: this.stream,
          seq,
        });
      }
      head = { seq, hash: sha256Hex(line) };
    }
    let size = content.length;
    if (tail.length > 0) {
      size -= tail.length;
      await this.quarantine(segment, size, tail);
    }
    const handle = await open(segment.path, constants.O_RDWR);
    if (tail.length > 0) {
      await handle.truncate(size);
      await handle.sync();
    }
    const hash = createHash('sha256').update(content.subarray(0, size));
    this.active = { firstSeq: segment.firstSeq, path: segment.path, handle, size, hash };
    this.head = head;
    if (size >= this.segmentBytes) await this.seal(this.active);
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
      handle = await open(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ArchiveCorruptError(`stream ${this.stream}: segment ${firstSeq} already exists although the head is seq ${firstSeq - 1}`, { stream: this.stream, seq: firstSeq });
      }
      throw error;
    }
    const active: ActiveSegment = { firstSeq, path: file, handle, size: 0, hash: createHash('sha256') };
    this.active = active;
    // The new file's directory entry must be durable before anything in it is acknowledged.
    await syncDirectory(path.dirname(file));
    return active;
  }

  private async seal(segment: ActiveSegment): Promise<void> {
    // From here on nothing is ever written to this segment again, whatever fails below.
    this.active = undefined;
    const seal: Seal = {
      v: 1,
      format: SEAL_FORMAT,
      stream: this.stream,
      firstSeq: segment.firstSeq,
      lastSeq: this.head.seq,
      lastHash: this.head.hash,
      bytes: segment.size,
      sha256: segment.hash.copy().digest('hex'),
    };
    await ensureDirectory(this.layout.tmpDir);
    const sealPath = this.layout.seal(this.stream, segment.firstSeq);
    if (!(await createReadOnlyFile(this.layout.tmpDir, sealPath, sealBytes(seal)))) {
      const existing = await readIfExists(sealPath);
      if (!existing?.equals(sealBytes(seal))) throw new ArchiveCorruptError(`stream ${this.stream}: a different seal for segment ${segment.firstSeq} already exists`, { stream: this.stream, seq: segment.firstSeq });
    }
    await segment.handle.close();
    await chmod(segment.path, 0o444);
    await syncDirectory(path.dirname(segment.path));
    this.logger.debug({ stream: this.stream, segment: segment.firstSeq, lastSeq: seal.lastSeq, bytes: seal.bytes }, 'segment sealed');
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
