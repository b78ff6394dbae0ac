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
import type { Logger } from '../logger/logger.ts';
import { noopLogger } from '../logger/logger.ts';
import { redactingLogger } from '../logger/redacting-logger.ts';
import type { AttestationId } from '../attest/attestation.ts';
import { newestAttestation } from '../attest/host-attestor.ts';
import { ArchiveLogCopier } from './archive-log-copier.ts';
import type { Sink } from '../sink/sink.ts';
import { ForwardStoppedError, ForwardTimeoutError } from './forward-errors.ts';
import { ForwardLane } from './forward-lane.ts';
import { type SpoolChange, spoolingSink } from './spooling-sink.ts';
import { checkpointFilesAfter } from '../sink/checkpoint-range.ts';
import { isArchiveLogName } from '../sink/log-name.ts';

export { ForwardDivergedError, ForwardStoppedError, ForwardTimeoutError } from './forward-errors.ts';

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
  /**
   * How often to look for streams written by others, and for work missed (ms, default 5,000).
   * Checkpoints are not listed at a poll: the lanes hear of them from `sink`; a stream another
   * process appends to has its new checkpoints listed every 12 polls at most, while it appends
   * or while its records listed are above the newest note known (for an hour at most).
   */
  readonly pollMs?: number;
  /** First delay after a failure (ms, default 200); doubles up to `maxRetryMs` (default 30,000). */
  readonly minRetryMs?: number;
  readonly maxRetryMs?: number;
  /** Called after every batch copied to a target: for metrics and lag. */
  readonly onForwarded?: (event: ForwardedEvent) => void;
  /**
   * Bounded spool (off by default: the spool keeps everything). At each poll, per stream, the
   * spool's oldest sealed segments are dropped once EVERY target holds their records and a
   * signed checkpoint after them (the newest checkpoint's record and everything after it stay:
   * start-up and recovery need them), and they were sealed at least `minAgeMs` ago — or,
   * whatever their age, while the stream's segments in the spool exceed `maxBytes`. Never what
   * a target has not acknowledged, and, by age, never what another reader of the spool still
   * needs (`holds`). The spool must implement {@link PrunableSpool}.
   *
   * Blobs too, when the spool can (`pruneBlobs`): after a poll that pruned segments (and at the
   * first poll), blobs written at least `minAgeMs` ago that no record still in the spool names,
   * of any stream, go once EVERY target confirms it holds them (`statBlob`, same size).
   */
  readonly prune?: PruneOptions;
  /** Called after segments were pruned from the spool. */
  readonly onPruned?: (event: PrunedEvent) => void;
  /** Called after blobs were pruned from the spool. */
  readonly onBlobsPruned?: (event: BlobsPrunedEvent) => void;
  /**
   * Archive logs to copy (`archive-log`, or a shard's; see `witness/archive-log.ts`): checkpoints,
   * cosigned copies, tiles. An archive checkpoint reaches a target only after the stream
   * checkpoints it may include (`forward/archive-log-copier.ts`).
   */
  readonly archiveLogs?: readonly string[];
}

export interface PruneOptions {
  readonly minAgeMs: number;
  readonly maxBytes?: number;
  /** Clock (default `() => new Date()`). */
  readonly now?: () => Date;
  /**
   * Other readers of the spool (capture's SMTP delivery targets): per stream, the lowest seq one
   * of them still needs, or `undefined` when none needs any. Asked at every poll for every
   * stream pruning would touch, so it must answer from memory (cursors), never by reading the
   * stream or waiting on anything (streams are pruned one after another: a slow answer holds up
   * every stream's pruning). Pruning by age never passes it (`below` is at most the hold). `maxBytes` does: a
   * spool that fills the disk stops capture, which loses messages; what it then prunes that a
   * reader still needed is reported (`PrunedEvent.passedHold`, a warning), and the reader must
   * notice the gap itself (the delivery target records it and says what to do). A hold that
   * throws keeps the whole stream this poll.
   */
  readonly holds?: (stream: string) => number | undefined | Promise<number | undefined>;
}

export interface PrunedEvent {
  readonly stream: string;
  /** Segments and bytes removed now. */
  readonly segments: number;
  readonly bytes: number;
  /** Records 1 to this seq are no longer in the spool. */
  readonly throughSeq: number;
  /** Bytes of the stream's segments still in the spool. */
  readonly heldBytes: number;
  /**
   * Records a reader still needed (`PruneOptions.holds`) that the size cap (`maxBytes`) pruned
   * all the same: `fromSeq` (the hold) to `throughSeq`.
   */
  readonly passedHold?: { readonly fromSeq: number; readonly throughSeq: number };
}

/** Blobs removed from the spool by one pass. */
export interface BlobsPrunedEvent {
  readonly blobs: number;
  readonly bytes: number;
}

/**
 * A spool that can drop the oldest sealed segments of a stream (`@offchannel/sink-fs`'s
 * `FsSink.prune`): only whole segments whose records all lie below `below`, oldest first; and,
 * optionally, blobs no record it still holds names (`FsSink.pruneBlobs`), written before
 * `modifiedBefore`, that `held` says every target holds.
 */
export interface PrunableSpool {
  prune(stream: string, request: { readonly below: number; readonly sealedBefore?: Date; readonly maxBytes?: number; readonly now?: Date }): Promise<Omit<PrunedEvent, 'stream'>>;
  pruneBlobs?(request: { readonly modifiedBefore: Date; readonly held: (sha256: string, size: number) => Promise<boolean> }): Promise<BlobsPrunedEvent & { readonly skipped?: string }>;
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

export class Forwarder {
  /**
   * The spool, as a sink for the recorder: every call goes to the spool, and each durable append
   * or checkpoint wakes the forwarder at once. A read inside the spool's pruned prefix reads
   * those records from the first target, the archive of record (`pruned-read-through.ts`).
   */
  readonly sink: Sink;
  private readonly options: ForwarderOptions;
  private readonly logger: Logger;
  private readonly lanes = new Map<string, ForwardLane>();
  private poller: NodeJS.Timeout | undefined;
  private running = false;
  private scanning: Promise<void> | undefined;
  private pruning: Promise<void> | undefined;
  private attesting: Promise<void> | undefined;
  /** Per target and host: the newest attestation the target holds (`null`: none). */
  private readonly attestationsCopied = new Map<string, AttestationId | null>();
  private readonly archiveLogCopier = new ArchiveLogCopier();
  /** A blob pass is due: at the first prune, after segments were pruned, while another writer kept one from running. */
  private blobPassDue = true;
  private blobPassSkipped = false;

  constructor(options: ForwarderOptions) {
    if (options.targets.length === 0) throw new RangeError('the forwarder needs at least one target');
    const names = new Set(options.targets.map((target) => target.name));
    if (names.size !== options.targets.length) throw new RangeError('forward targets must have distinct names');
    for (const target of options.targets) if (target.sink === options.spool) throw new RangeError(`target ${target.name} is the spool itself`);
    if (options.prune && typeof (options.spool as Partial<PrunableSpool>).prune !== 'function') throw new RangeError(`a ${options.spool.kind} spool cannot be pruned; use the fs sink as the spool`);
    if (options.prune && !(options.prune.minAgeMs >= 0)) throw new RangeError('prune.minAgeMs must be 0 or more');
    this.options = options;
    this.logger = redactingLogger(options.logger ?? noopLogger).child({ component: 'forwarder' });
    const archive = options.targets[0] as ForwardTarget;
    this.sink = spoolingSink(
      options.spool,
      (stream, change) => {
        this.notify(stream, change);
      },
      { name: archive.name, sink: archive.sink },
    );
  }

  /** Starts copying every stream of the spool, and keeps going until `stop()`. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.scan();
    this.poller = setInterval(() => {
      this.scan();
      for (const lane of this.lanes.values()) lane.wake();
      this.pruneSpool();
      this.forwardAttestations();
    }, this.options.pollMs ?? 5000);
    this.poller.unref();
  }

  /**
   * Wakes the copy of `stream` (the spooling sink calls this after each append and checkpoint
   * file, with what it stored: that is how the lanes learn of new checkpoints without listing).
   */
  notify(stream: string, change?: SpoolChange): void {
    if (!this.running) return;
    // An archive log is no stream: the archive-log copier takes its files (at the next poll).
    if (isArchiveLogName(stream)) {
      if (change && 'file' in change) this.archiveLogCopier.heard(stream, change);
      return;
    }
    for (const target of this.options.targets) {
      const lane = this.lane(target, stream);
      if (change) lane.heard(change);
      lane.wake();
    }
  }

  /**
   * Resolves when every target holds every record and checkpoint the spool held when this was
   * called. Rejects with `FORWARD_TIMEOUT` after `timeoutMs` (default 60,000), or at once with
   * the divergence if a stream diverged. Lists each stream's checkpoints above what its lanes
   * hold (once they connected) and hands the lanes what it finds: files another process wrote
   * to the spool are never told to them.
   */
  async drain(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    if (!this.running) throw new ForwardStoppedError();
    const { spool } = this.options;
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    // Per lane, what it had settled when drain listed: its token goal starts above that (a lane
    // that is up to date is never handed another target's backlog of old tokens to check again).
    const goals: { stream: string; seq: number; checkpoint: number; tokens: readonly number[]; settled: ReadonlyMap<ForwardTarget, number> }[] = [];
    for (const stream of await spool.streams()) {
      const { seq } = await spool.head(stream);
      // What every target's lane already holds need not be listed again: let them connect first
      // (a listing from 0 costs the whole history, and hands them every token to check again).
      const lanes = this.options.targets.map((target) => this.lane(target, stream));
      for (const lane of lanes) lane.wake();
      while (lanes.some((lane) => lane.head === undefined && !lane.diverged) && Date.now() <= deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      const settled = new Map(this.options.targets.map((target, index) => [target, lanes[index]?.head === undefined ? 0 : (lanes[index]?.settled() ?? 0)] as const));
      const held = Math.min(...settled.values());
      const files = await checkpointFilesAfter(spool, stream, held);
      const checkpoint = files.filter((entry) => entry.file === 'note' && entry.size <= seq).at(-1)?.size ?? held;
      const tokens = files.filter((entry) => entry.file === 'rfc3161' && entry.size <= checkpoint).map((entry) => entry.size);
      goals.push({ stream, seq, checkpoint, tokens, settled });
      // Files another process wrote (a shard, `offchannel deliver`) were never told to the lanes:
      // tell each what is above what it had settled.
      for (const [index, lane] of lanes.entries()) {
        const floor = settled.get(this.options.targets[index] as ForwardTarget) ?? 0;
        for (const entry of files) if (entry.size > floor) lane.learn(entry);
        lane.wake();
      }
    }
    for (;;) {
      const behind: string[] = [];
      for (const goal of goals) {
        for (const target of this.options.targets) {
          const lane = this.lane(target, goal.stream);
          if (lane.diverged) throw lane.diverged;
          const floor = goal.settled.get(target) ?? 0;
          if ((lane.head?.seq ?? -1) < goal.seq || lane.checkpoint < goal.checkpoint || goal.tokens.some((size) => size > floor && !lane.holdsToken(size))) {
            behind.push(`${target.name}/${goal.stream} at ${lane.head?.seq ?? '?'} of ${goal.seq}`);
            lane.wake();
          }
        }
      }
      if (behind.length === 0) {
        // The host attestations too (a clean stop's last one says `stopped`); failures are logged.
        await this.attesting;
        await this.copyAttestations();
        await this.copyArchiveLogs();
        return;
      }
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

  /**
   * Prunes the spool now (as each poll does when `prune` is configured): per stream, what every
   * target holds below a checkpoint it holds. Resolves with what was removed.
   */
  async prune(): Promise<readonly PrunedEvent[]> {
    const options = this.options.prune;
    if (!options) return [];
    const spool = this.options.spool as Sink & PrunableSpool;
    const now = (options.now ?? (() => new Date()))();
    const streams = new Set([...this.lanes.values()].map((lane) => lane.stream));
    const done: PrunedEvent[] = [];
    for (const stream of [...streams].sort()) {
      if (!this.running) break;
      const lanes = this.options.targets.map((target) => this.lanes.get(laneKey(target, stream)));
      // Every target must have been reached and agree with the spool.
      if (lanes.some((lane) => !lane || lane.diverged || lane.head === undefined)) continue;
      const forwarded = Math.min(...lanes.map((lane) => Math.min(lane?.checkpoint ?? 0, lane?.head?.seq ?? 0)));
      if (forwarded <= 1) continue;
      try {
        const event = await this.pruneStream(spool, stream, forwarded, now, options);
        if (event) {
          done.push(event);
          this.options.onPruned?.(event);
        }
      } catch (error) {
        this.logger.warn({ stream, code: (error as { code?: string }).code }, 'could not prune the spool; retrying at the next poll');
      }
    }
    if (done.length > 0) this.blobPassDue = true;
    if (this.blobPassDue && this.running) await this.pruneBlobs(spool, new Date(now.getTime() - options.minAgeMs));
    return done;
  }

  /**
   * Prunes one stream below `forwarded` (what every target holds under a checkpoint): by age
   * and size up to the readers' hold, then — only while the stream still exceeds `maxBytes` —
   * by size past it, reporting what a reader still needed.
   */
  private async pruneStream(spool: PrunableSpool, stream: string, forwarded: number, now: Date, options: PruneOptions): Promise<PrunedEvent | undefined> {
    const hold = await options.holds?.(stream);
    const below = hold === undefined ? forwarded : Math.min(forwarded, Math.max(1, hold));
    const maxBytes = options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes };
    const first = below > 1 ? await spool.prune(stream, { below, sealedBefore: new Date(now.getTime() - options.minAgeMs), ...maxBytes, now }) : undefined;
    let result = first;
    let passedHold: PrunedEvent['passedHold'];
    if (options.maxBytes !== undefined && below < forwarded && (first === undefined || first.heldBytes > options.maxBytes)) {
      // Only the size cap may go past a hold (no `sealedBefore`: age alone never does). What it
      // passes starts at the hold, or after what an earlier pass already pruned (never counted twice).
      const earlier = (await (spool as Partial<Sink>).pruned?.(stream))?.seq ?? 0;
      const over = await spool.prune(stream, { below: forwarded, maxBytes: options.maxBytes, now });
      if (over.segments > 0) {
        const fromSeq = Math.max(below, earlier + 1);
        passedHold = { fromSeq, throughSeq: over.throughSeq };
        result = { segments: (first?.segments ?? 0) + over.segments, bytes: (first?.bytes ?? 0) + over.bytes, throughSeq: over.throughSeq, heldBytes: over.heldBytes };
        this.logger.warn({ stream, fromSeq, throughSeq: over.throughSeq }, 'the spool exceeded maxBytes: pruned records a reader of the spool (a delivery target) had not read yet; it reports them');
      }
    }
    if (!result || result.segments === 0) return undefined;
    return { stream, ...result, ...(passedHold ? { passedHold } : {}) };
  }

  /**
   * One blob pass (see `prune`). A pass that fails (a target unreachable) is tried again after
   * the next segments are pruned, not at every poll: each pass reads the spool's records once.
   */
  private async pruneBlobs(spool: PrunableSpool, modifiedBefore: Date): Promise<void> {
    if (!spool.pruneBlobs) return;
    const held = async (sha256: string, size: number): Promise<boolean> => {
      for (const target of this.options.targets) if ((await target.sink.statBlob(sha256))?.size !== size) return false;
      return true;
    };
    this.blobPassDue = false;
    try {
      const result = await spool.pruneBlobs({ modifiedBefore, held });
      if (result.skipped !== undefined) {
        // Cheap to ask again (one lock attempt, before any reading); said once, not every poll.
        this.blobPassDue = true;
        if (!this.blobPassSkipped) this.logger.info({ code: result.skipped }, 'blobs not pruned: another capture process has the spool open; retrying at each poll');
        this.blobPassSkipped = true;
        return;
      }
      this.blobPassSkipped = false;
      if (result.blobs > 0) this.options.onBlobsPruned?.({ blobs: result.blobs, bytes: result.bytes });
    } catch (error) {
      this.logger.warn({ code: (error as { code?: string }).code }, 'could not prune blobs from the spool; retrying after the next segments are pruned');
    }
  }

  /** Stops after the copies in progress finish. Sinks are not closed. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.poller) clearInterval(this.poller);
    await this.pruning;
    await this.attesting;
    await this.scanning;
    await Promise.all([...this.lanes.values()].map((lane) => lane.stop()));
  }

  /**
   * Copies host attestations (one signed note per host and interval, `attest/attestation.ts`)
   * from the spool to every target that stores them, in seq order per host, resuming after the
   * newest each target holds. A target that is down is retried at the next poll.
   */
  private async copyAttestations(): Promise<void> {
    const { spool } = this.options;
    if (!spool.attestationHosts || !spool.attestations || !spool.getAttestation) return;
    let hosts: readonly string[];
    try {
      hosts = await spool.attestationHosts();
    } catch (error) {
      this.logger.warn({ code: (error as { code?: string }).code }, 'could not list the spool\'s attestations; retrying at the next poll');
      return;
    }
    for (const host of hosts) {
      for (const target of this.options.targets) {
        const { sink } = target;
        if (!sink.putAttestation || !sink.attestations) continue;
        const key = laneKey(target, host);
        try {
          let last = this.attestationsCopied.get(key);
          if (last === undefined) {
            last = (await newestAttestation({ attestations: sink.attestations.bind(sink) }, host, new Date())) ?? null;
            this.attestationsCopied.set(key, last);
          }
          for (const id of await spool.attestations(host, last ? { fromDay: last.day } : undefined)) {
            if (last && id.seq <= last.seq) continue;
            const bytes = await spool.getAttestation(id);
            if (!bytes) continue;
            await sink.putAttestation(id, bytes);
            last = id;
            this.attestationsCopied.set(key, id);
          }
        } catch (error) {
          this.logger.warn({ host, code: (error as { code?: string }).code }, 'could not copy host attestations to a forward target; retrying at the next poll');
        }
      }
    }
  }

  private async copyArchiveLogs(): Promise<void> {
    if (!this.options.archiveLogs?.length) return;
    await this.archiveLogCopier.copy(this.options.spool, this.options.targets, this.options.archiveLogs, this.logger, (target, stream) => {
      // A diverged target does not hold the spool's checkpoints; one not yet reached holds none we know of.
      const lane = this.lanes.get(laneKey(target, stream));
      return lane && !lane.diverged ? lane.checkpoint : 0;
    }, Object.assign((stream: string) => {
      // The spool's newest checkpoint of `stream`, from the lanes (of any target) that have listed it.
      const known = this.options.targets.map((target) => this.lanes.get(laneKey(target, stream))?.spoolNewest()).filter((size) => size !== undefined);
      return known.length === 0 ? undefined : Math.max(...known);
    }, {
      // A note another process wrote, found by the copier's listing: the lanes copy it.
      found: (stream: string, size: number) => {
        for (const target of this.options.targets) {
          const lane = this.lanes.get(laneKey(target, stream));
          lane?.learn({ size, file: 'note' });
          lane?.wake();
        }
      },
    }));
  }

  private forwardAttestations(): void {
    if (this.attesting) return;
    this.attesting = this.copyAttestations().then(() => this.copyArchiveLogs()).finally(() => {
      this.attesting = undefined;
    });
  }

  private pruneSpool(): void {
    if (!this.options.prune || this.pruning) return;
    this.pruning = this.prune()
      .then(() => undefined)
      .finally(() => {
        this.pruning = undefined;
      });
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

  private lane(target: ForwardTarget, stream: string): ForwardLane {
    const key = laneKey(target, stream);
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = new ForwardLane(target, stream, this.options, this.logger, () => this.running);
      this.lanes.set(key, lane);
    }
    return lane;
  }
}

/** The key of one target's copy of a stream (or of a host's attestations). */
function laneKey(target: ForwardTarget, name: string): string {
  return `${target.name}\u0000${name}`;
}
