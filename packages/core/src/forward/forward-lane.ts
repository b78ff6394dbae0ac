/**
 * Internal: one stream copied to one target — the forwarder's unit of work. A loop copies while
 * there is work (blobs, then records, then tiles, notes and tokens) and sleeps until woken; a
 * failure backs off and retries, re-reading where the target stands; a divergence stops it.
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { SinkConflictError } from '../errors/sink-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { Logger } from '../logger/logger.ts';
import { TILE_WIDTH, type TileId, tileCounts } from '../merkle/tiles.ts';
import type { AppendBatch, Sink, StreamHead } from '../sink/sink.ts';
import { blobNamesIn } from '../verify/blob-refs.ts';
import { ForwardDivergedError } from './forward-errors.ts';
import type { ForwardStreamStatus, ForwardTarget, ForwarderOptions } from './forwarder.ts';

const decoder = new TextDecoder();

/** A record's `prev` (undefined if it is not a JSON object with one). */
function prevOf(record: Uint8Array): string | undefined {
  try {
    const prev = (JSON.parse(decoder.decode(record)) as { prev?: unknown }).prev;
    return typeof prev === 'string' ? prev : undefined;
  } catch {
    return undefined;
  }
}
/** Timestamp tokens arrive just after their note; keep looking for them this long. */
const TOKEN_GRACE_MS = 10 * 60 * 1000;
/** How long after its note a witness's cosigned copy is still looked for (a witness may be down). */
const COSIGNED_GRACE_MS = 60 * 60 * 1000;

/** One stream to one target: a loop that copies while there is work, then sleeps until woken. */
export class ForwardLane {
  readonly target: ForwardTarget;
  readonly stream: string;
  /** The target's head, once read (and checked against the spool). */
  head: StreamHead | undefined;
  /** Largest checkpoint size copied (with its tiles). */
  checkpoint = 0;
  /** Sizes whose timestamp token the target is known to hold. */
  readonly tokensOnTarget = new Set<number>();
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
  /** Checkpoint sizes whose witness cosigned copies may still appear in the spool, and since when. */
  private readonly cosignedDue = new Map<number, number>();
  /** `<size>.<file>` of cosigned copies already on the target. */
  private readonly cosignedCopied = new Set<string>();
  private cosignedScannedAt = 0;
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
    // The batch must continue what the target holds: never append the spool's records onto a
    // history they do not belong to. (Within the batch the spool's own chain holds: its writer
    // appended it by compare-and-append, and verification checks it.)
    if (prevOf(records[0] as Uint8Array) !== head.hash) {
      throw new ForwardDivergedError(this.target.name, this.stream, `the spool's record ${head.seq + 1} does not continue the target's record ${head.seq}`);
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
    // Tokens arrive after their notes: find notes copied without their token (e.g. before a restart).
    const tokens = async (of: Sink) => (of.checkpointFiles ? new Set((await of.checkpointFiles(this.stream)).filter((entry) => entry.file === 'rfc3161').map((entry) => entry.size)) : undefined);
    const [inSpool, onTarget] = [await tokens(spool), await tokens(sink)];
    for (const size of onTarget ?? []) this.tokensOnTarget.add(size);
    for (const [index, size] of copied.entries()) {
      if (this.tokensOnTarget.has(size)) continue;
      if (inSpool === undefined) {
        if (index >= copied.length - 3) this.tokensDue.set(size, Date.now()); // cannot list: the newest ones
      } else if (inSpool.has(size)) {
        if (onTarget === undefined && (await sink.getCheckpoint(this.stream, size, 'rfc3161'))) this.tokensOnTarget.add(size);
        else this.tokensDue.set(size, Date.now());
      }
    }
    // Witness cosignatures of the newest copied checkpoint may have arrived while this was down.
    const newest = copied.at(-1);
    if (newest !== undefined) this.cosignedDue.set(newest, Date.now());
    this.head = head;
  }

  private async copyBlobs(records: readonly Uint8Array[]): Promise<void> {
    const { spool } = this.options;
    const { sink } = this.target;
    const wanted = new Set<string>();
    for (const bytes of records) for (const sha256 of blobNamesIn(bytes)) if (!this.blobsKnown.has(sha256)) wanted.add(sha256);
    // On WORM storage a blob stored earlier may be locked for less time than this record needs:
    // storing it again extends its retention (the sink does that), so always store it.
    const worm = sink.guarantees.retention === 'compliance-lock';
    for (const sha256 of wanted) {
      if (worm || !(await sink.statBlob(sha256))) {
        const bytes = await spool.getBlob(sha256);
        if (bytes) await sink.putBlob(sha256, bytes);
        else if (!(await sink.statBlob(sha256))) throw new Error(`blob ${sha256} named by a record is missing from the spool (run offchannel verify on it)`);
        // Pruned from the spool (another process's pass, or an older version) but the target
        // holds it: go on rather than stall; its retention is not extended for this record.
        else this.logger.warn({ blob: sha256 }, 'a blob named by a record is no longer in the spool but the target holds it; copying the record');
      }
      if (worm) continue;
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
      this.cosignedDue.set(size, Date.now());
    }
    await this.copyCosigned();
    for (const [size, since] of this.tokensDue) {
      const token = await spool.getCheckpoint(this.stream, size, 'rfc3161');
      if (token) {
        await sink.putCheckpoint(this.stream, size, 'rfc3161', token);
        this.tokensDue.delete(size);
        this.tokensOnTarget.add(size);
      } else if (Date.now() - since > TOKEN_GRACE_MS) this.tokensDue.delete(size);
    }
  }

  /**
   * Copies witnesses' cosigned copies (`cosigned-<id>`, written when a witness answers, possibly
   * long after the note) of recently copied checkpoints. Needs a spool that lists its files.
   */
  private async copyCosigned(): Promise<void> {
    const { spool } = this.options;
    if (this.cosignedDue.size === 0 || !spool.checkpointFiles) return;
    // One listing per poll at most: appends wake the lane far more often.
    if (Date.now() - this.cosignedScannedAt < (this.options.pollMs ?? 5000)) return;
    this.cosignedScannedAt = Date.now();
    const files = await spool.checkpointFiles(this.stream);
    for (const entry of files) {
      const name = `${entry.size}.${entry.file}`;
      if (!entry.file.startsWith('cosigned-') || !this.cosignedDue.has(entry.size) || this.cosignedCopied.has(name)) continue;
      const bytes = await spool.getCheckpoint(this.stream, entry.size, entry.file);
      if (!bytes) continue;
      try {
        await this.target.sink.putCheckpoint(this.stream, entry.size, entry.file, bytes);
      } catch (error) {
        if (!OffchannelError.hasCode(error, 'SINK_CONFLICT')) throw error;
        // Another copy is already there: verify reports a copy of another checkpoint.
      }
      this.cosignedCopied.add(name);
    }
    const now = Date.now();
    for (const [size, since] of this.cosignedDue) if (now - since > COSIGNED_GRACE_MS) this.cosignedDue.delete(size);
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
