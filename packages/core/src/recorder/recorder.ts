/**
 * The Recorder: the one path from a platform event to a durable, chained record.
 *
 * For each capture it validates the input, stores every blob the record names (raw platform
 * bytes, attachments, long text) durably, then sequences the record (seq, prev, hash) and
 * appends it with group commit — many records, one durable write. `capture()` resolves only
 * after the record's batch is durable; only then may a connector acknowledge upstream.
 *
 * Replays are recorded once: each record carries an idempotency key, and a capture whose key
 * is already in the stream resolves as `duplicate` (after the original is durable, never
 * before). On first use of a stream the recorder reads its head back from the sink and
 * brings its key index up to date, so dedup survives restarts. With a persistent
 * {@link KeyIndex} (`openKeyIndex`) and signed checkpoints, start-up reads only the records
 * after the newest checkpoint and after what the index holds: its cost does not grow with
 * the stream's history.
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { InvalidRecordError } from '../errors/record-errors.ts';
import { ClosedError, SinkUnsuitableError } from '../errors/sink-errors.ts';
import { hashedBlobCopy } from '../hash/hashed-blob.ts';
import type { Logger } from '../logger/logger.ts';
import { noopLogger } from '../logger/logger.ts';
import { redactingLogger } from '../logger/redacting-logger.ts';
import type { CaptureInput, CaptureResult } from '../record/capture-input.ts';
import { RECORD_KINDS, type BlobRef, type RecordKind, type SourceInfo } from '../record/record.ts';
import { streamName } from '../record/stream-name.ts';
import { MAX_BATCH_RECORDS } from '../sink/check-inputs.ts';
import { SINK_SPEC_VERSION, type Sink } from '../sink/sink.ts';
import { canonicalize } from '../json/canonical-json.ts';
import { type PreparedCapture, type RecordTemplate, prepareCapture } from './prepare-capture.ts';
import type { CheckpointOptions, CheckpointState } from './stream-checkpointer.ts';
import { type KeyIndex, memoryKeyIndex } from './key-index.ts';
import { StreamLog } from './stream-log.ts';

export interface RecorderOptions {
  readonly sink: Sink;
  /** Diagnostics only; wrapped in a redacting logger. Default: no logging. */
  readonly logger?: Logger;
  /** The recorder clock for `capturedAt`. Default: system time. */
  readonly clock?: () => Date;
  /** Most records in one append. Default 4096. */
  readonly maxBatchRecords?: number;
  /** Most bytes in one append (a single record may exceed it). Default 1 MiB. */
  readonly maxBatchBytes?: number;
  /**
   * Refuse a sink whose retention guarantee is weaker: `compliance-lock` accepts only
   * WORM storage (S3 Object Lock COMPLIANCE); `append-only` also accepts the file-system sink.
   * Default: no requirement.
   */
  readonly requireRetention?: 'compliance-lock' | 'append-only';
  /** Accept a sink whose durability is `volatile` (in-memory test sinks). Default false. */
  readonly allowVolatileSink?: boolean;
  /**
   * Sign a checkpoint for each stream every `everyRecords` records, every `everyMs` while records
   * arrive, and on `close()` (C2SP tlog-checkpoint, Ed25519). Without it nothing is signed, and
   * the archive can show only that its chain is intact, not that it was never rewritten.
   */
  readonly checkpoints?: CheckpointOptions;
  /**
   * Where idempotency keys are kept. Default: in memory, rebuilt by reading every stream from
   * its first record at start-up (memory and start-up time grow with history). For long-lived
   * capture use `openKeyIndex({ file })`: a SQLite file on the capture host, checked against
   * the sink at every start and rebuilt from it when missing or inconsistent. The caller owns
   * it (close it after the recorder).
   */
  readonly keyIndex?: KeyIndex;
  /**
   * Told how each capture settled, for metrics: its stream, kind, outcome and how long from
   * `capture()` to durable (or to the failure). Never given the record's content. Called
   * synchronously after the capture settles; a throw from it is ignored.
   */
  readonly onCapture?: (event: CaptureEvent) => void;
}

/** How one capture settled (`RecorderOptions.onCapture`). */
export interface CaptureEvent {
  readonly stream: string;
  /** The input's kind when it is one of `RECORD_KINDS` and the capture did not fail; else `undefined`. */
  readonly kind: RecordKind | undefined;
  readonly status: CaptureResult['status'] | 'failed';
  /** The record's seq (not when failed). */
  readonly seq?: number;
  /** The error's code when failed (`UNKNOWN` for an error without one). */
  readonly code?: string;
  /** From `capture()` to durable (or duplicate, or failed), monotonic clock. */
  readonly seconds: number;
}

/** Captures into one stream with a fixed `source`. What a connector's context wraps. */
export interface StreamWriter {
  readonly stream: string;
  readonly channel: string;
  readonly account: string;
  /** Records one event; resolves when it is durable (or was already archived). */
  capture(input: CaptureInput): Promise<CaptureResult>;
  /** Stores a blob durably and returns its ref (for connectors that stream attachments first). */
  putBlob(bytes: Uint8Array): Promise<BlobRef>;
  /** The seq of the durable record holding `key`, or `undefined` if none. */
  lookup(key: string): Promise<number | undefined>;
}

/** Counters since the recorder was created. */
export interface RecorderStats {
  readonly recorded: number;
  readonly duplicates: number;
  readonly failed: number;
}

const RETENTION_RANK = { none: 0, 'append-only': 1, 'compliance-lock': 2 } as const;

/** A deep copy of a validated template: JSON data only, so a canonical round trip is exact. */
function detachTemplate(template: RecordTemplate): RecordTemplate {
  return JSON.parse(canonicalize(template)) as RecordTemplate;
}

export class Recorder {
  readonly sink: Sink;
  private readonly logger: Logger;
  /** The clock's time value (ms since the epoch; the default reads it without making a Date). */
  private readonly now: () => number;
  private readonly maxBatchRecords: number;
  private readonly maxBatchBytes: number;
  private readonly logs = new Map<string, StreamLog>();
  /**
   * Per stream, captures that store blobs (or wait for a resync) before they are sequenced, in
   * the order they were captured. Blobs are stored in parallel; records are sequenced in capture
   * order, all that are ready at once (one group commit), so a pipelining connector's records
   * keep the order it captured them in.
   */
  private readonly waiting = new Map<StreamLog, Turn[]>();
  private closed = false;
  private readonly counts = { recorded: 0, duplicates: 0, failed: 0 };
  private readonly checkpoints: CheckpointOptions | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly keyIndex: KeyIndex;
  private readonly onCapture: ((event: CaptureEvent) => void) | undefined;

  /**
   * Mounts `sink`. Throws {@link SinkUnsuitableError} if the sink declares another contract
   * version, is read-only, or promises less than the options require.
   */
  constructor(options: RecorderOptions) {
    const { sink } = options;
    const declared: unknown = sink.specVersion;
    if (declared !== SINK_SPEC_VERSION) {
      throw new SinkUnsuitableError(`sink "${sink.kind}" implements Sink spec ${String(declared)}; this recorder needs spec ${SINK_SPEC_VERSION}. Upgrade the sink or @offchannel/core.`);
    }
    if (sink.readOnly) throw new SinkUnsuitableError(`sink "${sink.kind}" is open read-only; open it for writing to record.`);
    if (sink.guarantees.durability === 'volatile' && options.allowVolatileSink !== true) {
      throw new SinkUnsuitableError(`sink "${sink.kind}" keeps data in memory only; captures would be acknowledged without being durable. Use a durable sink (or allowVolatileSink in tests).`);
    }
    if (options.requireRetention && RETENTION_RANK[sink.guarantees.retention] < RETENTION_RANK[options.requireRetention]) {
      throw new SinkUnsuitableError(`sink "${sink.kind}" offers retention "${sink.guarantees.retention}" but "${options.requireRetention}" is required. Use a WORM sink such as @offchannel/sink-s3 with Object Lock.`);
    }
    this.sink = sink;
    this.logger = redactingLogger(options.logger ?? noopLogger).child({ component: 'recorder' });
    const { clock } = options;
    this.now = clock ? () => clock().getTime() : Date.now;
    this.checkpoints = options.checkpoints;
    this.keyIndex = options.keyIndex ?? memoryKeyIndex();
    this.onCapture = options.onCapture;
    if (this.checkpoints) {
      const every = this.checkpoints.everyMs ?? 60_000;
      if (!Number.isInteger(every) || every < 1) throw new RangeError('checkpoints.everyMs must be a positive integer');
      if (this.checkpoints.everyRecords !== undefined && (!Number.isInteger(this.checkpoints.everyRecords) || this.checkpoints.everyRecords < 1)) {
        throw new RangeError('checkpoints.everyRecords must be a positive integer');
      }
      this.timer = setInterval(() => {
        this.checkpointDue();
      }, Math.min(every, 10_000));
      this.timer.unref();
    }
    this.maxBatchRecords = options.maxBatchRecords ?? 4096;
    this.maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
    if (!Number.isInteger(this.maxBatchRecords) || this.maxBatchRecords < 1 || this.maxBatchRecords > MAX_BATCH_RECORDS) {
      throw new RangeError(`maxBatchRecords must be an integer from 1 to ${MAX_BATCH_RECORDS}`);
    }
    if (!Number.isInteger(this.maxBatchBytes) || this.maxBatchBytes < 1) throw new RangeError('maxBatchBytes must be a positive integer');
  }

  /** A writer for `<channel>:<account>` that stamps `source` on every record. */
  writer(target: { readonly channel: string; readonly account: string; readonly source: SourceInfo }): StreamWriter {
    const stream = streamName(target.channel, target.account);
    const { source } = target;
    return {
      stream,
      channel: target.channel,
      account: target.account,
      capture: (input) => this.capture(stream, source, input),
      putBlob: (bytes) => this.putBlob(bytes),
      lookup: (key) => this.lookup(stream, key),
    };
  }

  /**
   * Records `input` in `stream`. Resolves after the record is durable in the sink, or with
   * `duplicate` when its key is already archived. Rejects with `InvalidRecordError` /
   * `RecordTooLargeError` (nothing written), or with the sink's error (not durable: do not
   * acknowledge upstream; capturing again later is safe).
   */
  capture(stream: string, source: SourceInfo, input: CaptureInput): Promise<CaptureResult> {
    const promise = this.record(stream, source, input);
    const observe = this.onCapture;
    if (!observe) return promise;
    const started = performance.now();
    const declared: unknown = (input as { kind?: unknown } | null)?.kind;
    const kind = RECORD_KINDS.find((known) => known === declared);
    const tell = (event: Omit<CaptureEvent, 'stream' | 'seconds'>): void => {
      try {
        observe({ stream, ...event, seconds: (performance.now() - started) / 1000 });
      } catch {
        // Metrics never change what a capture does.
      }
    };
    promise.then(
      (result) => {
        tell({ kind, status: result.status, seq: result.seq });
      },
      (error: unknown) => {
        tell({ kind: undefined, status: 'failed', code: OffchannelError.isInstance(error) ? error.code : 'UNKNOWN' });
      },
    );
    return promise;
  }

  private record(stream: string, source: SourceInfo, input: CaptureInput): Promise<CaptureResult> {
    let log: StreamLog;
    let prepared: PreparedCapture;
    try {
      if (this.closed) throw new ClosedError('recorder');
      log = this.log(stream);
      prepared = prepareCapture(input, log.names, source);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const { key } = prepared;
    const earlier = (log.pending.size > 0 ? log.pending.get(key) : undefined) ?? log.find(key);
    if (typeof earlier === 'number') return Promise.resolve(this.duplicate(stream, key, earlier));
    if (earlier) return earlier.then((result) => this.duplicate(result.stream, key, result.seq));
    if (log.ready && prepared.blobs.length === 0 && prepared.existingBlobs.length === 0 && (this.waiting.get(log)?.length ?? 0) === 0) {
      // Fast path: sequenced synchronously. The log counts it and finds it while in flight.
      try {
        return log.enqueue(key, prepared.template);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    }
    const promise = this.store(log, prepared);
    log.pending.set(key, promise);
    const settled = (): void => {
      log.pending.delete(key);
    };
    promise.then(settled, settled);
    return promise;
  }

  /** Stores `bytes` as a blob durably and returns its ref. */
  async putBlob(bytes: Uint8Array): Promise<BlobRef> {
    if (this.closed) throw new ClosedError('recorder');
    if (!(bytes instanceof Uint8Array)) throw new InvalidRecordError('bytes', 'must be a Uint8Array');
    // A private copy (hashed-blob.ts): the sink stores what was hashed, and need not hash it again.
    const blob = hashedBlobCopy(bytes);
    await this.sink.putBlob(blob.sha256, blob.bytes);
    return { sha256: blob.sha256, size: blob.bytes.length };
  }

  /** The seq of the durable record with `key` in `stream`, or `undefined`. */
  async lookup(stream: string, key: string): Promise<number | undefined> {
    const log = this.log(stream);
    if (!log.ready) await log.resync();
    const pending = log.pending.get(key) ?? log.inFlight(key);
    if (pending) {
      const result = await pending;
      return result.seq;
    }
    return log.seqOf(key);
  }

  /** Resolves when every capture accepted so far has settled. */
  async flush(): Promise<void> {
    for (;;) {
      const pending = [...this.logs.values()].flatMap((log) => [...log.pending.values()]);
      if (pending.length === 0) break;
      await Promise.allSettled(pending);
    }
    await Promise.all([...this.logs.values()].map((log) => log.drain()));
  }

  /**
   * Signs a checkpoint now for every stream with records added since its last one, and waits.
   * Resolves with each stream's checkpoint state (a failure is in `lastError` / `refused`).
   */
  async checkpoint(): Promise<CheckpointState[]> {
    await this.flush();
    const checkpointers = [...this.logs.values()].flatMap((log) => (log.checkpointer ? [log.checkpointer] : []));
    await Promise.allSettled(checkpointers.map((checkpointer) => checkpointer.checkpoint()));
    await Promise.all(checkpointers.map((checkpointer) => checkpointer.idle()));
    return checkpointers.map((checkpointer) => checkpointer.state);
  }

  /** Where each stream's checkpointing stands. */
  checkpointStates(): CheckpointState[] {
    return [...this.logs.values()].flatMap((log) => (log.checkpointer ? [log.checkpointer.state] : []));
  }

  /**
   * Stops accepting captures, waits for those in flight, and — when checkpoints are configured —
   * signs a final checkpoint for every stream with new records (a clean stop). Does not close
   * the sink (the caller owns it). Idempotent.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.flush();
    if (this.checkpoints) await this.checkpoint();
  }

  /**
   * The Merkle head (size, root) of every stream this recorder has open and caught up, for host
   * attestations. Needs `checkpoints` (the signing schedule keeps the tree); empty without.
   */
  merkleHeads(): { readonly stream: string; readonly size: number; readonly root: Uint8Array }[] {
    return [...this.logs.entries()].flatMap(([stream, log]) => {
      const head = log.checkpointer?.merkleHead;
      return head ? [{ stream, ...head }] : [];
    });
  }

  private checkpointDue(): void {
    for (const log of this.logs.values()) {
      // Failures are logged and kept in the checkpointer's state.
      if (log.checkpointer?.due()) log.checkpointer.checkpoint().catch(() => undefined);
    }
  }

  get stats(): RecorderStats {
    return { ...this.counts };
  }

  private log(stream: string): StreamLog {
    let log = this.logs.get(stream);
    if (!log) {
      log = new StreamLog({
        sink: this.sink,
        stream,
        logger: this.logger,
        now: this.now,
        maxBatchRecords: this.maxBatchRecords,
        maxBatchBytes: this.maxBatchBytes,
        index: this.keyIndex,
        counts: this.counts,
        ...(this.checkpoints ? { checkpoints: this.checkpoints } : {}),
      });
      this.logs.set(stream, log);
    }
    return log;
  }

  private duplicate(stream: string, key: string, seq: number): CaptureResult {
    this.counts.duplicates++;
    return { status: 'duplicate', stream, key, seq };
  }

  private store(log: StreamLog, input: PreparedCapture): Promise<CaptureResult> {
    // This capture is sequenced only after awaiting. Detach it from the caller's objects now,
    // in the caller's tick, so a platform library mutating them meanwhile cannot change what
    // was validated (the fast path sequences synchronously and needs no copy). A record naming
    // blobs already is: its canonical text (`spliced`) is what will be sequenced.
    const prepared = input.spliced ? input : { ...input, template: detachTemplate(input.template) };
    const record = prepared.spliced ?? prepared.template;
    const { key } = prepared;
    const { promise, resolve, reject } = Promise.withResolvers<CaptureResult>();
    const turn: Turn = {
      ready: false,
      sequence: () => {
        try {
          const seq = log.seqOf(key);
          resolve(seq === undefined ? log.enqueue(key, record) : this.duplicate(log.stream, key, seq));
        } catch (error) {
          this.counts.failed++;
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      },
      fail: (error) => {
        this.counts.failed++;
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    };
    const queue = this.waiting.get(log) ?? [];
    this.waiting.set(log, queue);
    queue.push(turn);
    void this.prepareTurn(log, prepared, turn);
    return promise;
  }

  /** Makes a turn ready to be sequenced: resynced, blobs durable. Never rejects (the turn fails instead). */
  private async prepareTurn(log: StreamLog, prepared: PreparedCapture, turn: Turn): Promise<void> {
    try {
      if (!log.ready) await log.resync();
      if (log.seqOf(prepared.key) === undefined) {
        // Blobs first: a record must never name a blob that is not durable.
        if (prepared.blobs.length > 0) await Promise.all(prepared.blobs.map((blob) => this.sink.putBlob(blob.sha256, blob.bytes)));
        for (const ref of prepared.existingBlobs) {
          const stored = await this.sink.statBlob(ref.sha256);
          if (stored?.size !== ref.size) {
            throw new OffchannelError('BLOB_MISSING', `blob ${ref.sha256} (${ref.size} bytes) named by the capture is not in the sink; store it with putBlob first.`);
          }
        }
      }
      turn.ready = true;
    } catch (error) {
      const queue = this.waiting.get(log) ?? [];
      queue.splice(queue.indexOf(turn), 1);
      turn.fail(error);
    }
    this.sequenceReady(log);
  }

  /** Sequences, in capture order, every waiting turn that is ready, up to the first that is not. */
  private sequenceReady(log: StreamLog): void {
    const queue = this.waiting.get(log) ?? [];
    while (queue[0]?.ready === true) {
      if (!log.ready) {
        void log.resync().then(
          () => {
            this.sequenceReady(log);
          },
          (error: unknown) => {
            while (queue[0]?.ready === true) (queue.shift() as Turn).fail(error);
            this.sequenceReady(log);
          },
        );
        return;
      }
      (queue.shift() as Turn).sequence();
    }
  }
}

/** A capture waiting in {@link Recorder.waiting} for its turn to be sequenced. */
interface Turn {
  ready: boolean;
  sequence(): void;
  fail(error: unknown): void;
}
