/**
 * Internal: one stream copied to one target — the forwarder's unit of work. A loop copies while
 * there is work (blobs, then records, then tiles, notes and tokens) and sleeps until woken; a
 * failure backs off and retries, re-reading where the target stands; a divergence stops it.
 *
 * Checkpoints are never removed, so a stream has hundreds of thousands after a year: the lane
 * never lists them all. When it (re)connects it lists the target's recent ones (the newest at or
 * below its head, and the tokens and cosigned copies beside them; further down until 64 notes
 * in a row have their tokens, see `compareTokensBelow`) and the spool's from there on (or from
 * the oldest note whose cosigned copies are still looked for); after that it learns of new
 * checkpoint files from the spooling sink, which tells of each one this process stores. Only when records arrive that this process did not append (another
 * process writes the stream) does it list the spool again — from where it stands, at most
 * once every 12 polls — and it keeps doing so while such records are above the newest note it
 * knows: their writer signs a note for them later (its timer, or its shutdown), and tells this
 * process nothing. Once a known note covers them (or an hour passed: the writer crashed) an
 * idle stream costs no listing.
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { SinkConflictError } from '../errors/sink-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { Logger } from '../logger/logger.ts';
import { TILE_WIDTH, type TileId, tileCounts } from '../merkle/tiles.ts';
import { type CheckpointFileEntry, checkpointFilesAfter, recentCheckpointFiles } from '../sink/checkpoint-range.ts';
import type { AppendBatch, StreamHead } from '../sink/sink.ts';
import { blobNamesIn } from '../verify/blob-refs.ts';
import { ForwardDivergedError } from './forward-errors.ts';
import type { ForwardStreamStatus, ForwardTarget, ForwarderOptions } from './forwarder.ts';
import type { SpoolChange } from './spooling-sink.ts';

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
/** The narrowest window below the connect window that tokens are compared in (sizes). */
const FIRST_TOKEN_WINDOW = 1024;
/**
 * Listed records no known note covers are relisted for at most this long after they were first
 * listed: a writer that crashed before signing them signs when it next runs, and then also
 * appends (or `drain`, a reconnect, finds the note).
 */
const UNSIGNED_GRACE_MS = 60 * 60 * 1000;
/** Records another process appended: list the spool's new checkpoints at most once this many polls. */
const LIST_EVERY_POLLS = 12;
/** Timestamp tokens known on the target, kept (older ones count as held, see `holdsToken`). */
const MAX_TOKENS_TRACKED = 4096;
/**
 * At (re)connect, tokens are compared down the target's notes until this many in a row, from
 * the newest down, are settled (the target holds their token, or the spool has none).
 */
const SETTLED_RUN = 64;

/** One stream to one target: a loop that copies while there is work, then sleeps until woken. */
export class ForwardLane {
  readonly target: ForwardTarget;
  readonly stream: string;
  /** The target's head, once read (and checked against the spool). */
  head: StreamHead | undefined;
  /** Largest checkpoint size copied (with its tiles). */
  checkpoint = 0;
  /** Sizes whose timestamp token the target is known to hold (recent ones; see `holdsToken`). */
  private readonly tokensOnTarget = new Set<number>();
  /** Tokens of sizes above this were compared with the spool's at connect (or since). */
  private tokensCheckedFrom = 0;
  /** Tokens known on the target at or below this were forgotten (memory): they count as held. */
  private tokensForgotten = 0;
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
  /** `<size>.<file>` of cosigned copies already on the target (of sizes in `cosignedDue`). */
  private readonly cosignedCopied = new Set<string>();
  /** Spool notes above `checkpoint` not yet copied: told by the spooling sink, or listed. */
  private readonly notesAhead = new Set<number>();
  /** Cosigned copies in the spool not yet on the target, by `<size>.<file>`. */
  private readonly cosignedAhead = new Map<string, CheckpointFileEntry>();
  /** The spool's checkpoints are known for records up to this seq (listed, or appended here). */
  private knownSeq = 0;
  /**
   * The highest seq learnt by listing, not appended by this process: until a known note covers
   * it, another writer may still sign one for it (and tell this process nothing).
   */
  private listedSeq = 0;
  /** When `listedSeq` was last raised. */
  private listedSeqAt = 0;
  /** The spool was listed since `notesAhead` was last cleared: it and `checkpoint` know every spool note. */
  private spoolListed = false;
  private listedAt = 0;
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

  /**
   * The target holds the token of `size`: known to (or known and forgotten). A size below what
   * the lane compared at connect is not claimed: `drain` then hands the token to the lane.
   */
  holdsToken(size: number): boolean {
    return this.tokensOnTarget.has(size) || (size > this.tokensCheckedFrom && size <= this.tokensForgotten);
  }

  /**
   * The spool's newest note as far as this lane knows (notes written by another process since
   * its last listing aside), or `undefined` before it has listed the spool.
   */
  spoolNewest(): number | undefined {
    return this.spoolListed ? this.newestNote() : undefined;
  }

  /** The newest spool note this lane knows: copied, or still to copy. */
  private newestNote(): number {
    let newest = this.checkpoint;
    for (const size of this.notesAhead) newest = Math.max(newest, size);
    return newest;
  }

  /** Every note at or below this is on the target, and every token still looked for is above it. */
  settled(): number {
    let floor = this.checkpoint;
    for (const size of this.tokensDue.keys()) floor = Math.min(floor, size - 1);
    return floor;
  }

  /** What the spooling sink stored in the spool for this stream: records appended, or a checkpoint file. */
  heard(change: SpoolChange): void {
    if ('seq' in change) this.knownSeq = Math.max(this.knownSeq, change.seq);
    else this.learn(change);
  }

  /**
   * A checkpoint file the spool holds: copy it when its turn comes. Told by the spooling sink,
   * or by a listing elsewhere (`drain`, the archive-log copier) of files another process wrote.
   */
  learn(entry: CheckpointFileEntry): void {
    if (entry.file === 'note') {
      if (entry.size > this.checkpoint) this.notesAhead.add(entry.size);
    } else if (entry.file === 'rfc3161') {
      if (entry.size <= this.checkpoint && !this.holdsToken(entry.size)) this.tokensDue.set(entry.size, Date.now());
    } else {
      const name = `${entry.size}.${entry.file}`;
      if (!this.cosignedCopied.has(name)) this.cosignedAhead.set(name, entry);
    }
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
    // The target's recent checkpoint files: its newest note at or below its head, and what is beside them.
    const recent = await recentCheckpointFiles(sink, this.stream, head.seq);
    const copied = recent.files.filter((entry) => entry.file === 'note').map((entry) => entry.size);
    this.checkpoint = copied.at(-1) ?? 0;
    for (let level = 0; tileCounts(this.checkpoint, level).full > 0 || tileCounts(this.checkpoint, level).partialWidth > 0; level++) {
      this.fullTiles[level] = tileCounts(this.checkpoint, level).full;
    }
    for (const entry of recent.files) {
      if (entry.file === 'rfc3161') this.tokensOnTarget.add(entry.size);
      else if (entry.file !== 'note') this.cosignedCopied.add(`${entry.size}.${entry.file}`);
    }
    // The spool from the oldest of those notes on: their tokens and cosigned copies, and the notes
    // not yet copied — and from the oldest note whose cosigned copies are still looked for (a
    // reconnect clears those pending, and on a busy stream they can be far below the window).
    this.notesAhead.clear();
    this.cosignedAhead.clear();
    this.spoolListed = false;
    let after = (copied[0] ?? this.checkpoint + 1) - 1;
    for (const size of this.cosignedDue.keys()) after = Math.min(after, size - 1);
    const spoolSeq = (await spool.head(this.stream)).seq;
    const inSpool = await checkpointFilesAfter(spool, this.stream, Math.max(0, after));
    this.listed(spoolSeq);
    for (const entry of inSpool) if (entry.file !== 'rfc3161') this.learn(entry);
    this.spoolListed = true;
    // Tokens arrive after their notes: find notes copied without their token (e.g. before a restart).
    const spoolTokens = spool.checkpointFiles ? new Set(inSpool.filter((entry) => entry.file === 'rfc3161').map((entry) => entry.size)) : undefined;
    this.tokensCheckedFrom = recent.after;
    if (spoolTokens && sink.checkpointFiles) this.tokensCheckedFrom = await this.compareTokensBelow(head.seq, recent.after, copied, spoolTokens);
    for (const [index, size] of copied.entries()) {
      if (this.tokensOnTarget.has(size)) continue;
      if (spoolTokens === undefined) {
        if (index >= copied.length - 3) this.tokensDue.set(size, Date.now()); // cannot list: the newest ones
      } else if (spoolTokens.has(size)) {
        if (!sink.checkpointFiles && (await sink.getCheckpoint(this.stream, size, 'rfc3161'))) this.tokensOnTarget.add(size);
        else this.tokensDue.set(size, Date.now());
      }
    }
    // Witness cosignatures of the newest copied checkpoint may have arrived while this was down.
    const newest = copied.at(-1);
    if (newest !== undefined) this.cosignedDue.set(newest, Date.now());
    this.head = head;
  }

  /**
   * Extends `copied` (the target's notes above `bottom`, ascending) and `spoolTokens` downwards
   * until {@link SETTLED_RUN} notes in a row from the newest down are settled, and returns the
   * size above which tokens were compared. A crash can leave a note's token uncopied while later
   * notes and their tokens were copied (its TSA answered late, or a large batch followed it), so
   * the window at connect (1,024 sizes) may not reach it; a missing token behind that many
   * settled notes is not looked for, as the running lane stops looking after 10 minutes. Ranged
   * listings, each about twice as wide as the notes still needed: a few, whatever the history.
   */
  private async compareTokensBelow(top: number, bottom: number, copied: number[], spoolTokens: Set<number>): Promise<number> {
    const settledRun = () => {
      let run = 0;
      for (let index = copied.length - 1; index >= 0 && run < SETTLED_RUN; index--) {
        const size = copied[index] as number;
        run = this.tokensOnTarget.has(size) || !spoolTokens.has(size) ? run + 1 : 0;
      }
      return run;
    };
    let run = settledRun();
    while (bottom > 0 && run < SETTLED_RUN) {
      const perNote = Math.ceil((top - bottom) / Math.max(1, copied.length));
      const lower = Math.max(0, bottom - Math.max(FIRST_TOKEN_WINDOW, 2 * perNote * (SETTLED_RUN - run)));
      const onTarget = await checkpointFilesAfter(this.target.sink, this.stream, lower);
      const inSpool = await checkpointFilesAfter(this.options.spool, this.stream, lower);
      const notes: number[] = [];
      for (const entry of onTarget) {
        if (entry.size > bottom) continue;
        if (entry.file === 'note') notes.push(entry.size);
        else if (entry.file === 'rfc3161') this.tokensOnTarget.add(entry.size);
      }
      for (const entry of inSpool) if (entry.file === 'rfc3161' && entry.size <= bottom) spoolTokens.add(entry.size);
      // In place, without spreading (a dense window could pass V8's argument limit).
      const merged = notes.concat(copied);
      copied.length = 0;
      for (const size of merged) copied.push(size);
      bottom = lower;
      run = settledRun();
    }
    return bottom;
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
    // Records this process did not append (nor list the checkpoints of): another process writes
    // this stream. Or listed records no known note covers yet: their writer may still sign one.
    const unsigned = this.listedSeq > this.newestNote() && Date.now() - this.listedSeqAt < UNSIGNED_GRACE_MS;
    const foreign = covered > this.knownSeq || unsigned;
    if (foreign && Date.now() - this.listedAt >= LIST_EVERY_POLLS * (this.options.pollMs ?? 5000)) await this.listSpool();
    for (const size of [...this.notesAhead].sort((a, b) => a - b)) {
      if (size > covered) break;
      if (size > this.checkpoint) {
        await this.copyTiles(size);
        const note = await spool.getCheckpoint(this.stream, size, 'note');
        if (note) {
          await sink.putCheckpoint(this.stream, size, 'note', note);
          this.checkpoint = size;
          this.tokensDue.set(size, Date.now());
          this.cosignedDue.set(size, Date.now());
        }
      }
      this.notesAhead.delete(size);
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
    if (this.tokensOnTarget.size > MAX_TOKENS_TRACKED) this.forgetOldTokens();
  }

  /** Lists the spool's checkpoint files from the oldest note whose cosigned copies may still come. */
  private async listSpool(): Promise<void> {
    let after = this.checkpoint;
    for (const size of this.cosignedDue.keys()) after = Math.min(after, size - 1);
    const spoolSeq = (await this.options.spool.head(this.stream)).seq;
    const files = await checkpointFilesAfter(this.options.spool, this.stream, after);
    this.listed(spoolSeq);
    for (const entry of files) this.learn(entry);
  }

  /** The spool was listed when its head was at `spoolSeq`: records above what this process appended are another writer's. */
  private listed(spoolSeq: number): void {
    this.listedAt = Date.now();
    if (spoolSeq > this.knownSeq) {
      this.listedSeq = spoolSeq;
      this.listedSeqAt = Date.now();
    }
    this.knownSeq = Math.max(this.knownSeq, spoolSeq);
  }

  /** Keeps the newest half of the tokens known on the target; the older ones count as held. */
  private forgetOldTokens(): void {
    const sizes = [...this.tokensOnTarget].sort((a, b) => a - b);
    const drop = sizes.slice(0, sizes.length >> 1);
    for (const size of drop) this.tokensOnTarget.delete(size);
    this.tokensForgotten = Math.max(this.tokensForgotten, drop.at(-1) ?? 0);
  }

  /**
   * Copies witnesses' cosigned copies (`cosigned-<id>`, written when a witness answers, possibly
   * long after the note) of recently copied checkpoints, as the spool tells of them.
   */
  private async copyCosigned(): Promise<void> {
    const { spool } = this.options;
    for (const [name, entry] of this.cosignedAhead) {
      if (!this.cosignedDue.has(entry.size)) {
        // Its note is not copied yet: wait for it. Already copied long ago: not looked for any more.
        if (entry.size <= this.checkpoint) this.cosignedAhead.delete(name);
        continue;
      }
      const bytes = await spool.getCheckpoint(this.stream, entry.size, entry.file);
      if (bytes) {
        try {
          await this.target.sink.putCheckpoint(this.stream, entry.size, entry.file, bytes);
        } catch (error) {
          if (!OffchannelError.hasCode(error, 'SINK_CONFLICT')) throw error;
          // Another copy is already there: verify reports a copy of another checkpoint.
        }
      }
      this.cosignedAhead.delete(name);
      this.cosignedCopied.add(name);
    }
    const now = Date.now();
    for (const [size, since] of this.cosignedDue) {
      if (now - since <= COSIGNED_GRACE_MS) continue;
      this.cosignedDue.delete(size);
      for (const name of this.cosignedCopied) if (name.startsWith(`${size}.`)) this.cosignedCopied.delete(name);
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
