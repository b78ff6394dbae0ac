/**
 * Internal: one stream's sequencing state and group-commit loop.
 *
 * Records are sequenced (seq, prev, hash) synchronously when they enter the queue, so the
 * chain order is the queue order. A single flush loop per stream appends everything queued
 * as one batch (one durable write for many records), resolves those captures, and repeats.
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
import { canonicalBytes } from '../json/canonical-json.ts';
import type { Logger } from '../logger/logger.ts';
import type { CaptureResult } from '../record/capture-input.ts';
import { type ArchiveRecord, MAX_RECORD_BYTES } from '../record/record.ts';
import { readRecordAt } from '../sink/read-record-at.ts';
import type { Sink, StreamHead } from '../sink/sink.ts';
import type { IndexedKey, KeyIndex } from './key-index.ts';
import { parseStreamName } from '../record/stream-name.ts';
import type { RecordTemplate } from './prepare-capture.ts';
import { type CheckpointOptions, StreamCheckpointer } from './stream-checkpointer.ts';

interface QueuedRecord {
  readonly key: string;
  readonly seq: number;
  readonly prev: string;
  readonly bytes: Uint8Array;
  readonly hash: string;
  readonly resolve: (result: CaptureResult) => void;
  readonly reject: (error: unknown) => void;
}

export interface StreamLogOptions {
  readonly sink: Sink;
  readonly stream: string;
  readonly logger: Logger;
  readonly now: () => Date;
  readonly maxBatchRecords: number;
  readonly maxBatchBytes: number;
  /** Where the stream's idempotency keys are kept (shared by all streams of a recorder). */
  readonly index: KeyIndex;
  /** When set, the stream's checkpoints are signed as configured. */
  readonly checkpoints?: CheckpointOptions;
}

const decoder = new TextDecoder();
/** Keys written to the index in one transaction while a stream is read back. */
const INDEX_BATCH = 4096;

export class StreamLog {
  readonly stream: string;
  /** The stream name and its parts, parsed once. */
  readonly names: { readonly stream: string; readonly channel: string; readonly account: string };
  /** Key → seq of records queued or durable but not yet in the key index (bounded by what is in flight). */
  private readonly recent = new Map<string, number>();
  /**
   * Captures not yet durable, by key. A second capture of the same key waits for the first
   * and reports `duplicate` only once the first is durable — never before.
   */
  readonly pending = new Map<string, Promise<CaptureResult>>();
  /** Last sequenced record (may be ahead of the sink while a batch is in flight). */
  private head: StreamHead = { seq: 0, hash: ZERO_HASH };
  /** Last record the sink acknowledged. */
  private durable: StreamHead = { seq: 0, hash: ZERO_HASH };
  private queue: QueuedRecord[] = [];
  private flushing: Promise<void> | undefined;
  private needsResync = true;
  private resyncing: Promise<void> | undefined;
  private readonly options: StreamLogOptions;
  /** Signs this stream's checkpoints (when configured); sees every durable record once, in order. */
  checkpointer: StreamCheckpointer | undefined;

  constructor(options: StreamLogOptions) {
    this.options = options;
    this.stream = options.stream;
    this.names = { stream: options.stream, ...parseStreamName(options.stream) };
  }

  /** The seq of the record holding `key`, queued or durable; `undefined` if none. Valid once `ready`. */
  seqOf(key: string): number | undefined {
    return this.recent.get(key) ?? this.options.index.get(this.stream, key);
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
    }
    let from = Math.min(indexed, checkpointer ? checkpointer.size : head.seq) + 1;
    if (pruned && from <= pruned.seq) {
      // A spool pruned after forwarding keeps the newest checkpoint's record and everything after.
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
    this.head = head;
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
  enqueue(key: string, template: RecordTemplate): Promise<CaptureResult> {
    const seq = this.head.seq + 1;
    // The template is this capture's own object: fill in the sequencing fields in place.
    const record = template as { -readonly [field in keyof ArchiveRecord]: ArchiveRecord[field] };
    record.seq = seq;
    record.prev = this.head.hash;
    record.capturedAt = this.options.now().toISOString();
    const bytes = canonicalBytes(record);
    if (bytes.length > MAX_RECORD_BYTES) throw new RecordTooLargeError(bytes.length, MAX_RECORD_BYTES);
    const hash = sha256Hex(bytes);
    const prev = this.head.hash;
    this.head = { seq, hash };
    this.recent.set(key, seq);
    const { promise, resolve, reject } = Promise.withResolvers<CaptureResult>();
    this.queue.push({ key, seq, prev, bytes, hash, resolve, reject });
    this.flushing ??= this.flushLoop();
    return promise;
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
        const { batch, append } = current;
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
          this.checkpointer.feed(batch.map((entry) => entry.bytes));
          // Failures are logged and kept in the checkpointer's state; capture goes on.
          if (this.checkpointer.due()) this.checkpointer.checkpoint().catch(() => undefined);
        }
        for (const entry of batch) {
          entry.resolve({ status: 'recorded', stream: this.stream, key: entry.key, seq: entry.seq, hash: entry.hash });
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** Moves a durable batch's keys from memory into the key index (in memory they stay on failure). */
  private indexDurable(batch: readonly QueuedRecord[], head: StreamHead): void {
    try {
      // A queued record is an IndexedKey ({key, seq}): no copy of the batch.
      this.options.index.add(this.stream, batch, head);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      this.options.logger.error({ stream: this.stream, code: typeof code === 'string' ? code : undefined }, 'the key index could not be updated; keys stay in memory and the index catches up at the next start');
      return;
    }
    for (const entry of batch) if (this.recent.get(entry.key) === entry.seq) this.recent.delete(entry.key);
  }

  private startAppend(): { batch: QueuedRecord[]; append: Promise<StreamHead> } {
    const batch = this.takeBatch();
    const first = batch[0] as QueuedRecord;
    let append: Promise<StreamHead>;
    try {
      append = this.options.sink.appendBatch({ stream: this.stream, firstSeq: first.seq, prev: first.prev, records: batch.map((entry) => entry.bytes) });
    } catch (error) {
      append = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    // Observed in flushLoop; this only keeps an early rejection from being reported as unhandled.
    append.catch(() => undefined);
    return { batch, append };
  }

  private takeBatch(): QueuedRecord[] {
    const { maxBatchRecords, maxBatchBytes } = this.options;
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < maxBatchRecords) {
      const size = (this.queue[count] as QueuedRecord).bytes.length + 1;
      if (count > 0 && bytes + size > maxBatchBytes) break;
      bytes += size;
      count++;
    }
    return this.queue.splice(0, count);
  }

  /** The batch failed: reject it and everything chained behind it, roll back, resync next time. */
  private fail(batch: QueuedRecord[], error: unknown): void {
    const dropped = [...batch, ...this.queue.splice(0)];
    for (const entry of dropped) {
      if (this.recent.get(entry.key) === entry.seq) this.recent.delete(entry.key);
      entry.reject(error);
    }
    this.head = this.durable;
    this.needsResync = true;
    const code = (error as { code?: unknown }).code;
    this.options.logger.error(
      { stream: this.stream, firstSeq: (batch[0] as QueuedRecord).seq, records: dropped.length, code: typeof code === 'string' ? code : undefined },
      'append failed; captures rejected (not acknowledged upstream) and the stream will resynchronize',
    );
  }
}
