/**
 * The deliverer of one target: reads what the archive holds beyond the target's cursor,
 * renders it as the EML `export --format eml` writes (verified first), and sends it over SMTP
 * to the journaling address, one message at a time, in order per stream.
 *
 * Per message: the cursor file names it as in flight → the server accepts it (250) → its
 * receipt record is durable in `delivery:<target>` → the cursor advances (in the next write).
 * A crash before the receipt leaves the message in flight; the restart sends it again with the
 * SAME Message-ID and marks the receipt `inDoubt` (SMTP cannot say whether a message whose 250
 * was lost was taken, so the journal may hold it twice under one Message-ID, which journaling
 * archives de-duplicate on; never zero times). At most one message per crash is in doubt.
 * 4xx replies and connection failures are retried with exponential backoff; a 5xx stops
 * delivery at that record (recorded as `delivery-refused`), to resume from it once fixed.
 */
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { X509Certificate } from 'node:crypto';
import { type CheckpointOptions, type KeyIndex, type Logger, type NoteVerifier, OffchannelError, Recorder, type Sink, type StreamWriter, type VerificationReport, type VerifiedCheckpoint, decodeRecord, isRetryable, noopLogger, openKeyIndex, readVerifiedState, verifiedStateOf } from '@offchannel/core';
import { DeliveryError } from './delivery-error.ts';
import { type DeliveryCursor, DeliveryState, type InFlight } from './delivery-state.ts';
import { type DeliveryTarget, type SmtpEndpoint, checkTarget } from './delivery-target.ts';
import { RECEIPT_CHANNEL, RECEIPT_EVENT, type Receipt, missedCaptures, readReceipts, receiptCapture, receiptStream, refusalCapture } from './delivery-receipts.ts';
import { type OutgoingMessage, renderMessages } from './render-messages.ts';
import { type SmtpSender, createSmtpSender } from './smtp-sender.ts';

export const DELIVERY_PACKAGE = { name: '@offchannel/delivery', version: '0.1.0' } as const;

export interface DelivererOptions {
  /** The archive to deliver from (read only). */
  readonly archive: Sink;
  /** Where receipts are recorded (a writable handle on the same archive). Default: `archive`. */
  readonly receipts?: Sink;
  /**
   * `archive` is a spool that prunes after forwarding (capture's deliveries): each stream is
   * delivered from the first record it still holds, and records pruned before this target
   * delivered them are recorded as missed (`delivery-missed`). Never for an archive of record,
   * where a `pruned.json` — forged, or copied in — is refused as records that cannot be read.
   */
  readonly prunedSpool?: boolean;
  readonly target: DeliveryTarget;
  /** Directory for the cursor, lock and scratch files (created 0700). */
  readonly stateDir: string;
  /** Verifier keys: with them every stream's signed checkpoints are checked before sending. */
  readonly verifiers?: readonly NoteVerifier[];
  readonly tsaCertificates?: readonly X509Certificate[];
  /** Sign checkpoints of the receipts stream (the archive's signing key). */
  readonly checkpoints?: CheckpointOptions;
  readonly retry?: {
    /** First backoff. Default 1 s. */
    readonly initialMs?: number;
    /** Longest backoff. Default 5 min. */
    readonly maxMs?: number;
    /** Attempts per message before `DELIVERY_UNAVAILABLE`. Default: unlimited. */
    readonly attempts?: number;
  };
  /** Day mode: a UTC day is sent this long after it ends. Default 15 min. */
  readonly dayCloseMs?: number;
  /** Per SMTP step. Default 60 s. */
  readonly timeoutMs?: number;
  readonly clock?: () => Date;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly generator?: string;
  readonly logger?: Logger;
  /** Called after each receipt is durable (status lines, tests). */
  readonly onDelivered?: (delivered: { readonly stream: string; readonly seqs: readonly number[]; readonly messageId: string; readonly inDoubt: boolean }) => void;
}

export interface StreamProgress {
  readonly stream: string;
  readonly head: number;
  /** Every seq ≤ this is delivered (or has no e-mail form, or is in `DeliveryStatus.missed`). */
  readonly delivered: number;
}

/** Records pruned from capture's spool before this target delivered them: never delivered by it. */
export interface MissedRecords {
  readonly stream: string;
  /** Seq ranges, `1-35 40`. */
  readonly seqs: string;
}

export interface DeliveryStatus {
  readonly target: string;
  /** Records captured but not yet delivered (including days not yet closed). */
  readonly backlog: number;
  /** Age of the oldest undelivered record (capture time), ms; 0 when none. */
  readonly lagMs: number;
  /**
   * Messages delivered to this target, all time: its delivery receipts (one per e-mail, a
   * receipt is never recorded twice), counted in the cursor so a start need not read them all.
   */
  readonly delivered: number;
  /** When the newest delivery receipt of this target was recorded (kept across refusals and restarts). */
  readonly lastDeliveredAt: string | undefined;
  readonly streams: readonly StreamProgress[];
  /**
   * Records the spool lost before this target delivered them (capture's `spoolPrune.maxBytes`
   * overriding its hold), all time: deliver them from the archive of record. Empty when none.
   */
  readonly missed: readonly MissedRecords[];
}

export interface DeliveryReport extends DeliveryStatus {
  /** Messages sent in this pass. */
  readonly sent: number;
  /** Records waiting for their UTC day to close (day mode). */
  readonly notDue: number;
  /** Records the EML export renders no e-mail for (e.g. an attachment-only edit). */
  readonly noEmail: number;
  /** Messages whose receipt says a resend after an unknown outcome. */
  readonly inDoubt: number;
}

interface Pending {
  readonly message: OutgoingMessage;
  readonly records: readonly { readonly seq: number; readonly hash: string }[];
}

/** What a pass sends now, in order; how many records wait for their day; which have no e-mail form. */
interface Plan {
  readonly send: Pending[];
  readonly notDue: number;
  readonly nextDue: number;
  readonly noEmail: Set<string>;
}

export class Deliverer {
  readonly #options: DelivererOptions;
  readonly #target: DeliveryTarget;
  readonly #endpoint: SmtpEndpoint;
  readonly #state: DeliveryState;
  readonly #recorder: Recorder;
  /** The receipts' idempotency keys, on disk in the state directory: start-up reads only new receipts. */
  readonly #keyIndex: KeyIndex;
  readonly #writer: StreamWriter;
  readonly #logger: Logger;
  readonly #clock: () => Date;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * Per stream, the seqs of delivered records above its cursor (each dropped as the cursor
   * passes it, so this stays as small as what is new).
   */
  readonly #delivered = new Map<string, Set<number>>();
  /** Day mode only: the `Message-ID`s of every delivered e-mail (a sent transcript is never sent again). */
  readonly #deliveredIds = new Set<string>();
  /** Delivery receipts in the receipts stream up to {@link #receiptHead}: messages delivered to this target. */
  #deliveredCount = 0;
  #lastDeliveredAt: string | undefined;
  readonly #cursor = new Map<string, number>();
  /** Per stream, the seq ranges pruned from the spool before they were delivered (kept in the cursor). */
  readonly #missed = new Map<string, string>();
  /** The receipts count of the cursor on disk: where the next start reads the receipts stream from. */
  #savedReceipts = 0;
  /** A pass is reading the archive (records, render): spool pruning waits (see {@link holdFrom}). */
  #reading = false;
  /** Streams seen with a signed checkpoint: checkpoints are never removed, so they are not listed again. */
  readonly #signed = new Set<string>();
  /** The last receipts-stream record this deliverer read or wrote: its seq and hash. */
  #receiptHead = 0;
  #receiptHash: string | undefined;
  #inFlight: InFlight | undefined;
  /** Per stream, the newest signed checkpoint a pass verified (`<target>.verified.json`); loaded at the first pass. */
  #verified: Map<string, VerifiedCheckpoint> | undefined;
  #sender: SmtpSender | undefined;
  #lastSend = 0;
  /** After a pass that left only not-yet-due records: the heads it saw, and when the next day closes. */
  #idle: { readonly heads: string; readonly until: number; readonly notDue: number; readonly noEmail: number; readonly records: ReadonlyMap<string, { readonly capturedAt: string }> } | undefined;
  #status: DeliveryStatus;

  private constructor(options: DelivererOptions, endpoint: SmtpEndpoint, state: DeliveryState) {
    this.#options = options;
    this.#target = options.target;
    this.#endpoint = endpoint;
    this.#state = state;
    this.#logger = options.logger ?? noopLogger;
    this.#clock = options.clock ?? (() => new Date());
    this.#sleep = options.sleep ?? abortableSleep;
    this.#keyIndex = openReceiptKeys(state.dir, options.target.name);
    try {
      this.#recorder = new Recorder({ sink: options.receipts ?? options.archive, clock: this.#clock, logger: this.#logger, keyIndex: this.#keyIndex, ...(options.checkpoints ? { checkpoints: options.checkpoints } : {}) });
    } catch (error) {
      // Not left open until garbage collection (the caller releases the lock and rethrows).
      this.#keyIndex.close();
      throw error;
    }
    this.#writer = this.#recorder.writer({ channel: RECEIPT_CHANNEL, account: options.target.name, source: { package: DELIVERY_PACKAGE.name, version: DELIVERY_PACKAGE.version, upstream: 'nodemailer' } });
    this.#status = { target: options.target.name, backlog: 0, lagMs: 0, delivered: 0, lastDeliveredAt: undefined, streams: [], missed: [] };
  }

  /** Checks the target, takes its lock and reconciles the cursor with the receipts stream. */
  static async open(options: DelivererOptions): Promise<Deliverer> {
    const endpoint = checkTarget(options.target);
    const state = await DeliveryState.open(options.stateDir, options.target.name);
    let deliverer: Deliverer;
    try {
      deliverer = new Deliverer(options, endpoint, state);
    } catch (error) {
      state.close();
      throw error;
    }
    try {
      await deliverer.#reconcile();
      deliverer.#status = { ...deliverer.#status, delivered: deliverer.#deliveredCount, lastDeliveredAt: deliverer.#lastDeliveredAt, missed: deliverer.#missedList() };
    } catch (error) {
      try {
        await deliverer.#recorder.close();
      } finally {
        deliverer.#keyIndex.close();
        state.close();
      }
      throw error;
    }
    return deliverer;
  }

  get mode(): 'record' | 'day' {
    return this.#target.mode ?? 'record';
  }

  status(): DeliveryStatus {
    return this.#status;
  }

  /**
   * The lowest seq of `stream` this target still needs, for a spool that prunes (capture's
   * `PruneOptions.holds`): a captured stream's first record the cursor has not passed (in day
   * mode too — the records of a day not yet sent are not passed); for its own receipts stream,
   * the receipt a restart reads first (the one at the cursor's count; day mode reads every
   * receipt at start, so all of them). `undefined` for streams it never reads (other targets'
   * receipts). With verifier keys a pass verifies from the newest checkpoint it verified
   * before, so that is held too; without them, while a pass reads the archive, everything: it
   * verifies each stream from the first record the spool holds. From memory only: the cursor
   * moves and is written in one synchronous step.
   */
  holdFrom(stream: string): number | undefined {
    if (stream === receiptStream(this.#target.name)) return this.mode === 'day' ? 1 : Math.max(1, this.#savedReceipts);
    if (stream.startsWith(`${RECEIPT_CHANNEL}:`)) return undefined;
    const cursor = this.#cursor.get(stream) ?? 0;
    if (!this.#keyed) return this.#reading ? 1 : cursor + 1;
    // Before the first pass has read the saved verification, nothing is known of it: everything.
    const verified = this.#verified === undefined ? 0 : (this.#verified.get(stream)?.size ?? 0);
    return Math.min(cursor, verified) + 1;
  }

  get #keyed(): boolean {
    return this.#options.verifiers !== undefined && this.#options.verifiers.length > 0;
  }

  async #reconcile(): Promise<void> {
    const stored = this.#state.read();
    if (stored && (stored.target !== this.#target.name || stored.to !== this.#target.to || stored.mode !== this.mode)) {
      throw new DeliveryError('DELIVERY_STATE', `the state of target ${this.#target.name} was for ${stored.to} in ${stored.mode} mode; a different journal address or mode needs a new target name (its own cursor and receipts)`);
    }
    const receipts = this.#options.receipts ?? this.#options.archive;
    const head = (await receipts.head(receiptStream(this.#target.name))).seq;
    if (stored && stored.receipts > head) {
      throw new DeliveryError('DELIVERY_STATE', `the cursor ${this.#state.file} counts ${stored.receipts} receipts but the archive's ${receiptStream(this.#target.name)} holds ${head}: this state directory belongs to another archive, or receipts were lost — run offchannel verify; nothing was sent`);
    }
    // Record mode: the receipts up to the cursor's count were read (and checked) by the run
    // that wrote it; a record they delivered above its stream's cursor (a pass that stopped
    // midway) is found by its receipt's idempotency key (#lookUpDelivered), not by reading
    // every receipt ever written. Day mode needs every transcript's Message-ID: it reads all;
    // so does a cursor written before it kept the count of deliveries (once).
    const from = stored?.delivered !== undefined && this.mode === 'record' ? stored.receipts : 0;
    this.#savedReceipts = from;
    // This start reads the receipts after `from`, and the one the cursor counted (checked below).
    await this.#checkPrunedReceipts(receipts, stored && stored.receipts > 0 ? Math.min(from, stored.receipts - 1) : from);
    if (stored && stored.receipts > 0) await this.#checkCountedReceipt(receipts, stored);
    for (const [stream, seq] of Object.entries(stored?.streams ?? {})) this.#cursor.set(stream, seq);
    for (const [stream, seqs] of Object.entries(stored?.missed ?? {})) this.#missed.set(stream, seqs);
    if (from === 0) this.#receiptHash = undefined;
    this.#deliveredCount = from > 0 ? (stored?.delivered ?? 0) : 0;
    this.#receiptHead = from;
    await this.#readNewReceipts();
    this.#inFlight = stored?.inFlight;
    // What the passes verified before (with keys): read now, so the spool holds (holdFrom) are
    // right from the start, not only after the first pass.
    if (this.#keyed) this.#verified = this.#state.readVerified() ?? new Map();
    // A cursor from before the count was kept: write it with the count now, so the receipts are read once.
    if (stored && stored.delivered === undefined && this.mode === 'record') this.#writeCursor(stored.inFlight);
    if (this.#inFlight) this.#logger.warn({ deliveryTarget: this.#target.name, stream: this.#inFlight.stream, seq: this.#inFlight.seqs[0] }, 'a message was in flight when delivery stopped; if it has no receipt it is sent again with the same Message-ID');
  }

  /**
   * Receipts on a spool that pruned them after forwarding, read without the archive of record:
   * `offchannel deliver <spool>`. (In capture the receipts sink reads a pruned prefix through
   * the archive of record and reports none, so this never refuses there.) The start reads the
   * receipts after `readsAfter` and rebuilds a key index that is lost or behind from the one it
   * holds; when either reaches into the pruned prefix it is refused rather than done partially
   * — an index missing the keys of pruned receipts would let a record delivered above its
   * stream's cursor be sent again — saying what to do.
   */
  async #checkPrunedReceipts(receipts: Sink, readsAfter: number): Promise<void> {
    const stream = receiptStream(this.#target.name);
    const pruned = await receipts.pruned?.(stream);
    if (!pruned || pruned.seq === 0) return;
    const indexed = this.#keyIndex.head(stream).seq;
    if (indexed < pruned.seq) {
      throw new DeliveryError('DELIVERY_STATE', `the receipt key index of target ${this.#target.name} holds ${stream} up to seq ${indexed}, but seqs 1–${pruned.seq} were pruned from the spool after forwarding and cannot be read back here to rebuild it: restore ${this.#target.name}.receipt-keys.sqlite (and its -wal and -shm) in the state directory from a backup, or deliver from the archive of record (\`offchannel deliver <archive>\`), whose receipts are complete; nothing was sent`);
    }
    if (readsAfter < pruned.seq) {
      const why = this.mode === 'day' ? 'day mode reads every receipt at start' : `the start reads the receipts after seq ${readsAfter}`;
      throw new DeliveryError('DELIVERY_STATE', `target ${this.#target.name}: ${why}, but seqs 1–${pruned.seq} of ${stream} were pruned from the spool after forwarding and cannot be read back here: deliver from the archive of record (\`offchannel deliver <archive>\`), whose receipts are complete; nothing was sent`);
    }
  }

  /** Reads the receipts after the last one counted; the count moves to the last record read. */
  async #readNewReceipts(): Promise<void> {
    const seen = (seq: number, hash: string): void => {
      this.#receiptHead = seq;
      this.#receiptHash = hash;
    };
    for await (const receipt of readReceipts(this.#options.receipts ?? this.#options.archive, this.#target.name, this.#receiptHead, seen)) this.#remember(receipt);
  }

  /**
   * The record at the cursor's count must be the one the cursor saw (same hash): a state
   * directory of another archive whose receipts stream is as long is refused. Record mode also
   * takes the newest delivery time from it when the cursor does not keep one (an older cursor).
   */
  async #checkCountedReceipt(receipts: Sink, stored: DeliveryCursor): Promise<void> {
    const stream = receiptStream(this.#target.name);
    for await (const item of receipts.read(stream, { fromSeq: stored.receipts })) {
      const { record, hash } = decodeRecord(item.bytes);
      if (stored.receiptsHash !== undefined && hash !== stored.receiptsHash) {
        throw new DeliveryError('DELIVERY_STATE', `the cursor ${this.#state.file} counts ${stored.receipts} receipts, but the archive's ${stream} seq ${stored.receipts} is another record (hash ${hash}, the cursor saw ${stored.receiptsHash}): this state directory belongs to another archive — point --state at this archive's own state directory, or move ${this.#state.file} aside to have the receipts rebuild it; nothing was sent`);
      }
      this.#receiptHash = hash;
      // The newest delivery time is kept in the cursor: the receipt at its count may be a refusal.
      this.#lastDeliveredAt = stored.lastDeliveredAt ?? (record.system?.event === RECEIPT_EVENT ? record.system.fields?.deliveredAt : undefined);
      return;
    }
    throw new DeliveryError('DELIVERY_STATE', `the cursor ${this.#state.file} counts ${stored.receipts} receipts but the archive's ${stream} returned none at seq ${stored.receipts}: this state directory belongs to another archive, or receipts were lost — run offchannel verify; nothing was sent`);
  }

  /** Takes in a delivery receipt; `counted` is false for one recorded before (a capture that was a duplicate). */
  #remember(receipt: Receipt, counted = true): void {
    if (receipt.to !== this.#target.to) {
      throw new DeliveryError('DELIVERY_STATE', `the receipts of target ${this.#target.name} (${receiptStream(this.#target.name)} seq ${receipt.receiptSeq}) are for another journal address; a different journal needs a new target name (its own cursor and receipts)`);
    }
    if (receipt.mode !== undefined && receipt.mode !== this.mode) {
      throw new DeliveryError('DELIVERY_STATE', `the receipts of target ${this.#target.name} (${receiptStream(this.#target.name)} seq ${receipt.receiptSeq}) were written in ${receipt.mode} mode, not ${this.mode}; another mode needs a new target name (its own cursor and receipts); nothing was sent`);
    }
    const cursor = this.#cursor.get(receipt.stream) ?? 0;
    for (const seq of receipt.seqs) if (seq > cursor) this.#markDelivered(receipt.stream, seq);
    if (this.mode === 'day') this.#deliveredIds.add(receipt.messageId);
    if (counted) this.#deliveredCount += 1;
    if (this.#lastDeliveredAt === undefined || receipt.deliveredAt > this.#lastDeliveredAt) this.#lastDeliveredAt = receipt.deliveredAt;
  }

  /**
   * Record mode: marks as delivered the records above their stream's cursor that a receipt
   * already names — one key-index lookup per record that is new since the cursor, never a read
   * of the receipts stream.
   */
  async #lookUpDelivered(messages: readonly OutgoingMessage[]): Promise<void> {
    for (const message of messages) {
      const seq = message.seqs[0] ?? 0;
      if (this.#isDelivered(message.stream, seq)) continue;
      if ((await this.#writer.lookup(`${RECEIPT_EVENT}:${message.stream}:${seq}`)) !== undefined) this.#markDelivered(message.stream, seq);
    }
  }

  /** Remembers a delivered record above its stream's cursor. */
  #markDelivered(stream: string, seq: number): void {
    let seqs = this.#delivered.get(stream);
    if (!seqs) this.#delivered.set(stream, (seqs = new Set()));
    seqs.add(seq);
  }

  /** A record above its stream's cursor that a receipt names. */
  #deliveredAbove(stream: string, seq: number): boolean {
    return this.#delivered.get(stream)?.has(seq) === true;
  }

  #isDelivered(stream: string, seq: number): boolean {
    return seq <= (this.#cursor.get(stream) ?? 0) || this.#deliveredAbove(stream, seq);
  }

  /**
   * One pass: delivers everything not yet delivered (day mode: of closed days), then returns.
   * Throws `DeliveryError` on a permanent refusal (5xx), TLS or auth failure, or when the retry
   * budget of a temporarily refused message is spent.
   */
  async deliverPending(signal?: AbortSignal): Promise<DeliveryReport> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#pass(signal);
      } catch (error) {
        // A prune took records from under the pass (see #readAndPlan): the next pass starts
        // after it (and records a gap if the size cap took undelivered ones).
        if (!(error instanceof SpoolPrunedWhileReading)) throw error;
        if (attempt >= 3) {
          // A spool at its size cap can be pruned at most polls: following, the next pass is
          // tried after a pause (`follow` retries this); `--once` reports it.
          throw new DeliveryError('DELIVERY_UNAVAILABLE', `the spool was pruned while each of three attempts of a delivery pass read it; nothing was skipped: try again (raise spoolPrune.maxBytes if this repeats)`, { cause: error.cause, retryable: true });
        }
        this.#logger.warn({ deliveryTarget: this.#target.name }, 'the spool was pruned while a delivery pass read it; starting the pass again');
      }
    }
  }

  async #pass(signal: AbortSignal | undefined): Promise<DeliveryReport> {
    const archive = this.#options.archive;
    const streams: StreamProgress[] = [];
    for (const stream of [...(await archive.streams())].sort()) {
      if (stream.startsWith(`${RECEIPT_CHANNEL}:`)) continue;
      const head = (await archive.head(stream)).seq;
      if (this.#options.prunedSpool === true && head > (this.#cursor.get(stream) ?? 0)) await this.#passPruned(stream);
      streams.push({ stream, head, delivered: Math.min(this.#cursor.get(stream) ?? 0, head) });
    }
    // With verifier keys, a stream is sent only once a signed checkpoint covers it: a young
    // stream (capture just started it) waits for its first checkpoint, untouched, instead of
    // failing verification as unprotected.
    const pendingStreams: string[] = [];
    for (const item of streams) {
      if (item.head <= item.delivered) continue;
      if (this.#options.verifiers && this.#options.verifiers.length > 0 && !this.#signed.has(item.stream)) {
        if ((await archive.checkpoints(item.stream)).length === 0) {
          this.#logger.info({ deliveryTarget: this.#target.name, stream: item.stream }, 'no signed checkpoint yet; the stream is delivered once one is signed');
          continue;
        }
        this.#signed.add(item.stream);
      }
      pendingStreams.push(item.stream);
    }
    // Nothing new and no day closed since the last pass (day mode): no need to render again.
    const heads = streams.map((item) => `${item.stream}:${item.head}`).join(' ');
    const idle = this.#idle;
    if (idle && idle.heads === heads && this.#clock().getTime() < idle.until) {
      this.#status = this.#computeStatus(streams, idle.records);
      return { ...this.#status, sent: 0, notDue: idle.notDue, noEmail: idle.noEmail, inDoubt: 0 };
    }
    this.#idle = undefined;
    let sent = 0;
    let notDue = 0;
    let noEmail = 0;
    let inDoubt = 0;
    const records = new Map<string, { readonly hash: string; readonly capturedAt: string }>();
    if (pendingStreams.length > 0) {
      const scratch = path.join(this.#state.dir, `${this.#target.name}.render`);
      try {
        const plan = await this.#readAndPlan(pendingStreams, scratch, records);
        notDue = plan.notDue;
        noEmail = plan.noEmail.size;
        for (const item of plan.send) {
          signal?.throwIfAborted();
          const doubted = await this.#deliverOne(item, signal);
          sent += 1;
          if (doubted) inDoubt += 1;
        }
        for (const progress of streams) if (pendingStreams.includes(progress.stream)) this.#advance(progress.stream, progress.head, plan.noEmail);
        this.#writeCursor(undefined);
        if (plan.notDue > 0) this.#idle = { heads, until: plan.nextDue, notDue: plan.notDue, noEmail: plan.noEmail.size, records };
      } catch (error) {
        // A pass stopped (a refusal, an abort): the status still counts what it delivered.
        this.#status = { ...this.#status, delivered: this.#deliveredCount, lastDeliveredAt: this.#lastDeliveredAt, missed: this.#missedList() };
        throw error;
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    }
    this.#status = this.#computeStatus(streams, records);
    return { ...this.#status, sent, notDue, noEmail, inDoubt };
  }

  /**
   * Records of `stream` the spool pruned before this target delivered them (the size cap of
   * capture's spool overrode the hold): said loudly and durably, never skipped in silence — a
   * `delivery-missed` record in the receipts stream (not a receipt: `--check` on the archive of
   * record lists them as not delivered), an error in the log with the stream and seqs, the
   * cursor's and the status's `missed`. Then the cursor passes them, so delivery goes on with
   * what the spool still holds. Records delivered above the cursor (a receipt names them) are
   * not counted as missed.
   */
  async #passPruned(stream: string): Promise<void> {
    const through = (await this.#options.archive.pruned?.(stream))?.seq ?? 0;
    const cursor = this.#cursor.get(stream) ?? 0;
    if (through <= cursor) return;
    // A copy: what this target remembers changes only once the gap is durable (a failed write
    // leaves it as it was, for the pass tried again).
    const delivered = new Set(this.#delivered.get(stream) ?? []);
    if (this.mode === 'record' && through - cursor <= MAX_MISSED_LOOKUPS) {
      // Receipts of a pass that stopped midway are found by key, as `#lookUpDelivered` does.
      for (let seq = cursor + 1; seq <= through; seq++) if (!delivered.has(seq) && (await this.#writer.lookup(`${RECEIPT_EVENT}:${stream}:${seq}`)) !== undefined) delivered.add(seq);
    }
    const ranges: string[] = [];
    let from = cursor + 1;
    for (const seq of [...delivered].filter((item) => item > cursor && item <= through).sort((a, b) => a - b)) {
      if (seq > from) ranges.push(seq - 1 > from ? `${from}-${seq - 1}` : `${from}`);
      from = seq + 1;
      delivered.delete(seq);
    }
    if (from <= through) ranges.push(through > from ? `${from}-${through}` : `${from}`);
    if (ranges.length > 0) {
      const seqs = ranges.join(' ');
      for (const input of missedCaptures({ target: this.#target.name, to: this.#target.to, stream, ranges, at: this.#clock() })) {
        const result = await this.#writer.capture(input);
        if (result.status === 'recorded' && result.seq > this.#receiptHead) {
          this.#receiptHead = result.seq;
          this.#receiptHash = result.hash;
        }
      }
      const before = this.#missed.get(stream);
      this.#missed.set(stream, before === undefined ? seqs : `${before} ${seqs}`);
      this.#logger.error({ deliveryTarget: this.#target.name, stream, fromSeq: cursor + 1, throughSeq: through }, `records were pruned from the spool before this target delivered them (capture's spoolPrune.maxBytes passes delivery holds; a deliverer run outside capture holds nothing); they were NOT delivered and have no receipt. Deliver them from the archive of record: offchannel deliver <s3://… archive> --check --target ${this.#target.name} lists them`);
    }
    if (delivered.size === 0) this.#delivered.delete(stream);
    else this.#delivered.set(stream, delivered);
    this.#cursor.set(stream, through);
    this.#writeCursor(this.#inFlight);
  }

  /**
   * Reads the records after each cursor and renders what is to be sent, holding the whole spool
   * meanwhile ({@link holdFrom}): the export reads each stream from the first record the spool
   * holds. A prune that ran all the same — one that asked for the holds just before this began,
   * or the size cap — can take records from under the export, which then fails to read or
   * verify them. When the pruned prefix of a stream moved during the attempt, that failure is
   * a {@link SpoolPrunedWhileReading} (the pass starts again), not an archive that does not verify.
   */
  async #readAndPlan(streams: readonly string[], scratch: string, records: Map<string, { readonly hash: string; readonly capturedAt: string }>): Promise<Plan> {
    this.#reading = true;
    try {
      const before = await this.#prunedPrefixes(streams);
      try {
        for (const stream of streams) {
          for await (const stored of this.#options.archive.read(stream, { fromSeq: (this.#cursor.get(stream) ?? 0) + 1 })) {
            const { record, hash } = decodeRecord(stored.bytes);
            records.set(`${stream}/${record.seq}`, { hash, capturedAt: record.capturedAt });
          }
        }
        const plan = await this.#plan(streams, scratch, records);
        // A prune after the records were read and before the export read them: the export went
        // on from the new prefix, and the records between (read, never rendered) would count as
        // without an e-mail form and be passed in silence. The pass starts again instead; the
        // next one records them as missed (#passPruned).
        if (this.#options.prunedSpool === true && (await this.#prunedPrefixes(streams)) !== before) throw new SpoolPrunedWhileReading(new Error('the spool was pruned between reading the records and rendering them'));
        return plan;
      } catch (error) {
        if (error instanceof SpoolPrunedWhileReading) throw error;
        // A prune between the look at the prefixes and the read (or the one that moved them):
        // the records asked for are gone — the next pass records what was lost and goes on.
        // Only for capture's targets on their spool (`prunedSpool`); elsewhere a pruned archive is
        // not one to deliver from.
        if (this.#options.prunedSpool !== true) {
          if (!OffchannelError.hasCode(error, 'RECORDS_PRUNED')) throw error;
          throw new DeliveryError('DELIVERY_STATE', `${error.message} This archive is a spool that pruned records after forwarding: deliver from the archive of record (offchannel deliver s3://…); capture's own targets deliver from the spool as it prunes. Nothing was sent`, { cause: error });
        }
        if (OffchannelError.hasCode(error, 'RECORDS_PRUNED') || (await this.#prunedPrefixes(streams)) !== before) throw new SpoolPrunedWhileReading(error);
        throw error;
      }
    } finally {
      this.#reading = false;
    }
  }

  /** Where each stream's pruned prefix ends (a spool that prunes; otherwise nothing). */
  async #prunedPrefixes(streams: readonly string[]): Promise<string> {
    const archive = this.#options.archive;
    if (!archive.pruned) return '';
    const ends: number[] = [];
    for (const stream of streams) ends.push((await archive.pruned(stream))?.seq ?? 0);
    return ends.join(' ');
  }

  /** What to send now, in order; what waits; what has no e-mail form. */
  async #plan(streams: readonly string[], scratch: string, records: ReadonlyMap<string, { readonly hash: string }>): Promise<Plan> {
    // Only what is new: verification resumes at the newest checkpoint a pass verified (with
    // keys), the export's working index is kept and extended with the new records, and only the
    // e-mails of records above each stream's cursor are rendered.
    const keyed = this.#keyed;
    if (keyed) this.#verified ??= this.#state.readVerified() ?? new Map();
    // A spool's stream pruned up to or past the checkpoint verified last (the hold lets the
    // record at the checkpoint go) is verified from its pruned prefix instead, as with no saved state.
    const since = new Map(this.#verified ?? []);
    if (this.#options.prunedSpool === true) {
      for (const [stream, checkpoint] of since) if (((await this.#options.archive.pruned?.(stream))?.seq ?? 0) >= checkpoint.size) since.delete(stream);
    }
    const fromSeq = new Map(streams.map((stream) => [stream, (this.#cursor.get(stream) ?? 0) + 1] as const));
    const keptIndex = this.#state.renderIndexFile();
    const render = (mode: 'message' | 'day', dir: string): Promise<OutgoingMessage[]> =>
      renderMessages({
        sink: this.#options.archive,
        streams,
        mode,
        out: path.join(scratch, dir),
        fromSeq,
        keptIndex,
        ...(keyed ? { verifiers: this.#options.verifiers, since, onVerified: this.#saveVerified } : {}),
        ...(this.#options.prunedSpool === true ? { prunedSpool: true } : {}),
        ...(this.#options.tsaCertificates ? { tsaCertificates: this.#options.tsaCertificates } : {}),
        ...(this.#options.generator ? { generator: this.#options.generator } : {}),
        logger: this.#logger,
      });
    const perRecord = await render('message', 'message');
    const rendered = new Set(perRecord.flatMap((message) => message.seqs.map((seq) => `${message.stream}/${seq}`)));
    const noEmail = new Set([...records.keys()].filter((key) => !rendered.has(key)));
    const candidates: OutgoingMessage[] = [];
    let notDue = 0;
    let nextDue = Number.POSITIVE_INFINITY;
    const due = (day: string): boolean => {
      const closes = Date.parse(`${day}T00:00:00Z`) + 86_400_000 + (this.#options.dayCloseMs ?? 15 * 60_000);
      if (closes <= this.#clock().getTime()) return true;
      nextDue = Math.min(nextDue, closes);
      return false;
    };
    if (this.mode === 'day') {
      const inDayFiles = new Set<string>();
      for (const message of await render('day', 'day')) {
        if (this.#deliveredIds.has(message.messageId) || message.seqs.every((seq) => this.#isDelivered(message.stream, seq))) continue;
        for (const seq of message.seqs) inDayFiles.add(`${message.stream}/${seq}`);
        if (due(message.day)) candidates.push(message);
        else notDue += message.seqs.filter((seq) => !this.#isDelivered(message.stream, seq)).length;
      }
      for (const message of perRecord) {
        const seq = message.seqs[0] ?? 0;
        if (inDayFiles.has(`${message.stream}/${seq}`) || this.#isDelivered(message.stream, seq)) continue;
        if (due(message.day)) candidates.push(message);
        else notDue += 1;
      }
      candidates.sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : a.day < b.day ? -1 : a.day > b.day ? 1 : a.kind !== b.kind ? (a.kind === 'day' ? -1 : 1) : (a.seqs[0] ?? 0) - (b.seqs[0] ?? 0)));
    } else {
      await this.#lookUpDelivered(perRecord);
      candidates.push(...perRecord.filter((message) => !message.seqs.every((seq) => this.#isDelivered(message.stream, seq))));
    }
    // Records appended while this pass rendered (capture keeps writing) wait for the next pass.
    const read = new Map<string, number>();
    for (const key of records.keys()) {
      const slash = key.lastIndexOf('/');
      read.set(key.slice(0, slash), Math.max(read.get(key.slice(0, slash)) ?? 0, Number(key.slice(slash + 1))));
    }
    const current = candidates.filter((message) => message.seqs.every((seq) => seq <= (read.get(message.stream) ?? 0) || this.#isDelivered(message.stream, seq)));
    const send = current.map((message) => {
      const pending = message.seqs.filter((seq) => !this.#isDelivered(message.stream, seq));
      const list = pending.map((seq) => {
        const record = records.get(`${message.stream}/${seq}`);
        if (!record) throw new DeliveryError('DELIVERY_UNVERIFIED', `rendered ${message.stream} seq ${seq}, which the archive did not return; run offchannel verify`);
        return { seq, hash: record.hash };
      });
      if (message.recordHash !== undefined && list[0] && message.recordHash !== list[0].hash) {
        throw new DeliveryError('DELIVERY_UNVERIFIED', `the e-mail for ${message.stream} seq ${list[0].seq} names record hash ${message.recordHash} but the archive holds ${list[0].hash}; nothing was sent for it — run offchannel verify`);
      }
      return { message, records: list };
    });
    return { send: send.filter((item) => item.records.length > 0), notDue, nextDue, noEmail };
  }

  /**
   * Keeps what a pass verified: per stream, the newest signed checkpoint (size and root), written
   * atomically beside the cursor before anything is sent, so that the next pass — or the next
   * start — verifies only what came after it (see docs/delivery.md, "What a pass reads").
   */
  readonly #saveVerified = (report: VerificationReport): void => {
    const text = verifiedStateOf(report, this.#clock(), this.#verified);
    this.#state.writeVerified(text);
    this.#verified = readVerifiedState(text);
  };

  /** Sends one message until the server accepts it, then records its receipt. Returns whether it was in doubt. */
  async #deliverOne(item: Pending, signal: AbortSignal | undefined): Promise<boolean> {
    const { message } = item;
    const bytes = await readFile(message.file);
    const seqs = item.records.map((record) => record.seq);
    const first = seqs[0] ?? 0;
    const previous = this.#inFlight;
    let inDoubt = previous !== undefined && previous.stream === message.stream && previous.messageId === message.messageId;
    this.#writeCursor({ stream: message.stream, seqs, messageId: message.messageId });
    const retry = this.#options.retry ?? {};
    let backoff = retry.initialMs ?? 1000;
    for (let attempt = 1; ; attempt++) {
      await this.#rateLimit(signal);
      this.#sender ??= createSmtpSender(this.#target, this.#endpoint, this.#options.timeoutMs);
      const outcome = await this.#sender.send(bytes);
      const where = `${message.stream} seq ${first}${seqs.length > 1 ? ` (+${seqs.length - 1} records)` : ''}, Message-ID ${message.messageId}`;
      if (outcome.status === 'accepted') {
        const deliveredAt = this.#clock();
        const result = await this.#writer.capture(
          receiptCapture({ target: this.#target.name, to: this.#target.to, mode: this.mode, stream: message.stream, records: item.records, messageId: message.messageId, emlSha256: createHash('sha256').update(bytes).digest('hex'), emlSize: bytes.length, reply: outcome.reply, deliveredAt, attempts: attempt, inDoubt }),
        );
        if (result.status === 'recorded' && result.seq > this.#receiptHead) {
          this.#receiptHead = result.seq;
          this.#receiptHash = result.hash;
        }
        this.#remember({ receiptSeq: result.seq, stream: message.stream, seqs, to: this.#target.to, mode: this.mode, messageId: message.messageId, recordHash: seqs.length === 1 ? item.records[0]?.hash : undefined, deliveredAt: deliveredAt.toISOString(), reply: outcome.reply, inDoubt }, result.status === 'recorded');
        this.#logger.info({ deliveryTarget: this.#target.name, stream: message.stream, seq: first, records: seqs.length, attempt }, 'delivered');
        this.#options.onDelivered?.({ stream: message.stream, seqs, messageId: message.messageId, inDoubt });
        return inDoubt;
      }
      this.#sender.close();
      this.#sender = undefined;
      if (outcome.status === 'permanent') {
        await this.#writer.capture(refusalCapture({ target: this.#target.name, to: this.#target.to, stream: message.stream, seqs, messageId: message.messageId, reply: outcome.reply, at: this.#clock() }));
        this.#logger.error({ deliveryTarget: this.#target.name, stream: message.stream, seq: first, reply: outcome.reply }, 'the journaling server refused a message permanently; delivery stopped');
        throw new DeliveryError('DELIVERY_REFUSED', `the journaling server refused ${where} permanently: "${outcome.reply}". Delivery stopped at this record (recorded in ${receiptStream(this.#target.name)}); fix the cause with the journal's operator and run again — it resumes from this record`, { reply: outcome.reply });
      }
      if (outcome.status === 'tls') throw new DeliveryError('DELIVERY_TLS', `TLS to ${this.#endpoint.host}:${this.#endpoint.port} failed (${outcome.reply}); the server must offer STARTTLS (or use smtps://) with a certificate that verifies (add its CA with a ca file); nothing was sent`, { reply: outcome.reply });
      if (outcome.status === 'auth') throw new DeliveryError('DELIVERY_AUTH', `${this.#endpoint.host} refused the credentials of user ${this.#target.user ?? '(none)'} (${outcome.reply}); check the password file or OFFCHANNEL_SMTP_PASSWORD`, { reply: outcome.reply });
      // A failure without a 4xx reply may have come after the server took the message.
      if (!/^4\d\d/.test(outcome.reply)) inDoubt = true;
      if (attempt >= (retry.attempts ?? Number.POSITIVE_INFINITY)) {
        throw new DeliveryError('DELIVERY_UNAVAILABLE', `gave up on ${where} after ${attempt} attempts (last: "${outcome.reply}"); nothing was skipped — run again later`, { reply: outcome.reply });
      }
      this.#logger.warn({ deliveryTarget: this.#target.name, stream: message.stream, seq: first, attempt, reply: outcome.reply, retryInMs: backoff }, 'temporary delivery failure; retrying');
      await this.#sleep(backoff, signal);
      backoff = Math.min(backoff * 2, retry.maxMs ?? 300_000);
    }
  }

  async #rateLimit(signal: AbortSignal | undefined): Promise<void> {
    const perSecond = this.#target.maxPerSecond;
    if (perSecond === undefined) return;
    const wait = this.#lastSend + 1000 / perSecond - this.#clock().getTime();
    if (wait > 0) await this.#sleep(wait, signal);
    this.#lastSend = this.#clock().getTime();
  }

  /**
   * Moves a stream's cursor over delivered and e-mail-less records, forgetting each delivered
   * one it passes (only records above the cursor are ever remembered: cost is what it passes).
   */
  #advance(stream: string, head: number, noEmail: ReadonlySet<string>): void {
    let seq = this.#cursor.get(stream) ?? 0;
    const delivered = this.#delivered.get(stream);
    while (seq < head && (delivered?.delete(seq + 1) === true || noEmail.has(`${stream}/${seq + 1}`))) seq++;
    if (delivered?.size === 0) this.#delivered.delete(stream);
    this.#cursor.set(stream, seq);
  }

  #writeCursor(inFlight: InFlight | undefined): void {
    const cursor: DeliveryCursor = { format: 'offchannel-delivery-cursor', v: 1, target: this.#target.name, to: this.#target.to, mode: this.mode, streams: Object.fromEntries([...this.#cursor].sort()), ...(this.#missed.size > 0 ? { missed: Object.fromEntries([...this.#missed].sort()) } : {}), receipts: this.#receiptHead, delivered: this.#deliveredCount, ...(this.#receiptHash !== undefined && this.#receiptHead > 0 ? { receiptsHash: this.#receiptHash } : {}), ...(this.#lastDeliveredAt !== undefined ? { lastDeliveredAt: this.#lastDeliveredAt } : {}), ...(inFlight ? { inFlight } : {}) };
    this.#state.write(cursor);
    this.#savedReceipts = this.#receiptHead;
    this.#inFlight = inFlight;
  }

  #computeStatus(streams: readonly StreamProgress[], records: ReadonlyMap<string, { readonly capturedAt: string }>): DeliveryStatus {
    let backlog = 0;
    let oldest: number | undefined;
    for (const item of streams) {
      for (let seq = (this.#cursor.get(item.stream) ?? 0) + 1; seq <= item.head; seq++) {
        if (this.#deliveredAbove(item.stream, seq)) continue;
        backlog++;
        const at = Date.parse(records.get(`${item.stream}/${seq}`)?.capturedAt ?? '');
        if (Number.isFinite(at)) oldest = Math.min(oldest ?? at, at);
      }
    }
    return {
      target: this.#target.name,
      backlog,
      lagMs: oldest === undefined ? 0 : Math.max(0, this.#clock().getTime() - oldest),
      delivered: this.#deliveredCount,
      lastDeliveredAt: this.#lastDeliveredAt,
      streams: streams.map((item) => ({ ...item, delivered: Math.min(this.#cursor.get(item.stream) ?? 0, item.head) })),
      missed: this.#missedList(),
    };
  }

  #missedList(): MissedRecords[] {
    return [...this.#missed].sort().map(([stream, seqs]) => ({ stream, seqs }));
  }

  /**
   * Keeps delivering until `signal` aborts: a pass, then a wait of `pollMs`. Temporary failures
   * are retried with backoff inside a pass; a permanent refusal, TLS or auth failure throws.
   */
  async follow(options: { readonly signal: AbortSignal; readonly pollMs?: number; readonly onPass?: (report: DeliveryReport) => void }): Promise<void> {
    const pollMs = options.pollMs ?? 5000;
    let retryMs = 0;
    while (!options.signal.aborted) {
      try {
        options.onPass?.(await this.deliverPending(options.signal));
        retryMs = 0;
      } catch (error) {
        if (options.signal.aborted) return;
        // What may pass by itself (the archive or the receipts store unreachable, a spool pruned
        // under every attempt of a pass) is tried again, backing off to 5 min; nothing moved.
        if (!isRetryable(error)) throw error;
        retryMs = Math.min(FOLLOW_MAX_RETRY_MS, Math.max(pollMs, 1000, retryMs * 2));
        this.#logger.warn({ deliveryTarget: this.#target.name, code: OffchannelError.isInstance(error) ? error.code : 'UNKNOWN', retryInMs: retryMs }, 'a delivery pass failed for a reason that may pass; nothing was skipped, trying again');
        await this.#sleep(retryMs, options.signal).catch(() => undefined);
        continue;
      }
      await this.#sleep(pollMs, options.signal).catch(() => undefined);
    }
  }

  /** Releases the lock, the SMTP connection and signs the receipts stream's final checkpoint. */
  async close(): Promise<void> {
    this.#sender?.close();
    this.#sender = undefined;
    try {
      await this.#recorder.close();
    } finally {
      this.#keyIndex.close();
      this.#state.close();
    }
  }
}

/** A pass's read of the spool met a prune that ran meanwhile (see `#readAndPlan`); `cause` is what failed. */
class SpoolPrunedWhileReading extends Error {
  constructor(cause: unknown) {
    super('the spool was pruned while a delivery pass read it', { cause });
  }
}

/** Most records of one gap whose receipts are looked up by key (record mode); larger gaps count only what is in memory. */
const MAX_MISSED_LOOKUPS = 100_000;
/** Longest pause between passes retried after a failure that may pass (`follow`). */
const FOLLOW_MAX_RETRY_MS = 5 * 60_000;

/**
 * The receipt key index `<state>/<target>.receipt-keys.sqlite`. Core's index refuses anything but
 * a regular file at it, its `-wal` or its `-shm` (a link would have SQLite write wherever it
 * points); any failure to open it is a problem of the state directory (`DELIVERY_STATE`).
 */
function openReceiptKeys(dir: string, target: string): KeyIndex {
  try {
    return openKeyIndex({ file: path.join(dir, `${target}.receipt-keys.sqlite`) });
  } catch (error) {
    throw new DeliveryError('DELIVERY_STATE', (error as Error).message, { cause: error });
  }
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
