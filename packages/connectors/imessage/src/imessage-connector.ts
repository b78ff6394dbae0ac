/**
 * The iMessage relay: watches chat.db and records every new row, and every edit, unsend,
 * receipt and completed attachment transfer of rows already recorded, through `ctx.capture`.
 *
 * Durable before acknowledge: the only acknowledgement is our own ROWID cursor (and the
 * chat cursor, the edit/unsend sweep marks and the pending-attachment list) in `ctx.state`,
 * saved only after the captures they cover have resolved. A restart re-reads from the cursor;
 * GUID-based keys make anything re-read a duplicate, never a second record.
 */
import { CONNECTOR_SPEC_VERSION, OffchannelError, sha256Hex, type CaptureInput, type CaptureResult, type Connector, type ConnectorContext, type ConnectorState, type ConnectorStatus } from '@offchannel/core';
import { isTransferComplete, readAttachment } from './attachment-files.ts';
import { unixMsToAppleNs } from './apple-time.ts';
import { watchChanges } from './chat-db/change-watcher.ts';
import { ChatDb, type RowBundle } from './chat-db/chat-db.ts';
import { resolveOptions, type IMessageConnectorOptions, type ResolvedOptions } from './config.ts';
import { mapAttachmentCompleted, mapNewChat, mapNewRow, mapRowChanges, keys, type MapContext } from './map-chat-db-row.ts';
import { RAW_ROW_FORMAT, encodeRawRow } from './raw-row.ts';
import { STATE_NAME, checkState, initialState, type SavedState } from './relay-state.ts';
import { PACKAGE_VERSION } from './version.ts';

/** Rows read per query while catching up. */
const BATCH = 200;
/** How long a row without its chat_message_join row waits for it before being recorded anyway. */
const CHAT_JOIN_GRACE_MS = 5000;
/** A gap this long between polls means the Mac slept or the process was suspended. */
const PAUSE_MS = 30_000;
/** File events come in bursts while Messages writes a commit; wait this long for the burst to end. */
const SETTLE_MS = 15;

/** Creates the iMessage relay for one Mac user's chat.db. See the package README for operating it. */
export function createIMessageConnector(options: IMessageConnectorOptions): Connector {
  return new IMessageConnector(resolveOptions(options));
}

class IMessageConnector implements Connector {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'imessage';
  readonly account: string;
  readonly source = { package: '@offchannel/imessage', version: PACKAGE_VERSION, upstream: `node:sqlite@${process.versions.sqlite ?? 'unknown'}` };
  readonly #options: ResolvedOptions;
  #status: { state: ConnectorState; since: string; detail?: string; captured: number; duplicates: number; errors: number; lastEventAt?: string };
  #ctx: ConnectorContext | undefined;
  #db: ChatDb | undefined;
  #state: SavedState | undefined;
  #watcher: { stop(): void; watching(): boolean } | undefined;
  #dataVersion = -1n;
  #dirty = false;
  #retry = false;
  #running: Promise<void> | undefined;
  #settle: ReturnType<typeof setTimeout> | undefined;
  #stopping: Promise<void> | undefined;
  #lastPollAt: string | undefined;
  #nextFullSweep = 0;
  readonly #fingerprints = new Map<string, string>();
  readonly #heldSince = new Map<bigint, number>();
  readonly #pauses: { from: number; to: number }[] = [];

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.account = options.account;
    this.#status = { state: 'idle', since: new Date().toISOString(), captured: 0, duplicates: 0, errors: 0 };
  }

  async start(ctx: ConnectorContext): Promise<void> {
    if (this.#ctx !== undefined) throw new OffchannelError('CONNECTOR_STARTED', 'this iMessage connector was already started; create a new one');
    this.#ctx = ctx;
    this.#setState('starting', 'opening chat.db read-only');
    try {
      this.#db = ChatDb.open(this.#options.chatDb);
      this.#state = checkState(await ctx.state.getJson(STATE_NAME)) ?? initialState(this.#db, this.#options.startAt);
    } catch (error) {
      this.#db?.close();
      this.#setState('failed', OffchannelError.isInstance(error) ? error.message : 'cannot open chat.db');
      throw error;
    }
    this.#watcher = watchChanges({
      file: this.#options.chatDb,
      pollMs: this.#options.pollMs,
      watchDirectory: this.#options.watch,
      onChange: () => {
        this.#scheduleSoon();
      },
      onPoll: (elapsed) => this.#poll(elapsed),
      onWatchError: (code) => {
        ctx.logger.warn({ code }, 'directory watch failed; relying on the data_version poll until it is re-armed');
      },
    });
    ctx.signal.addEventListener('abort', () => void this.stop(), { once: true });
    if (ctx.signal.aborted) {
      await this.stop();
      return;
    }
    this.#setState('running', 'catching up');
    ctx.logger.info({ cursor: this.#state.rowid, watch: this.#options.watch, pollMs: this.#options.pollMs }, 'iMessage relay started');
    this.#schedule();
  }

  stop(): Promise<void> {
    if (this.#ctx === undefined) return Promise.resolve();
    this.#stopping ??= (async () => {
      this.#setState('stopping');
      this.#watcher?.stop();
      clearTimeout(this.#settle);
      await this.#running; // the pass in flight finishes and saves the cursor
      this.#db?.close();
      this.#setState('stopped');
    })();
    return this.#stopping;
  }

  status(): ConnectorStatus {
    return { ...this.#status };
  }

  /** Runs every pollMs: notices sleep, re-runs after failures, and reports whether chat.db changed. */
  #poll(elapsedMs: number): boolean {
    const now = Date.now();
    this.#lastPollAt = new Date(now).toISOString();
    if (elapsedMs > Math.max(PAUSE_MS, this.#options.pollMs * 10)) this.#pauses.push({ from: now - elapsedMs, to: now });
    this.#refreshDetail();
    if (this.#db === undefined || this.#status.state !== 'running') return false;
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
    return changed || retry || this.#pauses.length > 0 || this.#heldSince.size > 0 || (this.#state?.pending.length ?? 0) > 0 || now >= this.#nextFullSweep;
  }

  #scheduleSoon(): void {
    this.#settle ??= setTimeout(() => {
      this.#settle = undefined;
      this.#schedule();
    }, SETTLE_MS);
  }

  #schedule(): void {
    if (this.#status.state !== 'running') return;
    this.#dirty = true;
    this.#running ??= this.#loop().finally(() => (this.#running = undefined));
  }

  async #loop(): Promise<void> {
    while (this.#dirty && this.#status.state === 'running') {
      this.#dirty = false;
      try {
        const version = this.#required(this.#db).dataVersion();
        try {
          await this.#tick();
          // A commit that landed while this pass ran gets its own pass now, not at the next poll.
          if (this.#required(this.#db).dataVersion() !== version) this.#dirty = true;
        } finally {
          await this.#save(); // the cursor covers only captures that resolved
        }
      } catch (error) {
        this.#status.errors++;
        this.#retry = true;
        this.#ctx?.logger.error({ code: OffchannelError.isInstance(error) ? error.code : 'UNEXPECTED' }, 'iMessage relay pass failed; nothing after the last durable record is acknowledged, retrying on the next poll');
      }
    }
  }

  async #tick(): Promise<void> {
    const db = this.#required(this.#db);
    const state = this.#required(this.#state);
    await this.#recordPauses();
    if (db.highestRowIdEver() < BigInt(state.rowid)) await this.#generationChanged(state);
    await this.#newChats(db, state);
    await this.#newRows(db, state);
    await this.#sweep(db, { sinceDate: unixMsToAppleNs(Date.now() - this.#options.sweepLookbackMs) }, true);
    if (Date.now() >= this.#nextFullSweep) {
      const marks = db.changeMarks(BigInt(state.rowid));
      await this.#sweep(db, { editedAfter: BigInt(state.edited), retractedAfter: BigInt(state.retracted) }, false);
      state.edited = marks.edited.toString();
      state.retracted = marks.retracted.toString();
      this.#nextFullSweep = Date.now() + this.#options.fullSweepMs;
    }
    await this.#pendingAttachments(db, state);
    this.#refreshDetail();
  }

  async #newChats(db: ChatDb, state: SavedState): Promise<void> {
    for (const chat of db.chatsAfter(BigInt(state.chatRowid))) {
      if (chat['style'] === 43n) await this.#capture(mapNewChat(chat, db.members(chat['ROWID'] as bigint), new Date()));
      state.chatRowid = String(chat['ROWID']);
    }
  }

  async #newRows(db: ChatDb, state: SavedState): Promise<void> {
    for (;;) {
      const rows = db.rowsAfter(BigInt(state.rowid), BATCH);
      for (const row of rows) {
        const rowid = row['ROWID'] as bigint;
        const bundle = db.bundleOf(row);
        if (bundle.chat === undefined && this.#holdForChat(rowid)) return;
        await this.#captureRow(bundle);
        this.#heldSince.delete(rowid);
        state.rowid = rowid.toString(); // acknowledged only now: the row's records are durable
      }
      await this.#save();
      if (rows.length < BATCH) return;
    }
  }

  /** Messages writes the chat join a moment after some rows; wait a little for it, in ROWID order. */
  #holdForChat(rowid: bigint): boolean {
    const since = this.#heldSince.get(rowid) ?? Date.now();
    this.#heldSince.set(rowid, since);
    return Date.now() - since < CHAT_JOIN_GRACE_MS;
  }

  async #captureRow(bundle: RowBundle): Promise<void> {
    const files = new Map<string, Awaited<ReturnType<typeof readAttachment>>>();
    for (const row of bundle.attachments) files.set(String(row['guid']), await readAttachment(row, this.#readOptions()));
    const context = this.#mapContext(files);
    const result = await this.#capture(this.#safely(bundle, () => mapNewRow(bundle, context)));
    const rowid = String(bundle.message['ROWID']);
    for (const row of bundle.attachments) {
      const guid = String(row['guid']);
      const pending = this.#required(this.#state).pending;
      if (!isTransferComplete(row)) {
        if (!pending.some((entry) => entry.attachment === guid)) pending.push({ rowid, attachment: guid });
      }
      // Re-read after a crash: the earlier record may predate the transfer, so record the file too (keyed, so once).
      else if (result.status === 'duplicate') await this.#capture(mapAttachmentCompleted(bundle, guid, files.get(guid) ?? { status: 'unavailable', reason: 'not-read' }, context));
    }
    for (const input of this.#changesSafely(bundle, context)) await this.#capture(input);
  }

  async #sweep(db: ChatDb, window: Parameters<ChatDb['fingerprints']>[1], prune: boolean): Promise<void> {
    const state = this.#required(this.#state);
    const seen = new Set<string>();
    for (const { rowid, guid, fingerprint } of db.fingerprints(BigInt(state.rowid), window)) {
      seen.add(guid);
      if (this.#fingerprints.get(guid) === fingerprint) continue;
      const bundle = db.bundle(rowid);
      if (bundle) for (const input of this.#changesSafely(bundle, this.#mapContext(new Map()))) await this.#capture(input);
      this.#fingerprints.set(guid, fingerprint);
    }
    if (prune) for (const guid of this.#fingerprints.keys()) if (!seen.has(guid)) this.#fingerprints.delete(guid);
  }

  async #pendingAttachments(db: ChatDb, state: SavedState): Promise<void> {
    for (const entry of [...state.pending]) {
      const row = db.attachment(entry.attachment);
      if (row !== undefined && !isTransferComplete(row)) continue;
      const bundle = db.bundle(BigInt(entry.rowid));
      if (row !== undefined && bundle !== undefined) {
        const file = await readAttachment(row, this.#readOptions());
        await this.#capture(mapAttachmentCompleted(bundle, entry.attachment, file, this.#mapContext(new Map())));
      } else {
        this.#ctx?.logger.warn({ rowid: entry.rowid }, 'attachment row removed before its transfer completed');
      }
      state.pending = state.pending.filter((other) => other !== entry);
    }
  }

  /** The database was replaced (restore, rebuild, Messages re-sync): ROWIDs restart, GUID keys dedupe. */
  async #generationChanged(state: SavedState): Promise<void> {
    this.#ctx?.logger.warn({ cursor: state.rowid }, 'chat.db ROWIDs went backwards: a new database generation; re-reading it, known GUIDs are recorded once');
    await this.#capture({ kind: 'system', key: `generation:${state.rowid}:${Date.now()}`, system: { event: 'chat-db-generation-changed', fields: { previousCursor: state.rowid } } });
    Object.assign(state, { rowid: '0', chatRowid: '0', edited: '0', retracted: '0' });
  }

  /** Liveness evidence: a relay that was asleep may have missed the original of a quick unsend. */
  async #recordPauses(): Promise<void> {
    while (this.#pauses.length > 0) {
      const pause = this.#pauses[0] as { from: number; to: number };
      const from = new Date(pause.from).toISOString();
      await this.#capture({
        kind: 'system',
        key: `paused:${from}`,
        sentAt: new Date(pause.to),
        system: { event: 'relay-paused', fields: { from, to: new Date(pause.to).toISOString(), seconds: String(Math.round((pause.to - pause.from) / 1000)) } },
      });
      this.#pauses.shift();
    }
  }

  async #capture(input: CaptureInput): Promise<CaptureResult> {
    const result = await this.#required(this.#ctx).capture(input);
    if (result.status === 'recorded') this.#status.captured++;
    else if (result.status === 'duplicate') this.#status.duplicates++;
    if (input.sentAt !== undefined) this.#status.lastEventAt = typeof input.sentAt === 'string' ? input.sentAt : input.sentAt.toISOString();
    return result;
  }

  /** A mapping bug must not lose the row: record it as unsupported with the raw row. */
  #safely(bundle: RowBundle, map: () => CaptureInput): CaptureInput {
    try {
      return map();
    } catch (error) {
      const guid = String(bundle.message['guid']);
      this.#ctx?.logger.error({ guid, code: OffchannelError.isInstance(error) ? error.code : 'UNEXPECTED' }, 'mapping failed; recording the row as unsupported');
      return { kind: 'unsupported', key: keys.row(guid), native: { id: guid }, problem: { reason: 'mapping-failed' }, raw: { format: RAW_ROW_FORMAT, bytes: encodeRawRow(bundle) } };
    }
  }

  /**
   * A row's later changes. A mapping bug must not stop capture at that row (the cursor would
   * never pass it): record one `unsupported` record per state of the row, with the raw row.
   */
  #changesSafely(bundle: RowBundle, context: MapContext): CaptureInput[] {
    try {
      return mapRowChanges(bundle, context);
    } catch (error) {
      const guid = String(bundle.message['guid']);
      const raw = encodeRawRow(bundle);
      this.#ctx?.logger.error({ code: OffchannelError.isInstance(error) ? error.code : 'UNEXPECTED' }, 'mapping a row change failed; recording it as unsupported');
      return [{ kind: 'unsupported', key: keys.changes(guid, sha256Hex(raw)), target: { id: guid }, problem: { reason: 'mapping-failed' }, raw: { format: RAW_ROW_FORMAT, bytes: raw } }];
    }
  }

  async #save(): Promise<void> {
    if (this.#ctx && this.#state) await this.#ctx.state.setJson(STATE_NAME, this.#state);
  }

  #mapContext(files: MapContext['files']): MapContext {
    return { self: this.#options.self, files };
  }

  #readOptions(): { attachmentsDir?: string; maxBytes: number } {
    return { maxBytes: this.#options.maxAttachmentBytes, ...(this.#options.attachmentsDir === undefined ? {} : { attachmentsDir: this.#options.attachmentsDir }) };
  }

  #setState(state: ConnectorState, detail?: string): void {
    this.#status = { ...this.#status, state, since: new Date().toISOString(), ...(detail === undefined ? {} : { detail }) };
    if (detail === undefined) delete this.#status.detail;
  }

  #refreshDetail(): void {
    if (this.#status.state !== 'running') return;
    const watch = this.#watcher?.watching() ? 'directory watch on' : 'directory watch off';
    this.#status.detail = `cursor ROWID ${this.#state?.rowid ?? '?'}; last poll ${this.#lastPollAt ?? 'pending'}; ${watch}; ${this.#state?.pending.length ?? 0} attachment transfers pending`;
  }

  #required<T>(value: T | undefined): T {
    if (value === undefined) throw new OffchannelError('CONNECTOR_NOT_STARTED', 'the iMessage connector is not started');
    return value;
  }
}
