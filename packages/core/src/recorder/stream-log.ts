/**
 * Internal: one stream's sequencing state and group-commit loop.
 *
 * Records are sequenced (seq, prev, hash) synchronously when they enter the queue, so the
 * chain order is the queue order. Each record's canonical bytes are written once, with their
 * newline, straight into the buffer of the batch being filled — the buffer the sink stores as
 * it is (`AppendBatch.lines`) — and hashed there. A single flush loop per stream appends the
 * oldest filled batch (one durable write for many records), resolves those captures, and
 * repeats. Per record it keeps one small entry and its capture's promise, nothing else.
 * If an append fails, every capture in it and behind it is rejected (they chain on it), the
 * in-memory head rolls back to the last durable head, and the next capture resynchronizes
 * from the sink first.
 *
 * Start-up reads only what is new: the key index says up to which record it holds the stream's
 * keys (checked against the sink: that record must still be there with the same hash, or the
 * index is rebuilt), and the checkpointer restores its Merkle state from the newest checkpoint's
 * tiles. Only records after the older of the two are read back.
 */
import { RecordTooLargeError } from '../errors/record-errors.ts';
import { ArchiveCorruptError } from '../errors/sink-errors.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { canonicalRecordParts } from '../json/canonical-json.ts';
import type { Logger } from '../logger/logger.ts';
import type { CaptureResult } from '../record/capture-input.ts';
import { type ArchiveRecord, MAX_RECORD_BYTES } from '../record/record.ts';
import { readRecordAt } from '../sink/read-record-at.ts';
import type { Sink, StreamHead } from '../sink/sink.ts';
import { type IndexedKey, type KeyIndex, type LentKeys, lendKeys } from './key-index.ts';
import { parseStreamName } from '../record/stream-name.ts';
import type { RecordTemplate, SplicedRecord } from './prepare-capture.ts';
import { type CheckpointOptions, StreamCheckpointer } from './stream-checkpointer.ts';

interface QueuedRecord {
  readonly key: string;
  readonly seq: number;
  /** Where the record's canonical bytes are in its batch's buffer (its newline is at `end`). */
  readonly start: number;
  readonly end: number;
  readonly hash: string;
  /** The capture's promise: a replay of the key waits for it while the record is not durable. */
  readonly promise: Promise<CaptureResult>;
  readonly resolve: (result: CaptureResult) => void;
  readonly reject: (error: unknown) => void;
}

/** A batch being filled: its records' canonical bytes, each followed by 0x0A, in one buffer. */
interface OpenBatch {
  buffer: Buffer;
  /** Bytes used. */
  size: number;
  /** The hash the first record's `prev` carries. */
  readonly prev: string;
  readonly entries: QueuedRecord[];
}

/** UTF-8 bytes of the concatenation of `parts` (each part is well-formed: it is canonical JSON). */
function utf8Length(parts: readonly string[]): number {
  let bytes = 0;
  for (const part of parts) bytes += Buffer.byteLength(part, 'utf8');
  return bytes;
}

/** Smallest batch buffer (at a trickle of captures a batch holds one record). */
const MIN_BATCH_BUFFER = 16 * 1024;

export interface StreamLogOptions {
  readonly sink: Sink;
  readonly stream: string;
  readonly logger: Logger;
  /** The recorder clock's time value (ms since the epoch) for `capturedAt`. */
  readonly now: () => number;
  readonly maxBatchRecords: number;
  readonly maxBatchBytes: number;
  /** Where the stream's idempotency keys are kept (shared by all streams of a recorder). */
  readonly index: KeyIndex;
  /** When set, the stream's checkpoints are signed as configured. */
  readonly checkpoints?: CheckpointOptions;
  /** Counters the log adds to: records it made durable, records whose append failed. */
  readonly counts: { recorded: number; failed: number };
}

const decoder = new TextDecoder();
/** Keys written to the index in one transaction while a stream is read back. */
const INDEX_BATCH = 4096;

export class StreamLog {
  readonly stream: string;
  /** The stream name and its parts, parsed once. */
  readonly names: { readonly stream: string; readonly channel: string; readonly account: string };
  /**
   * Key → its record while queued, or durable but not yet in the key index. With a memory key
   * index this is the index's own map of the stream ({@link LentKeys}): a durable key's entry is
   * replaced by its seq, and the map holds every key of the stream once `ready`. Otherwise it is
   * bounded by what is in flight, and durable keys are looked up in the index.
   */
  private readonly keys: Map<string, QueuedRecord | number>;
  /** The memory index's state of this stream when it lends its map, else `undefined`. */
  private readonly lent: LentKeys | undefined;
  /**
   * Captures not yet sequenced (storing blobs first), by key: the recorder's. With
   * {@link inFlight} for sequenced ones, a second capture of the same key waits for the first
   * and reports `duplicate` only once the first is durable — never before.
   */
  readonly pending = new Map<string, Promise<CaptureResult>>();
  /** Last sequenced record (may be ahead of the sink while a batch is in flight). */
  private headSeq = 0;
  private headHash = ZERO_HASH;
  /** Last record the sink acknowledged. */
  private durable: StreamHead = { seq: 0, hash: ZERO_HASH };
  /**
   * Durable records whose keys the key index has not taken (an update failed), in seq order,
   * and how many batches they came in: see {@link indexDurable}. Their keys stay in {@link keys}.
   */
  private unindexed: QueuedRecord[] = [];
  private unindexedBatches = 0;
  /** Batches waiting for their append, oldest first; records are added to the last one. */
  private queue: OpenBatch[] = [];
  /** Size of the next new batch buffer: follows the size of recent batches. */
  private nextBuffer = MIN_BATCH_BUFFER;
  private flushing: Promise<void> | undefined;
  private needsResync = true;
  private resyncing: Promise<void> | undefined;
  private readonly options: StreamLogOptions;
  /** The last `capturedAt` and its time value (see {@link capturedAt}). */
  private lastTime = Number.NaN;
  private lastIso = '';
  /** Signs this stream's checkpoints (when configured); sees every durable record once, in order. */
  checkpointer: StreamCheckpointer | undefined;

  constructor(options: StreamLogOptions) {
    this.options = options;
    this.stream = options.stream;
    this.names = { stream: options.stream, ...parseStreamName(options.stream) };
    this.lent = lendKeys(options.index, options.stream);
    this.keys = (this.lent?.keys as Map<string, QueuedRecord | number> | undefined) ?? new Map<string, QueuedRecord | number>();
  }

  /** The seq of the record holding `key`, queued or durable; `undefined` if none. Valid once `ready`. */
  seqOf(key: string): number | undefined {
    const found = this.keys.get(key);
    if (found !== undefined) return typeof found === 'number' ? found : found.seq;
    return this.lent ? undefined : this.options.index.get(this.stream, key);
  }

  /** The capture of `key` when it is sequenced but not yet durable (wait for it), else `undefined`. */
  inFlight(key: string): Promise<CaptureResult> | undefined {
    const found = this.keys.get(key);
    return typeof found === 'object' && found.seq > this.durable.seq ? found.promise : undefined;
  }

  /**
   * One lookup for a new capture of `key`: the capture to wait for when the key's record is
   * sequenced but not yet durable; else the seq of its durable record (looked up in the key
   * index only once `ready`); else `undefined`.
   */
  find(key: string): Promise<CaptureResult> | number | undefined {
    // A lent map holds what the index held before it was checked against the sink.
    if (this.needsResync && this.lent) return undefined;
    const found = this.keys.get(key);
    if (found !== undefined) {
      if (typeof found === 'number') return found;
      return found.seq > this.durable.seq ? found.promise : found.seq;
    }
    return this.needsResync || this.lent ? undefined : this.options.index.get(this.stream, key);
  }

  /** True when the stream can sequence a record without talking to the sink first. */
  get ready(): boolean {
    return !this.needsResync;
  }

  /** Reads the head from the sink and indexes the keys of records not yet known. */
  async resync(): Promise<void> {
    this.resyncing ??= this.doResync().finally(() => {
      this.resyncing = undefined;
    });
    return this.resyncing;
  }

  private async doResync(): Promise<void> {
    if (this.flushing) await this.flushing;
    const { sink, stream, logger } = this.options;
    if (this.checkpointer === undefined && this.options.checkpoints !== undefined) {
      this.checkpointer = await StreamCheckpointer.open(stream, sink, this.options.checkpoints, logger);
    }
    const { checkpointer } = this;
    const head = await sink.head(stream);
    if (head.seq < this.durable.seq) {
      throw new ArchiveCorruptError(`the sink's head went backwards (was seq ${this.durable.seq}, now ${head.seq})`, { stream, seq: head.seq });
    }
    const pruned = await sink.pruned?.(stream);
    let indexed = await this.checkIndex(head, pruned);
    if (checkpointer && !checkpointer.isCaughtUp && checkpointer.size === 0) {
      const restored = await checkpointer.restoreFromTiles(head.seq);
      if (restored > 0) logger.debug({ stream, seq: restored }, 'Merkle state restored from the newest checkpoint\'s tiles');
      // Said at every start it happens: on a pruned spool in capture this read goes to S3.
      else if (checkpointer.state.refused !== undefined && head.seq > 0) logger.warn({ stream, seq: head.seq }, 'checkpoint signing is refused for this stream, so its Merkle state is not restored from tiles: the stream is read from its first record at every start (what a spool pruned, from the archive of record) until the refusal is resolved');
    }
    let from = Math.min(indexed, checkpointer ? checkpointer.size : head.seq) + 1;
    if (pruned && from <= pruned.seq) {
      // A pruned spool read alone (capture's sink reads the prefix from the archive of record
      // and reports none: forward/pruned-read-through.ts). Pruning keeps the newest
      // checkpoint's record and everything after.
      if (checkpointer && checkpointer.size <= pruned.seq) {
        throw new ArchiveCorruptError(`the Merkle state cannot be rebuilt: records 1–${pruned.seq} were pruned from the spool and the newest checkpoint's tiles are unreadable; restore the spool's tiles from the archive of record`, { stream, seq: pruned.seq });
      }
      logger.warn({ stream, seq: pruned.seq, indexed }, 'the key index is rebuilt from after the spool\'s pruned prefix: replays of older messages are found in the archive of record, not here');
      indexed = pruned.seq;
      from = pruned.seq + 1;
    }
    if (from <= head.seq) {
      let keys: IndexedKey[] = [];
      let last: { seq: number; bytes: Uint8Array } | undefined;
      const save = () => {
        if (!last) return;
        this.options.index.add(stream, keys, { seq: last.seq, hash: sha256Hex(last.bytes) });
        indexed = last.seq;
        keys = [];
        last = undefined;
      };
      for await (const stored of sink.read(stream, { fromSeq: from })) {
        if (stored.seq > head.seq) break;
        // A resync that failed part-way fed some of these already: feed each record exactly once.
        if (checkpointer && stored.seq === checkpointer.size + 1) checkpointer.feed([stored.bytes]);
        if (stored.seq <= (last?.seq ?? indexed)) continue;
        try {
          const record = JSON.parse(decoder.decode(stored.bytes)) as { key?: unknown; seq?: unknown };
          if (typeof record.key === 'string' && typeof record.seq === 'number') keys.push({ key: record.key, seq: record.seq });
        } catch {
          logger.error({ stream, seq: stored.seq }, 'stored record is not JSON; its key cannot be indexed (run offchannel verify)');
        }
        last = { seq: stored.seq, bytes: stored.bytes };
        if (keys.length >= INDEX_BATCH) save();
      }
      save();
      logger.debug({ stream, seq: head.seq, from, indexed }, 'read the stream\'s records after the key index and the newest checkpoint');
    }
    if (indexed !== head.seq) {
      throw new ArchiveCorruptError(`the sink returned records up to seq ${indexed} but its head is seq ${head.seq}`, { stream, seq: indexed + 1 });
    }
    if (checkpointer && !checkpointer.isCaughtUp) {
      if (checkpointer.size === head.seq) checkpointer.caughtUp();
      else throw new ArchiveCorruptError(`the sink returned records up to seq ${checkpointer.size} but its head is seq ${head.seq}`, { stream, seq: checkpointer.size + 1 });
    }
    logger.debug({ stream, seq: head.seq, hash: head.hash }, 'stream head read from sink');
    this.headSeq = head.seq;
    this.headHash = head.hash;
    this.durable = head;
    this.needsResync = false;
  }

  /**
   * The seq up to which the key index holds this stream, after checking it against the sink:
   * its last record must still be stored with the same hash. An index that is ahead of the sink
   * or disagrees with it is dropped and rebuilt (a full read of the stream, never a duplicate).
   */
  private async checkIndex(head: StreamHead, pruned: StreamHead | undefined): Promise<number> {
    const { index, sink, stream, logger } = this.options;
    const known = index.head(stream);
    if (known.seq === 0) return 0;
    if (known.seq === head.seq && known.hash === head.hash) return known.seq;
    // At or before a spool's pruned prefix the record cannot be read back: trust the index as
    // far as the prefix's own head confirms it (keys of pruned records stay indexed).
    if (pruned && known.seq === pruned.seq && known.hash === pruned.hash) return known.seq;
    if (pruned && known.seq < pruned.seq) {
      logger.warn({ stream, seq: known.seq, head: pruned.seq }, 'the key index ends inside the spool\'s pruned prefix; keys of the records after it up to the prefix are not indexed');
      return known.seq;
    }
    if (known.seq < head.seq) {
      const stored = await readRecordAt(sink, stream, known.seq);
      if (stored && sha256Hex(stored) === known.hash) return known.seq;
    }
    logger.warn({ stream, seq: known.seq, head: head.seq }, 'the key index disagrees with the archive; rebuilding it from the stream');
    index.reset(stream);
    return 0;
  }

  /**
   * Sequences a prepared record and queues it for the next batch. Synchronous: the record's
   * seq and prev are fixed before this returns. Throws `RecordTooLargeError` without
   * consuming a seq.
   */
  enqueue(key: string, template: RecordTemplate | SplicedRecord): Promise<CaptureResult> {
    const seq = this.headSeq + 1;
    const prev = this.headHash;
    let parts: string[];
    if (Array.isArray(template)) {
      // Canonical text already (a record naming blobs): the three values go between its parts.
      // None has anything JSON escapes, so each one's JSON text is itself in quotes, or digits.
      const [beforeTime, beforePrev, beforeSeq, rest] = template as SplicedRecord;
      parts = [beforeTime, `"${this.capturedAt()}"`, beforePrev, `"${prev}"`, beforeSeq, String(seq), rest];
    } else {
      // The template is this capture's own object: fill in the sequencing fields in place.
      const record = template as { -readonly [field in keyof ArchiveRecord]: ArchiveRecord[field] };
      record.seq = seq;
      record.prev = prev;
      record.capturedAt = this.capturedAt();
      // Records of a stream share a few shapes: their member order is remembered, not re-sorted.
      // The text comes in parts (a long message text is one), each written into the buffer as it is.
      parts = canonicalRecordParts(record);
    }
    let length = 0;
    for (const part of parts) length += part.length;
    // UTF-8 takes at least one byte per UTF-16 unit.
    if (length > MAX_RECORD_BYTES) throw new RecordTooLargeError(utf8Length(parts), MAX_RECORD_BYTES);
    const batch = this.batchFor(parts, length, prev);
    const start = batch.size;
    let end = start;
    for (const part of parts) end += batch.buffer.write(part, end);
    if (end - start > MAX_RECORD_BYTES) throw new RecordTooLargeError(end - start, MAX_RECORD_BYTES);
    batch.buffer[end] = 0x0a;
    // A plain view for hashing (cheaper to make than a Buffer, and gone at once).
    const hash = sha256Hex(new Uint8Array(batch.buffer.buffer, batch.buffer.byteOffset + start, end - start));
    batch.size = end + 1;
    if (batch.entries.length === 0) this.queue.push(batch);
    const { promise, resolve, reject } = Promise.withResolvers<CaptureResult>();
    const entry: QueuedRecord = { key, seq, start, end, hash, promise, resolve, reject };
    batch.entries.push(entry);
    this.headSeq = seq;
    this.headHash = hash;
    this.keys.set(key, entry);
    this.flushing ??= this.flushLoop();
    return promise;
  }

  /**
   * The batch a record's `parts` (`length` UTF-16 units) go into, with room for them: the newest queued one while it stays within
   * `maxBatchRecords` and `maxBatchBytes` (a lone record may exceed the latter), else a new one
   * (queued by the caller once the record is in it).
   */
  private batchFor(parts: readonly string[], length: number, prev: string): OpenBatch {
    const { maxBatchRecords, maxBatchBytes } = this.options;
    // UTF-8 takes at most three bytes per UTF-16 unit; the exact size is computed only near the end of a buffer.
    const worst = length * 3 + 1;
    const open = this.queue.at(-1);
    if (open && open.entries.length < maxBatchRecords) {
      if (open.size + worst <= Math.min(open.buffer.length, maxBatchBytes)) return open;
      const needed = open.size + utf8Length(parts) + 1;
      if (needed <= maxBatchBytes) {
        if (needed > open.buffer.length) {
          const grown = Buffer.allocUnsafe(Math.min(maxBatchBytes, Math.max(needed, open.buffer.length * 2)));
          open.buffer.copy(grown, 0, 0, open.size);
          open.buffer = grown;
        }
        return open;
      }
    }
    return { buffer: Buffer.allocUnsafe(Math.max(worst, this.nextBuffer)), size: 0, prev, entries: [] };
  }

  /**
   * The clock's time as an ISO string. Records captured in the same millisecond share one
   * string: formatting a date costs more than the rest of sequencing, and the string depends
   * only on the time value (an invalid date is never reused: NaN equals nothing, so it throws
   * as `toISOString` does).
   */
  private capturedAt(): string {
    const time = this.options.now();
    if (time !== this.lastTime) {
      this.lastIso = new Date(time).toISOString();
      this.lastTime = time;
    }
    return this.lastIso;
  }

  /** Resolves when everything queued so far is durable (or has failed). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flushLoop(): Promise<void> {
    // Let the current tick's captures join the first batch.
    await Promise.resolve();
    try {
      let current = this.queue.length > 0 ? this.startAppend() : undefined;
      while (current) {
        const { batch, records, append } = current;
        let head: StreamHead;
        try {
          head = await append;
        } catch (error) {
          this.fail(batch, error);
          current = this.queue.length > 0 ? this.startAppend() : undefined;
          continue;
        }
        this.durable = head;
        // Start the next write first, so the disk works on it while this batch is indexed and
        // its captures resolved (and the callbacks of those captures, and the new captures they
        // make, use the CPU). It chains on this batch, which is durable.
        current = this.queue.length > 0 ? this.startAppend() : undefined;
        this.indexDurable(batch, head);
        this.options.logger.debug({ stream: this.stream, firstSeq: (batch[0] as QueuedRecord).seq, records: batch.length, head: head.seq }, 'batch durable');
        if (this.checkpointer) {
          this.checkpointer.feed(records);
          // Failures are logged and kept in the checkpointer's state; capture goes on.
          if (this.checkpointer.due()) this.checkpointer.checkpoint().catch(() => undefined);
        }
        this.options.counts.recorded += batch.length;
        for (const entry of batch) {
          entry.resolve({ status: 'recorded', stream: this.stream, key: entry.key, seq: entry.seq, hash: entry.hash });
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /**
   * Moves a durable batch's keys from memory into the key index. The index must never claim a
   * head whose keys it lacks: when an update fails, the batch's keys stay in memory and in
   * {@link unindexed}, and each later update writes them first, with its own batch, in one
   * transaction (the head moves past them only with them). While the index keeps failing it is
   * retried at every doubling of the batches waiting, so a full disk costs O(records), not
   * O(records²); what never got in is read back from the sink at the next start.
   */
  private indexDurable(batch: readonly QueuedRecord[], head: StreamHead): void {
    if (this.lent) {
      // The map is the index: each key's entry becomes its seq (a key is queued only when absent).
      for (const entry of batch) this.keys.set(entry.key, entry.seq);
      this.lent.head = head;
      return;
    }
    let keys = batch;
    if (this.unindexed.length > 0) {
      for (const entry of batch) this.unindexed.push(entry);
      keys = this.unindexed;
      this.unindexedBatches++;
      // Retry at 2, 4, 8, … batches waiting.
      if ((this.unindexedBatches & (this.unindexedBatches - 1)) !== 0) return;
    }
    try {
      // A queued record is an IndexedKey ({key, seq}): no copy of the batch.
      this.options.index.add(this.stream, keys, head);
    } catch (error) {
      if (keys === batch) {
        this.unindexed = [...batch];
        this.unindexedBatches = 1;
      }
      const code = (error as { code?: unknown }).code;
      this.options.logger.error(
        { stream: this.stream, records: keys.length, code: typeof code === 'string' ? code : undefined },
        'the key index could not be updated; keys stay in memory, the update is retried with later batches, and the index catches up at the next start',
      );
      return;
    }
    for (const entry of keys) if (this.keys.get(entry.key) === entry) this.keys.delete(entry.key);
    this.unindexed = [];
    this.unindexedBatches = 0;
  }

  /** Appends the oldest queued batch: its buffer as the stored lines, each record a view of it. */
  private startAppend(): { batch: QueuedRecord[]; records: Uint8Array[]; append: Promise<StreamHead> } {
    const { buffer, size, prev, entries } = this.queue.shift() as OpenBatch;
    this.nextBuffer = Math.max(MIN_BATCH_BUFFER, Math.min(this.options.maxBatchBytes, 2 * size));
    const lines = buffer.subarray(0, size);
    // Plain views (a Buffer view costs more to make, and a sink needs only Uint8Array).
    const records = entries.map((entry) => new Uint8Array(buffer.buffer, buffer.byteOffset + entry.start, entry.end - entry.start));
    let append: Promise<StreamHead>;
    try {
      append = this.options.sink.appendBatch({ stream: this.stream, firstSeq: (entries[0] as QueuedRecord).seq, prev, records, lines });
    } catch (error) {
      append = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    // Observed in flushLoop; this only keeps an early rejection from being reported as unhandled.
    append.catch(() => undefined);
    return { batch: entries, records, append };
  }

  /** The batch failed: reject it and everything chained behind it, roll back, resync next time. */
  private fail(batch: QueuedRecord[], error: unknown): void {
    const dropped = [...batch, ...this.queue.splice(0).flatMap((queued) => queued.entries)];
    this.options.counts.failed += dropped.length;
    for (const entry of dropped) {
      if (this.keys.get(entry.key) === entry) this.keys.delete(entry.key);
      entry.reject(error);
    }
    this.headSeq = this.durable.seq;
    this.headHash = this.durable.hash;
    this.needsResync = true;
    const code = (error as { code?: unknown }).code;
    this.options.logger.error(
      { stream: this.stream, firstSeq: (batch[0] as QueuedRecord).seq, records: dropped.length, code: typeof code === 'string' ? code : undefined },
      'append failed; captures rejected (not acknowledged upstream) and the stream will resynchronize',
    );
  }
}
