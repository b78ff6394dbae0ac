/**
 * The Forwarder: copies what a local spool holds to one or more remote sinks, in order,
 * idempotently, resuming after restarts.
 *
 * The recorder writes to the spool (normally the file-system sink), so captures are
 * acknowledged as soon as they are durable on local disk — even while the remote store is
 * down. The forwarder then copies, per stream and per target: first the blobs a batch's records
 * name, then the records themselves (identical bytes, appended with the target's own
 * compare-and-append), then the Merkle tiles, checkpoint notes and timestamp tokens the
 * copied records make complete. It keeps no cursor of its own: where a target stands is read
 * from the target (its head), so a restart, a crash mid-copy or a second forwarder never
 * duplicates or skips anything. Before continuing a stream it checks that the target's last
 * record is byte-identical to the spool's at that seq; if not, the two have diverged (another
 * writer, or a restored spool) and that stream is stopped for that target and reported.
 *
 * Targets are independent: one being down does not hold back another. Each ends up with the
 * same records and the same signed checkpoints, so each verifies on its own with the same key.
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { SinkConflictError } from '../errors/sink-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { Logger } from '../logger/logger.ts';
import { noopLogger } from '../logger/logger.ts';
import { redactingLogger } from '../logger/redacting-logger.ts';
import { TILE_WIDTH, type TileId, tileCounts } from '../merkle/tiles.ts';
import type { ArchiveRecord } from '../record/record.ts';
import type { AppendBatch, Sink, StreamHead } from '../sink/sink.ts';
import { blobRefs } from '../verify/blob-refs.ts';
import { spoolingSink } from './spooling-sink.ts';

/** A remote sink and the name it is reported under. */
export interface ForwardTarget {
  readonly name: string;
  readonly sink: Sink;
}

export interface ForwarderOptions {
  /** Where the recorder writes (normally `@offchannel/sink-fs`). Only read from. */
  readonly spool: Sink;
  /** One remote sink, or two for a redundant copy (SEC 17a-4(f)(2)(v)). */
  readonly targets: readonly ForwardTarget[];
  readonly logger?: Logger;
  /** Most records per copied batch (default 10,000). */
  readonly maxBatchRecords?: number;
  /** Most bytes per copied batch (default 8 MiB). */
  readonly maxBatchBytes?: number;
  /** How often to look for streams written by others, and for work missed (ms, default 5,000). */
  readonly pollMs?: number;
  /** First delay after a failure (ms, default 200); doubles up to `maxRetryMs` (default 30,000). */
  readonly minRetryMs?: number;
  readonly maxRetryMs?: number;
  /** Called after every batch copied to a target: for metrics and lag. */
  readonly onForwarded?: (event: ForwardedEvent) => void;
}

export interface ForwardedEvent {
  readonly target: string;
  readonly stream: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
}

/** Where one stream stands on one target. */
export interface ForwardStreamStatus {
  readonly stream: string;
  /** Last seq the target is known to hold (undefined before it was first read). */
  readonly seq: number | undefined;
  /** Largest checkpoint size copied. */
  readonly checkpoint: number;
  readonly state: 'idle' | 'copying' | 'retrying' | 'diverged';
  readonly lastError?: string;
}

export interface ForwarderStatus {
  readonly targets: readonly { readonly name: string; readonly streams: readonly ForwardStreamStatus[] }[];
}

/** The target's copy of a stream is not a prefix of the spool's: the forwarder stops that stream there. */
export class ForwardDivergedError extends OffchannelError {
  readonly target: string;
  readonly stream: string;

  constructor(target: string, stream: string, problem: string) {
    super('FORWARD_DIVERGED', `target ${target}, stream ${stream}: ${problem}. Nothing more is copied for this stream to this target; find the other writer (or the restored spool) and run offchannel verify on both.`);
    this.target = target;
    this.stream = stream;
  }
}

/** `drain()` did not finish in time. */
export class ForwardTimeoutError extends OffchannelError {
  constructor(detail: string) {
    super('FORWARD_TIMEOUT', `forwarding did not catch up in time: ${detail}. The spool keeps everything; forwarding continues.`);
  }
}

const decoder = new TextDecoder();
const SHA256_MEMBER = Buffer.from('"sha256":');
/** Timestamp tokens arrive just after their note; keep looking for them this long. */
const TOKEN_GRACE_MS = 10 * 60 * 1000;

export class Forwarder {
  /**
   * The spool, as a sink for the recorder: every call goes to the spool, and each durable append
   * or checkpoint wakes the forwarder at once.
   */
  readonly sink: Sink;
  private readonly options: ForwarderOptions;
  private readonly logger: Logger;
  private readonly lanes = new Map<string, Lane>();
  private poller: NodeJS.Timeout | undefined;
  private running = false;
  private scanning: Promise<void> | undefined;

  constructor(options: ForwarderOptions) {
    if (options.targets.length === 0) throw new RangeError('the forwarder needs at least one target');
    const names = new Set(options.targets.map((target) => target.name));
    if (names.size !== options.targets.length) throw new RangeError('forward targets must have distinct names');
    for (const target of options.targets) if (target.sink === options.spool) throw new RangeError(`target ${target.name} is the spool itself`);
    this.options = options;
    this.logger = redactingLogger(options.logger ?? noopLogger).child({ component: 'forwarder' });
    this.sink = spoolingSink(options.spool, (stream) => {
      this.notify(stream);
    });
  }

  /** Starts copying every stream of the spool, and keeps going until `stop()`. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.scan();
    this.poller = setInterval(() => {
      this.scan();
      for (const lane of this.lanes.values()) lane.wake();
    }, this.options.pollMs ?? 5000);
    this.poller.unref();
  }

  /** Wakes the copy of `stream` (the spooling sink calls this after each append). */
  notify(stream: string): void {
    if (!this.running) return;
    for (const target of this.options.targets) this.lane(target, stream).wake();
  }

  /**
   * Resolves when every target holds every record and checkpoint the spool held when this was
   * called. Rejects with `FORWARD_TIMEOUT` after `timeoutMs` (default 60,000), or at once with
   * the divergence if a stream diverged.
   */
  async drain(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    const { spool } = this.options;
    const goals: { stream: string; seq: number; checkpoint: number }[] = [];
    for (const stream of await spool.streams()) {
      let seq = 0;
      for await (const stored of spool.read(stream, { fromSeq: this.knownSpoolSeq(stream) })) seq = stored.seq;
      const checkpoints = await spool.checkpoints(stream);
      goals.push({ stream, seq, checkpoint: checkpoints.filter((size) => size <= seq).at(-1) ?? 0 });
      for (const target of this.options.targets) this.lane(target, stream).wake();
    }
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    for (;;) {
      const behind: string[] = [];
      for (const goal of goals) {
        for (const target of this.options.targets) {
          const lane = this.lane(target, goal.stream);
          if (lane.diverged) throw lane.diverged;
          if ((lane.head?.seq ?? -1) < goal.seq || lane.checkpoint < goal.checkpoint) behind.push(`${target.name}/${goal.stream} at ${lane.head?.seq ?? '?'} of ${goal.seq}`);
        }
      }
      if (behind.length === 0) return;
      if (Date.now() > deadline) throw new ForwardTimeoutError(behind.slice(0, 5).join(', '));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  status(): ForwarderStatus {
    return {
      targets: this.options.targets.map((target) => ({
        name: target.name,
        streams: [...this.lanes.values()].filter((lane) => lane.target === target).map((lane) => lane.status()).sort((a, b) => (a.stream < b.stream ? -1 : 1)),
      })),
    };
  }

  /** Stops after the copies in progress finish. Sinks are not closed. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.poller) clearInterval(this.poller);
    await this.scanning;
    await Promise.all([...this.lanes.values()].map((lane) => lane.stop()));
  }

  private knownSpoolSeq(stream: string): number {
    let seq = 1;
    for (const lane of this.lanes.values()) if (lane.stream === stream) seq = Math.max(seq, lane.head?.seq ?? 1);
    return seq;
  }

  private scan(): void {
    if (this.scanning) return;
    this.scanning = this.options.spool
      .streams()
      .then((streams) => {
        if (!this.running) return;
        for (const stream of streams) for (const target of this.options.targets) this.lane(target, stream).wake();
      })
      .catch((error: unknown) => {
        this.logger.error({ code: (error as { code?: string }).code }, 'could not list the spool streams; retrying at the next poll');
      })
      .finally(() => {
        this.scanning = undefined;
      });
  }

  private lane(target: ForwardTarget, stream: string): Lane {
    const key = `${target.name}\u0000${stream}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = new Lane(target, stream, this.options, this.logger, () => this.running);
      this.lanes.set(key, lane);
    }
    return lane;
  }
}

/** One stream to one target: a loop that copies while there is work, then sleeps until woken. */
class Lane {
  readonly target: ForwardTarget;
  readonly stream: string;
  /** The target's head, once read (and checked against the spool). */
  head: StreamHead | undefined;
  /** Largest checkpoint size copied (with its tiles). */
  checkpoint = 0;
  diverged: ForwardDivergedError | undefined;
  private readonly options: ForwarderOptions;
  private readonly logger: Logger;
  private readonly isRunning: () => boolean;
  private state: ForwardStreamStatus['state'] = 'idle';
  private lastError: string | undefined;
  private loop: Promise<void> | undefined;
  private woken = false;
  private wakeUp: (() => void) | undefined;
  /** Full tiles copied so far, per level. */
  private readonly fullTiles: number[] = [];
  /** Checkpoints copied without a timestamp token: size → when (the token may still come). */
  private readonly tokensDue = new Map<number, number>();
  /** Blobs known to be on the target (bounded). */
  private readonly blobsKnown = new Set<string>();

  constructor(target: ForwardTarget, stream: string, options: ForwarderOptions, logger: Logger, isRunning: () => boolean) {
    this.target = target;
    this.stream = stream;
    this.options = options;
    this.logger = logger.child({ target: target.name, stream });
    this.isRunning = isRunning;
  }

  status(): ForwardStreamStatus {
    return { stream: this.stream, seq: this.head?.seq, checkpoint: this.checkpoint, state: this.state, ...(this.lastError === undefined ? {} : { lastError: this.lastError }) };
  }

  wake(): void {
    if (this.diverged || !this.isRunning()) return;
    this.woken = true;
    this.wakeUp?.();
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
      // Woken after the loop decided to go idle: go again.
      if (this.woken) this.wake();
    });
  }

  async stop(): Promise<void> {
    this.wakeUp?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let delay = this.options.minRetryMs ?? 200;
    while (this.isRunning() && !this.diverged) {
      this.woken = false;
      try {
        this.state = 'copying';
        const progressed = await this.copyOnce();
        this.state = 'idle';
        this.lastError = undefined;
        delay = this.options.minRetryMs ?? 200;
        if (progressed) continue;
        if (this.woken) continue;
        return; // idle until woken again
      } catch (error) {
        this.head = undefined; // re-read (and re-check) where the target stands
        const code = (error as { code?: unknown }).code;
        if (error instanceof ForwardDivergedError) {
          this.diverged = error;
          this.state = 'diverged';
          this.lastError = error.message;
          this.logger.error({ code: error.code }, 'the target diverged from the spool; this stream is no longer copied there');
          return;
        }
        this.state = 'retrying';
        this.lastError = error instanceof Error ? error.message : String(error);
        this.logger.warn({ code: typeof code === 'string' ? code : undefined, retryInMs: delay }, 'copy failed; retrying');
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.options.maxRetryMs ?? 30_000);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        if (!this.isRunning()) done();
      };
    });
  }

  /** Copies one batch (and what it completes); false when there was nothing to do. */
  private async copyOnce(): Promise<boolean> {
    const { spool } = this.options;
    const { sink } = this.target;
    if (!this.head) await this.connect();
    const head = this.head as StreamHead;
    const records: Uint8Array[] = [];
    let bytes = 0;
    const maxRecords = this.options.maxBatchRecords ?? 10_000;
    const maxBytes = this.options.maxBatchBytes ?? 8 * 1024 * 1024;
    for await (const stored of spool.read(this.stream, { fromSeq: head.seq + 1 })) {
      if (stored.seq !== head.seq + 1 + records.length) throw new Error(`the spool returned seq ${stored.seq} where ${head.seq + 1 + records.length} was expected`);
      records.push(Uint8Array.from(stored.bytes));
      bytes += stored.bytes.length + 1;
      if (records.length >= maxRecords || bytes >= maxBytes) break;
    }
    if (records.length === 0) {
      await this.copyCheckpoints();
      return false;
    }
    await this.copyBlobs(records);
    const batch: AppendBatch = { stream: this.stream, firstSeq: head.seq + 1, prev: head.hash, records };
    try {
      this.head = await sink.appendBatch(batch);
    } catch (error) {
      if (!(error instanceof SinkConflictError) && !OffchannelError.hasCode(error, 'SINK_CONFLICT')) throw error;
      // Someone else (another forwarder, an earlier attempt whose answer was lost) got there: re-read and re-check.
      this.logger.info({ seq: batch.firstSeq }, 'the target moved on; re-reading its head');
      this.head = undefined;
      return true;
    }
    this.options.onForwarded?.({ target: this.target.name, stream: this.stream, firstSeq: batch.firstSeq, lastSeq: this.head.seq });
    await this.copyCheckpoints();
    return true;
  }

  /** Reads the target's head and checks it is a prefix of the spool; loads what was copied before. */
  private async connect(): Promise<void> {
    const { spool } = this.options;
    const { sink, name } = this.target;
    const head = await sink.head(this.stream);
    if (head.seq > 0) {
      let mine: Uint8Array | undefined;
      for await (const stored of spool.read(this.stream, { fromSeq: head.seq })) {
        if (stored.seq === head.seq) mine = stored.bytes;
        break;
      }
      if (!mine) throw new ForwardDivergedError(name, this.stream, `the target holds ${head.seq} records but the spool has fewer`);
      if (sha256Hex(mine) !== head.hash) throw new ForwardDivergedError(name, this.stream, `record ${head.seq} on the target differs from the spool's`);
    }
    const copied = (await sink.checkpoints(this.stream)).filter((size) => size <= head.seq);
    this.checkpoint = copied.at(-1) ?? 0;
    for (let level = 0; tileCounts(this.checkpoint, level).full > 0 || tileCounts(this.checkpoint, level).partialWidth > 0; level++) {
      this.fullTiles[level] = tileCounts(this.checkpoint, level).full;
    }
    // A token may have arrived after its note was copied, just before a restart.
    for (const size of copied.slice(-3)) this.tokensDue.set(size, Date.now());
    this.head = head;
  }

  private async copyBlobs(records: readonly Uint8Array[]): Promise<void> {
    const { spool } = this.options;
    const { sink } = this.target;
    const wanted = new Set<string>();
    for (const bytes of records) {
      // Every blob reference carries a "sha256" member: a record without one names no blob.
      if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(SHA256_MEMBER) === -1) continue;
      let record: ArchiveRecord;
      try {
        record = JSON.parse(decoder.decode(bytes)) as ArchiveRecord;
      } catch {
        continue; // not JSON: names no blob (verify reports the record)
      }
      for (const [, ref] of blobRefs(record)) if (!this.blobsKnown.has(ref.sha256)) wanted.add(ref.sha256);
    }
    for (const sha256 of wanted) {
      if (!(await sink.statBlob(sha256))) {
        const bytes = await spool.getBlob(sha256);
        if (!bytes) throw new Error(`blob ${sha256} named by a record is missing from the spool (run offchannel verify on it)`);
        await sink.putBlob(sha256, bytes);
      }
      if (this.blobsKnown.size >= 100_000) this.blobsKnown.clear();
      this.blobsKnown.add(sha256);
    }
  }

  /** Copies tiles, notes and tokens of checkpoints the target's records now cover. */
  private async copyCheckpoints(): Promise<void> {
    const { spool } = this.options;
    const { sink } = this.target;
    const covered = this.head?.seq ?? 0;
    for (const size of await spool.checkpoints(this.stream)) {
      if (size <= this.checkpoint || size > covered) continue;
      await this.copyTiles(size);
      const note = await spool.getCheckpoint(this.stream, size, 'note');
      if (!note) continue;
      await sink.putCheckpoint(this.stream, size, 'note', note);
      this.checkpoint = size;
      this.tokensDue.set(size, Date.now());
    }
    for (const [size, since] of this.tokensDue) {
      const token = await spool.getCheckpoint(this.stream, size, 'rfc3161');
      if (token) {
        await sink.putCheckpoint(this.stream, size, 'rfc3161', token);
        this.tokensDue.delete(size);
      } else if (Date.now() - since > TOKEN_GRACE_MS) this.tokensDue.delete(size);
    }
  }

  /** The full tiles completed up to `size` and the partial tiles of `size` (each tile is derived data; a missing one is skipped). */
  private async copyTiles(size: number): Promise<void> {
    const tiles: TileId[] = [];
    for (let level = 0; TILE_WIDTH ** level <= size; level++) {
      const { full, partialWidth } = tileCounts(size, level);
      for (let index = this.fullTiles[level] ?? 0; index < full; index++) tiles.push({ level, index, width: TILE_WIDTH });
      if (partialWidth > 0) tiles.push({ level, index: full, width: partialWidth });
    }
    for (const tile of tiles) {
      const bytes = await this.options.spool.getTile(this.stream, tile);
      if (bytes) await this.target.sink.putTile(this.stream, tile, bytes);
      if (tile.width === TILE_WIDTH) this.fullTiles[tile.level] = Math.max(this.fullTiles[tile.level] ?? 0, tile.index + 1);
    }
  }
}
