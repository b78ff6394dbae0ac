/**
 * The iMessage event source: reads chat.db and delivers what it finds, in ROWID order, to core's
 * connector runtime, which maps it (map-chat-db-row.ts) and captures it pipelined.
 *
 * Acknowledgement is the relay's own cursor in `ctx.state` (relay-state.ts): the last message and
 * chat ROWID recorded, the edit/unsend marks of the last full scan, attachments still transferring.
 * Each event carries its `effect` on that cursor. The source applies it at once to the cursor it
 * READS from, and `acknowledge` applies it to the cursor it SAVES — only for events the runtime
 * reports durable, in order. A restart re-reads from the saved cursor; GUID keys make anything
 * re-read a duplicate, never a second record. Abandoned events rewind the read cursor.
 *
 * Completeness: a sweep compares every chat.db row up to the cursor with the archive through the
 * key index (`ctx.lookup`, one indexed read per row, never the archive itself) and delivers the
 * rows it never recorded; it runs after every start, every `reconcileMs`, and on demand. Holes in
 * the ROWIDs read for the first time are rows deleted before capture: a `gap` observation.
 */
import { OffchannelError, sha256Hex, type AttachmentInput, type ConnectorEvent, type EventSource, type EventSourceIo } from '@offchannel/core';
import { isTransferComplete, readAttachment } from './attachment-files.ts';
import { unixMsToAppleNs } from './apple-time.ts';
import { watchChanges } from './chat-db/change-watcher.ts';
import { ChatDb, type RowBundle } from './chat-db/chat-db.ts';
import type { ResolvedOptions } from './config.ts';
import { encodeObservation, keys, lostHistory, OBSERVATION_FORMAT, type ChatDbEvidence, type Observation, type SweepReport } from './map-chat-db-row.ts';
import { RAW_ROW_FORMAT, encodeRawRow, encodeRow } from './raw-row.ts';
import { STATE_NAME, checkState, initialState, type SavedState } from './relay-state.ts';

/** One thing read from chat.db, with what acknowledging it does to the cursor. */
export interface ChatDbEvent extends ConnectorEvent {
  readonly evidence: ChatDbEvidence;
  /** Attachment content read for this event, by attachment GUID. */
  readonly files: ReadonlyMap<string, AttachmentInput>;
  readonly effect?: (state: SavedState) => void;
  /** The message GUID the event is about, if any. */
  readonly guid?: string;
  /** Runs once the sweep report it carries is durable. */
  readonly settles?: (report: SweepReport) => void;
  /**
   * Called once the event is mapped: it lets go of the rows and files it was read with, keeping
   * what acknowledging it needs. Until its records are durable an event waits in the runtime's
   * window, and a message's rows are most of what a message in flight holds on the heap.
   */
  readonly mapped?: () => void;
}

/** What a mapped row event holds instead of its rows. */
const MAPPED: ChatDbEvidence = { type: 'none' };
const NO_FILES: ReadonlyMap<string, AttachmentInput> = new Map();
/** Left in a read batch's array in place of a row delivered from it. */
const NO_BUNDLE: RowBundle = { message: {}, attachments: [] };

/** What an on-demand sweep reports: its own findings, and every sweep's since the relay started. */
export interface ReconcileReport extends SweepReport {
  readonly sinceStart: { readonly recovered: number; readonly unsentBeforeCapture: number; readonly editedWithoutHistory: number };
}

/** Rows read per query while catching up. */
const BATCH = 200;
/** Rows checked per query while sweeping. */
const SWEEP_PAGE = 1000;
/** How long a row without its chat_message_join row waits for it before being recorded anyway. */
const CHAT_JOIN_GRACE_MS = 5000;
/** A gap this long between polls means the Mac slept or the process was suspended. */
const PAUSE_MS = 30_000;
/** File events come in bursts while Messages writes a commit; wait this long for the burst to end. */
const SETTLE_MS = 15;
/** Longest a streaming backlog's acknowledgements wait for one cursor write. */
const SAVE_EVERY_MS = 250;
/** Thrown inside a pass when the source closes mid-way; the pass ends quietly. */
class Closed extends Error {}

export class ChatDbSource implements EventSource<ChatDbEvent> {
  readonly #options: ResolvedOptions;
  /** Events delivered and not yet acknowledged (the runtime's backlog). */
  readonly #backlog: () => number;
  readonly #limit: number;
  #io: EventSourceIo<ChatDbEvent> | undefined;
  #db: ChatDb | undefined;
  /** The saved cursor: advanced only in `acknowledge`. */
  #acked: SavedState | undefined;
  /** The cursor reads continue from: ahead of `#acked` by what is in flight. */
  #read: SavedState | undefined;
  #watcher: { stop(): void; watching(): boolean } | undefined;
  #dataVersion = -1n;
  #dirty = false;
  #retry = false;
  #failing: string | undefined;
  #closed = false;
  #running: Promise<void> | undefined;
  #settle: ReturnType<typeof setTimeout> | undefined;
  #lastPollAt: string | undefined;
  #nextFullSweep = 0;
  #nextReconcile = 0;
  readonly #sweepWaiters: { resolve: (report: ReconcileReport) => void; reject: (error: Error) => void }[] = [];
  readonly #sinceStart = { recovered: 0, unsentBeforeCapture: 0, editedWithoutHistory: 0 };
  readonly #room: (() => void)[] = [];
  /** GUIDs acknowledged since the cursor was last written. */
  readonly #unsaved: string[] = [];
  #savedAt = 0;
  #saveTimer: ReturnType<typeof setTimeout> | undefined;
  /** Change fingerprints of rows read, by GUID: the rows sent within `sweepLookbackMs` only. */
  readonly #fingerprints = new Map<string, string>();
  readonly #heldSince = new Map<bigint, number>();
  readonly #pauses: { from: number; to: number }[] = [];

  constructor(options: ResolvedOptions, backlog: () => number, maxInFlight: number) {
    this.#options = options;
    this.#backlog = backlog;
    this.#limit = maxInFlight * 2;
  }

  async open(io: EventSourceIo<ChatDbEvent>): Promise<void> {
    this.#io = io;
    const db = ChatDb.open(this.#options.chatDb);
    this.#db = db;
    try {
      this.#acked = checkState(await io.ctx.state.getJson(STATE_NAME)) ?? initialState(db, this.#options.startAt);
    } catch (error) {
      db.close();
      this.#db = undefined;
      throw error;
    }
    this.#read = structuredClone(this.#acked);
    this.#watcher = watchChanges({
      file: this.#options.chatDb,
      pollMs: this.#options.pollMs,
      watchDirectory: this.#options.watch,
      onChange: () => {
        this.#scheduleSoon();
      },
      onPoll: (elapsed) => this.#poll(elapsed),
      onWatchError: (code) => {
        io.ctx.logger.warn({ code }, 'directory watch failed; relying on the data_version poll until it is re-armed');
      },
    });
    io.transition('connected', 'chat-db-opened');
    io.ctx.logger.info({ cursor: this.#acked.rowid, watch: this.#options.watch, pollMs: this.#options.pollMs }, 'iMessage relay started');
    this.#schedule();
  }

  async acknowledge(events: readonly ChatDbEvent[]): Promise<void> {
    const acked = this.#acked as SavedState;
    for (const event of events) {
      event.effect?.(acked);
      if (event.guid !== undefined) this.#unsaved.push(event.guid);
    }
    for (const event of events) if (event.evidence.type === 'observation' && event.evidence.observation.event === 'chat-db-sweep') event.settles?.(event.evidence.observation);
    // One cursor write (an fsync) per SAVE_EVERY_MS at most while a backlog streams in: saving
    // less often only means more duplicates to skip after a crash, never a lost row.
    if (performance.now() - this.#savedAt >= SAVE_EVERY_MS) await this.#save();
    else this.#saveTimer ??= setTimeout(() => void this.#save().catch((error: unknown) => this.#io?.ctx.logger.warn({ code: OffchannelError.isInstance(error) ? error.code : 'STATE_WRITE_FAILED' }, 'saving the iMessage cursor failed; retrying with the next acknowledgement')), SAVE_EVERY_MS);
    this.#wake();
  }

  /** Writes the acknowledged cursor now. */
  async #save(): Promise<void> {
    clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    const guids = this.#unsaved.splice(0);
    this.#savedAt = performance.now();
    try {
      await this.#io?.ctx.state.setJson(STATE_NAME, this.#acked);
    } catch (error) {
      this.#unsaved.unshift(...guids);
      throw error;
    }
    if (guids.length > 0) this.#options.onAcknowledge?.(guids);
  }

  async abandon(): Promise<void> {
    // Nothing after the first abandoned event is acknowledged: read again from the saved cursor.
    if (this.#acked !== undefined) this.#read = structuredClone(this.#acked);
    this.#fingerprints.clear();
    this.#wake();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher?.stop();
    clearTimeout(this.#settle);
    this.#wake();
    await this.#running;
    this.#db?.close();
    if (this.#acked !== undefined) await this.#save(); // whatever was acknowledged since the last write
    for (const waiter of this.#sweepWaiters.splice(0)) waiter.reject(new OffchannelError('CONNECTOR_STOPPED', 'the iMessage relay stopped before the sweep finished; run it again (nothing is recorded twice)'));
  }

  /** Runs a sweep now; resolves with its report once the report record is durable. */
  sweepNow(): Promise<ReconcileReport> {
    if (this.#closed || this.#io === undefined) return Promise.reject(new OffchannelError('CONNECTOR_STOPPED', 'the iMessage relay is not running; start it before reconciling'));
    const done = new Promise<ReconcileReport>((resolve, reject) => this.#sweepWaiters.push({ resolve, reject }));
    this.#schedule();
    return done;
  }

  /** Progress for the status line. */
  detail(): string {
    const watch = this.#watcher?.watching() ? 'directory watch on' : 'directory watch off';
    return `cursor ROWID ${this.#acked?.rowid ?? '?'}; last poll ${this.#lastPollAt ?? 'pending'}; ${watch}; ${this.#acked?.pending.length ?? 0} attachment transfers pending`;
  }

  /** Runs every pollMs: notices sleep, re-runs after failures, and reports whether chat.db changed. */
  #poll(elapsedMs: number): boolean {
    const now = Date.now();
    this.#lastPollAt = new Date(now).toISOString();
    if (elapsedMs > Math.max(PAUSE_MS, this.#options.pollMs * 10)) this.#pauses.push({ from: now - elapsedMs, to: now });
    if (this.#db === undefined || this.#closed) return false;
    let version: bigint;
    try {
      version = this.#db.dataVersion();
    } catch {
      return true;
    }
    const changed = version !== this.#dataVersion;
    this.#dataVersion = version;
    const retry = this.#retry;
    this.#retry = false;
    return changed || retry || this.#pauses.length > 0 || this.#heldSince.size > 0 || (this.#read?.pending.length ?? 0) > 0 || now >= this.#nextFullSweep || now >= this.#nextReconcile;
  }

  #scheduleSoon(): void {
    this.#settle ??= setTimeout(() => {
      this.#settle = undefined;
      this.#schedule();
    }, SETTLE_MS);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#dirty = true;
    this.#running ??= this.#loop().finally(() => (this.#running = undefined));
  }

  async #loop(): Promise<void> {
    while (this.#dirty && !this.#closed) {
      this.#dirty = false;
      const db = this.#db as ChatDb;
      try {
        const version = db.dataVersion();
        await this.#pass(db);
        // A commit that landed while this pass ran gets its own pass now, not at the next poll.
        if (db.dataVersion() !== version) this.#dirty = true;
        if (this.#failing !== undefined) {
          this.#failing = undefined;
          this.#io?.transition('connected', 'chat-db-readable');
        }
      } catch (error) {
        if (error instanceof Closed || this.#closed) return;
        const code = OffchannelError.isInstance(error) ? error.code : 'CHAT_DB_READ_FAILED';
        this.#retry = true;
        this.#io?.ctx.logger.error({ code }, 'reading chat.db failed; retrying on the next poll (nothing unread is acknowledged)');
        if (this.#failing === undefined) this.#io?.transition('disconnected', code);
        this.#failing = code;
      }
    }
  }

  async #pass(db: ChatDb): Promise<void> {
    const read = this.#read as SavedState;
    await this.#recordPauses();
    if (db.highestRowIdEver() < BigInt(read.rowid)) await this.#generationChanged(read);
    await this.#newChats(db, read);
    await this.#newRows(db, read);
    await this.#changes(db, { sinceDate: unixMsToAppleNs(Date.now() - this.#options.sweepLookbackMs) }, true);
    if (Date.now() >= this.#nextFullSweep) {
      const marks = db.changeMarks(BigInt(read.rowid));
      await this.#changes(db, { editedAfter: BigInt(read.edited), retractedAfter: BigInt(read.retracted) }, false);
      const edited = marks.edited.toString();
      const retracted = marks.retracted.toString();
      await this.#deliver({ evidence: { type: 'none' }, files: new Map(), raw: new Uint8Array(), format: OBSERVATION_FORMAT, effect: (state) => Object.assign(state, { edited, retracted }) });
      this.#nextFullSweep = Date.now() + this.#options.fullSweepMs;
    }
    await this.#pendingAttachments(db, read);
    if (this.#sweepWaiters.length > 0 || Date.now() >= this.#nextReconcile) await this.#sweep(db);
  }

  async #newChats(db: ChatDb, read: SavedState): Promise<void> {
    for (const chat of db.chatsAfter(BigInt(read.chatRowid))) {
      const rowid = String(chat['ROWID']);
      const effect = (state: SavedState) => void (state.chatRowid = rowid);
      if (chat['style'] !== 43n) {
        await this.#deliver({ evidence: { type: 'none' }, files: new Map(), raw: new Uint8Array(), format: RAW_ROW_FORMAT, effect });
        continue;
      }
      const members = db.members(chat['ROWID'] as bigint);
      const raw = new TextEncoder().encode(JSON.stringify({ format: RAW_ROW_FORMAT, version: 1, chat: encodeRow(chat), members: members.map(encodeRow) }));
      await this.#deliver({ evidence: { type: 'chat', chat, members, seenAt: new Date().toISOString() }, files: new Map(), raw, format: RAW_ROW_FORMAT, effect });
    }
  }

  async #newRows(db: ChatDb, read: SavedState): Promise<void> {
    // Only rows inside the change window are remembered: #changes forgets the others right
    // after (the window only moves forward), so a first import of years holds no more than it.
    const windowStart = unixMsToAppleNs(Date.now() - this.#options.sweepLookbackMs);
    for (;;) {
      const { bundles, fingerprints } = db.readBatch(BigInt(read.rowid), BATCH);
      const count = bundles.length;
      for (let index = 0; index < count; index++) {
        const bundle = bundles[index] as RowBundle;
        bundles[index] = NO_BUNDLE; // the event holds it from here, until it is mapped
        const rowid = bundle.message['ROWID'] as bigint;
        if (bundle.chat === undefined && this.#holdForChat(rowid)) return;
        // Its changes so far are read with it: the change check looks only for later ones.
        const guid = String(bundle.message['guid']);
        const fingerprint = fingerprints.get(guid);
        const date = bundle.message['date'];
        if (fingerprint !== undefined && typeof date === 'bigint' && date > windowStart) this.#fingerprints.set(guid, fingerprint);
        this.#heldSince.delete(rowid);
        const previous = BigInt(read.rowid);
        if (previous > 0n && rowid > previous + 1n) {
          const observation: Observation = { event: 'rows-deleted-before-capture', after: previous.toString(), before: rowid.toString(), at: new Date().toISOString() };
          await this.#observe(observation);
        }
        await this.#deliverRow(bundle, true);
      }
      if (count < BATCH) return;
    }
  }

  /** Delivers a row: first read (advances the cursor) or recovered by a sweep. */
  async #deliverRow(bundle: RowBundle, first: boolean): Promise<void> {
    const guid = String(bundle.message['guid']);
    const rowid = String(bundle.message['ROWID']);
    const files = new Map<string, AttachmentInput>();
    const incomplete: string[] = [];
    const complete: string[] = [];
    for (const row of bundle.attachments) {
      const attachment = String(row['guid']);
      files.set(attachment, await readAttachment(row, this.#readOptions()));
      (isTransferComplete(row) ? complete : incomplete).push(attachment);
    }
    // Re-read after a crash: the earlier record may predate the transfer, so record the file too (keyed, so once).
    const ctx = (this.#io as EventSourceIo<ChatDbEvent>).ctx;
    const completed = complete.length > 0 && (await ctx.lookup(keys.row(guid))) !== undefined ? complete : [];
    const effect = (state: SavedState): void => {
      if (first) state.rowid = rowid;
      for (const attachment of incomplete) if (!state.pending.some((entry) => entry.attachment === attachment)) state.pending.push({ rowid, attachment });
    };
    let raw: Uint8Array | undefined;
    let held: RowBundle | undefined = bundle;
    const event: { -readonly [K in keyof ChatDbEvent]: ChatDbEvent[K] } = {
      evidence: { type: 'row', bundle, ...(completed.length > 0 ? { completed } : {}) },
      files,
      get raw() {
        return (raw ??= encodeRawRow(held as RowBundle));
      },
      format: RAW_ROW_FORMAT,
      effect,
      guid,
      mapped: () => {
        if (held === undefined) return;
        raw ??= encodeRawRow(held); // the same bytes, kept should anything ask again
        held = undefined;
        event.evidence = MAPPED;
        event.files = NO_FILES;
      },
    };
    await this.#deliver(event);
  }

  /** Messages writes the chat join a moment after some rows; wait a little for it, in ROWID order. */
  #holdForChat(rowid: bigint): boolean {
    const since = this.#heldSince.get(rowid) ?? Date.now();
    this.#heldSince.set(rowid, since);
    return Date.now() - since < CHAT_JOIN_GRACE_MS;
  }

  /** Rows already read whose change columns moved since the last look: edits, unsends, receipts. */
  async #changes(db: ChatDb, window: Parameters<ChatDb['fingerprints']>[1], prune: boolean): Promise<void> {
    const read = this.#read as SavedState;
    const seen = new Set<string>();
    for (const { rowid, guid, fingerprint } of db.fingerprints(BigInt(read.rowid), window)) {
      seen.add(guid);
      if (this.#fingerprints.get(guid) === fingerprint) continue;
      const bundle = db.bundle(rowid);
      if (bundle) await this.#deliver({ evidence: { type: 'changes', bundle }, files: new Map(), raw: encodeRawRow(bundle), format: RAW_ROW_FORMAT, guid });
      this.#fingerprints.set(guid, fingerprint);
    }
    if (prune) for (const guid of this.#fingerprints.keys()) if (!seen.has(guid)) this.#fingerprints.delete(guid);
  }

  async #pendingAttachments(db: ChatDb, read: SavedState): Promise<void> {
    for (const entry of [...read.pending]) {
      const row = db.attachment(entry.attachment);
      if (row !== undefined && !isTransferComplete(row)) continue;
      const bundle = db.bundle(BigInt(entry.rowid));
      const effect = (state: SavedState) => void (state.pending = state.pending.filter((other) => other.attachment !== entry.attachment));
      if (row !== undefined && bundle !== undefined) {
        const file = await readAttachment(row, this.#readOptions());
        await this.#deliver({ evidence: { type: 'attachment', bundle, attachment: entry.attachment }, files: new Map([[entry.attachment, file]]), raw: encodeRawRow(bundle), format: RAW_ROW_FORMAT, effect, guid: String(bundle.message['guid']) });
      } else {
        const message = bundle === undefined ? `rowid-${entry.rowid}` : String(bundle.message['guid']);
        await this.#observe({ event: 'attachment-removed-before-transfer', message, attachment: entry.attachment, at: new Date().toISOString() }, effect);
      }
    }
  }

  /**
   * Compares chat.db with the archive: every row up to the saved cursor whose key the archive
   * lacks (inserted below the cursor while the relay was stopped, missed by a watcher) is
   * captured now, and one `chat-db-sweep` record says what was checked, recovered and lost.
   */
  async #sweep(db: ChatDb): Promise<void> {
    this.#nextReconcile = Date.now() + this.#options.reconcileMs;
    await this.#drained(); // only what is durable counts as recorded
    // Served by this sweep: requests made before it began checking. Later ones get the next.
    const waiters = this.#sweepWaiters.splice(0);
    const trigger = waiters.length > 0 ? 'on-demand' : 'scheduled';
    const ctx = (this.#io as EventSourceIo<ChatDbEvent>).ctx;
    const acked = this.#acked as SavedState;
    const upto = BigInt(acked.rowid);
    const report = { startedAt: new Date().toISOString(), trigger, checked: 0, recovered: 0, unsentBeforeCapture: 0, editedWithoutHistory: 0 } as { -readonly [K in keyof SweepReport]: SweepReport[K] };
    let after = BigInt(acked.sweepFrom ?? '0');
    for (;;) {
      const page = db.guidsBetween(after, upto, SWEEP_PAGE);
      for (const { rowid, guid } of page) {
        this.#throwIfClosed();
        report.checked++;
        if ((await ctx.lookup(keys.row(guid))) !== undefined) continue;
        const bundle = db.bundle(rowid);
        // Gone since, or recorded as unmappable (a mapping bug): nothing to recover.
        if (bundle === undefined || (await ctx.lookup(keys.unmappable(sha256Hex(encodeRawRow(bundle))))) !== undefined) continue;
        report.recovered++;
        report.firstRecovered ??= rowid.toString();
        report.lastRecovered = rowid.toString();
        const lost = lostHistory(bundle);
        if (lost === 'unsent') report.unsentBeforeCapture++;
        if (lost === 'edit-history') report.editedWithoutHistory++;
        await this.#deliverRow(bundle, false);
      }
      if (page.length < SWEEP_PAGE) break;
      after = (page.at(-1) as { rowid: bigint }).rowid;
    }
    if (report.recovered > 0) ctx.logger.warn({ count: report.recovered, records: report.checked }, 'sweep found chat.db rows the archive lacked (count) among the rows checked (records); recording them now');
    // A scheduled sweep that found nothing leaves no record (it runs hourly); any other does.
    if (report.recovered === 0 && waiters.length === 0) return;
    await this.#observe({ event: 'chat-db-sweep', ...report }, undefined, (done) => {
      this.#sinceStart.recovered += done.recovered;
      this.#sinceStart.unsentBeforeCapture += done.unsentBeforeCapture;
      this.#sinceStart.editedWithoutHistory += done.editedWithoutHistory;
      for (const waiter of waiters) waiter.resolve({ ...done, sinceStart: { ...this.#sinceStart } });
    });
  }

  /** The database was replaced (restore, rebuild, Messages re-sync): ROWIDs restart, GUID keys dedupe. */
  async #generationChanged(read: SavedState): Promise<void> {
    this.#io?.ctx.logger.warn({ cursor: read.rowid }, 'chat.db ROWIDs went backwards: a new database generation; re-reading it, known GUIDs are recorded once');
    const reset = (state: SavedState) => void Object.assign(state, { rowid: '0', chatRowid: '0', edited: '0', retracted: '0', sweepFrom: '0' });
    await this.#observe({ event: 'chat-db-generation-changed', previousCursor: read.rowid, at: new Date().toISOString() }, reset);
  }

  /** Liveness evidence: a relay that was asleep may have missed the original of a quick unsend. */
  async #recordPauses(): Promise<void> {
    while (this.#pauses.length > 0) {
      const pause = this.#pauses.shift() as { from: number; to: number };
      await this.#observe({ event: 'relay-paused', from: new Date(pause.from).toISOString(), to: new Date(pause.to).toISOString() });
    }
  }

  #observe(observation: Observation, effect?: (state: SavedState) => void, settles?: (report: SweepReport) => void): Promise<void> {
    return this.#deliver({ evidence: { type: 'observation', observation }, files: new Map(), raw: encodeObservation(observation), format: OBSERVATION_FORMAT, ...(effect ? { effect } : {}), ...(settles ? { settles } : {}) });
  }

  /** Hands one event to the runtime, waiting while too many are unacknowledged (the archive is slow or down). */
  async #deliver(event: ChatDbEvent): Promise<void> {
    while (!this.#closed && this.#backlog() >= this.#limit) await new Promise<void>((resolve) => this.#room.push(resolve));
    this.#throwIfClosed();
    event.effect?.(this.#read as SavedState);
    (this.#io as EventSourceIo<ChatDbEvent>).deliver(event);
  }

  /** Waits until everything delivered is acknowledged. */
  async #drained(): Promise<void> {
    while (!this.#closed && this.#backlog() > 0) await new Promise<void>((resolve) => this.#room.push(resolve));
    this.#throwIfClosed();
  }

  #wake(): void {
    for (const resolve of this.#room.splice(0)) resolve();
  }

  #throwIfClosed(): void {
    if (this.#closed) throw new Closed('the iMessage relay closed');
  }

  #readOptions(): { attachmentsDir?: string; maxBytes: number } {
    return { maxBytes: this.#options.maxAttachmentBytes, ...(this.#options.attachmentsDir === undefined ? {} : { attachmentsDir: this.#options.attachmentsDir }) };
  }
}
