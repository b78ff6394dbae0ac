/**
 * The WhatsApp connector: one linked device (Baileys) per account, on core's connector runtime.
 * This file is the event source; every record is built in map-whatsapp.ts.
 *
 * Data path, in order:
 * 1. `makeWASocket` builds the socket; the connector immediately replaces `sock.ev.emit`
 *    (emit-tap.ts), so it sees every event before Baileys' event buffer can merge or mutate it.
 * 2. In the tap, synchronously, each message of `messages.upsert` (`notify` AND `append`: an
 *    offline replay is live traffic) and of `messaging-history.set` is serialized to its
 *    protobuf bytes (raw-envelope.ts) and delivered to the runtime. Every other event that is
 *    recorded (delete-for-me, chat cleared, group metadata, LID ↔ phone pairs and subjects the
 *    identity book learns, completeness signals) is delivered as JSON evidence
 *    (`whatsapp.event.v1`): the record's raw blob.
 * 3. The runtime maps events in order (`#map`: state lookups — an encrypted edit's original
 *    secret, an earlier undecryptable stub — then the pure mapping), issues captures pipelined
 *    and calls `acknowledge` with each run of events that is durable.
 * 4. Acknowledging: Baileys acknowledged the messages to WhatsApp before emitting them, so there
 *    is no upstream ack to send. `acknowledge` is where the connector's own state advances: a
 *    message's secret (for later encrypted edits) is written to the state store, and its media
 *    download starts (media-queue.ts, a few at a time; never in the capture path). The outcome —
 *    the file, or why not — comes back as an event and becomes the message's follow-up record.
 * A crash between Baileys' acknowledgement and the durable write can lose a message; the
 * completeness signals (offline count, history sync) make that visible as `gap` records.
 */
import {
  CONNECTOR_SPEC_VERSION,
  OffchannelError,
  createConnectorRuntime,
  type CaptureInput,
  type Connector,
  type ConnectorContext,
  type ConnectorEvent,
  type ConnectorRuntime,
  type ConnectorStatus,
  type EventSourceIo,
  type SourceInfo,
} from '@offchannel/core';
import makeWASocket, {
  Browsers,
  BufferJSON,
  DisconnectReason,
  getBinaryNodeChild,
  jidNormalizedUser,
  makeCacheableSignalKeyStore,
  proto,
  type BaileysEventEmitter,
  type BaileysEventMap,
  type BinaryNode,
  type UserFacingSocketConfig,
  type WAMessageKey,
} from '@whiskeysockets/baileys';
import { clearAuthState, openAuthState, type StoredAuthState } from './auth-state.ts';
import { baileysLogger } from './baileys-logger.ts';
import { tapEmitter } from './emit-tap.ts';
import { IdentityBook } from './identity-book.ts';
import { createMediaDownloader, type MediaDownloader, type MediaDownloaderOptions } from './media-download.ts';
import { DEFAULT_MEDIA_CONCURRENCY, MediaQueue } from './media-queue.ts';
import { HistoryReconciler, type FetchMessageHistory, type ReconcileWhatsAppOptions, type ReconcileWhatsAppReport } from './history-reconcile.ts';
import { checkHistoryPayload } from './history-payload.ts';
import { MessageIndex, type IndexEntry } from './message-index.ts';
import {
  EVENT_FORMAT,
  HISTORY_PAYLOAD_FORMAT,
  UNENCODABLE_FORMAT,
  encodeEventEvidence,
  mapEnvelope,
  offlineCountKey,
  mapMediaOutcome,
  mapWhatsAppEvent,
  type MapDependencies,
  type MappedEnvelope,
  type MediaOutcome,
  type PendingMedia,
  type WhatsAppEventEvidence,
  type WhatsAppIdentity,
} from './map-whatsapp.ts';
import { RAW_FORMAT, encodeRawEvidence, freezeMessage, type CapturedEnvelope } from './raw-envelope.ts';
import { PACKAGE_VERSION, UPSTREAM } from './version.ts';

/** The parts of a Baileys socket the connector uses. `makeWASocket`'s result satisfies it. */
export interface WhatsAppSocket {
  readonly ev: BaileysEventEmitter;
  /** The socket's frame emitter (`CB:<tag>,,<child>` events): read for the offline counts. */
  readonly ws?: { on(event: string, listener: (node: BinaryNode) => void): unknown };
  end(error: Error | undefined): void;
  requestPairingCode?(phoneNumber: string): Promise<string>;
  /** Asks the phone for a chat's history before a message (reconciliation); resolves with the request id. */
  fetchMessageHistory?: FetchMessageHistory;
}

/** Builds a socket; the default is Baileys' `makeWASocket`. Tests and the demo pass an offline one. */
export type WhatsAppSocketFactory = (config: UserFacingSocketConfig) => WhatsAppSocket;

export interface WhatsAppConnectorOptions {
  /** The custodian's account name (becomes the stream `whatsapp:<account>`). */
  readonly account: string;
  /** Ask the phone for full history at link time and accept every history chunk. Default true. */
  readonly syncFullHistory?: boolean;
  readonly media?: MediaDownloaderOptions;
  /** Reconnect backoff: first delay and ceiling, ms. Defaults 1 000 and 60 000. */
  readonly reconnect?: { readonly initialDelayMs?: number; readonly maxDelayMs?: number };
  /**
   * WhatsApp Web version the socket announces, e.g. `[2, 3000, 1043857760]`. Default: the one
   * pinned in Baileys 7.0.0-rc14. Set a newer one when WhatsApp starts refusing the pinned version
   * (Baileys' `fetchLatestWaWebVersion()` tells the current one).
   */
  readonly waVersion?: readonly [number, number, number];
  /** WebSocket URL override (loopback tests only). */
  readonly waWebSocketUrl?: string;
  /** Days without a sign of the phone at which a `whatsapp-phone-offline` warning is recorded. Default [7, 12]. */
  readonly phoneWarningDays?: readonly number[];
  /** How long after linking history sync may take before a `history-sync-missing` gap is recorded, ms. Default 30 min. */
  readonly historyBoundMs?: number;
  /**
   * After the server's end-of-offline marker, how long without another offline message before
   * the count is compared (Baileys may still be decrypting the last ones), ms. Default 5 000.
   */
  readonly offlineQuietMs?: number;
  /**
   * Reconciliation after a gap (history-reconcile.ts): ask the phone for the history of the
   * chats around it `afterGapMs` after the gap is detected (default 60 000) and every `everyMs`
   * while gaps are pending (default 3 600 000); `timeoutMs` per answer (default 60 000), `count`
   * messages per page (default 50). `false` turns the scheduled attempts off (`reconcile()` still works).
   */
  readonly reconcile?: false | { readonly everyMs?: number; readonly afterGapMs?: number; readonly timeoutMs?: number; readonly count?: number };
  /** Events mapped but not yet durable (the runtime's window). Default 256. */
  readonly maxInFlight?: number;
  /** Seam: told the message ids (`key.id`) of each run of events the runtime acknowledged (durable). */
  readonly onAcknowledge?: (messageIds: readonly string[]) => void;
  /** Seam: clock, ms since epoch. Default `Date.now`. */
  readonly clock?: () => number;
  /** Seam: socket factory. Default `makeWASocket`. */
  readonly socketFactory?: WhatsAppSocketFactory;
  /** Seam: media downloader. Default {@link createMediaDownloader}(`media`). */
  readonly download?: MediaDownloader;
}

/** The core Connector, plus a way to wait until everything received so far is archived. */
export interface WhatsAppConnector extends Connector {
  /** Resolves when every event seen so far has been captured (or stop() gave up on it). */
  whenIdle(): Promise<void>;
  /** Runs the completeness checks now (phone last seen, history sync); they also run every minute. */
  checkCompleteness(): void;
  /** Asks the phone for the history around every pending gap, records what comes back and each gap's outcome. */
  reconcile(options?: ReconcileWhatsAppOptions): Promise<ReconcileWhatsAppReport>;
}

/** One event for the runtime: a frozen message, JSON evidence, or a media download's outcome. */
type WhatsAppEvent = EnvelopeEvent | EvidenceEvent | MediaEvent;

/** What becomes true once the event is durable (done in `acknowledge`). */
interface AfterDurable {
  ref?: { readonly chat: string; readonly id: string };
  entry?: { secret?: Uint8Array; content?: Uint8Array };
  /** The entry's row in the message index (set when it is noted). */
  hash?: string | undefined;
  media?: PendingMedia;
}

class EnvelopeEvent implements ConnectorEvent {
  readonly format = RAW_FORMAT;
  after: AfterDurable | undefined;
  readonly envelope: CapturedEnvelope;
  /** The message's `key.id` as Baileys gave it (for the acknowledgement seam). */
  readonly id: string | undefined;
  #raw: Uint8Array | undefined;
  constructor(envelope: CapturedEnvelope, id: string | undefined) {
    this.envelope = envelope;
    this.id = id;
  }
  get raw(): Uint8Array {
    this.#raw ??= encodeRawEvidence(this.envelope);
    return this.#raw;
  }
}

interface EvidenceEvent extends ConnectorEvent {
  readonly evidence: true;
}

interface MediaEvent extends ConnectorEvent {
  readonly media: PendingMedia;
  readonly outcome: MediaOutcome;
}

const SOURCE_PACKAGE = '@offchannel/whatsapp';
/** How long learned aliases may wait in memory before they are written to the state store. */
const BOOK_SAVE_DELAY_MS = 5000;
const DAY_MS = 86_400_000;
/** State key of the completeness facts (link time, phone last seen, history received). */
const HEALTH = 'completeness';

interface Health {
  linkedAt: number;
  phoneSeenAt: number;
  onlineAt?: number;
  historyAt?: number;
  historyMissingAt?: number;
}

/** Creates the connector. Nothing connects until the runner calls `start(ctx)`. */
export function createWhatsAppConnector(options: WhatsAppConnectorOptions): WhatsAppConnector {
  if (!options || typeof options !== 'object') throw new TypeError('createWhatsAppConnector needs options');
  return new BaileysConnector(options);
}

class BaileysConnector implements WhatsAppConnector {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'whatsapp';
  readonly account: string;
  readonly source: SourceInfo = { package: SOURCE_PACKAGE, version: PACKAGE_VERSION, upstream: UPSTREAM };

  readonly #options: WhatsAppConnectorOptions;
  readonly #runtime: ConnectorRuntime<WhatsAppEvent>;
  readonly #media: MediaQueue;
  readonly #now: () => number;
  #io: EventSourceIo<WhatsAppEvent> | undefined;
  #auth: StoredAuthState | undefined;
  #index: MessageIndex | undefined;
  #book: IdentityBook | undefined;
  #health: Health | undefined;
  #reconciler: HistoryReconciler | undefined;
  #reconcileTimers: NodeJS.Timeout[] = [];
  /** A scheduled run in progress (not in `#pending`: a run waits for `whenIdle`), and what stops it. */
  #reconciling: Promise<void> | undefined;
  #reconcileAbort = new AbortController();
  #socket: WhatsAppSocket | undefined;
  /** The socket once WhatsApp opened it (requests to the phone need an open connection). */
  #openSocket: WhatsAppSocket | undefined;
  /** The server finished delivering what queued while the device was away (Baileys' `receivedPendingNotifications`). */
  #caughtUp = false;
  #untap: (() => void) | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #saveTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #closed = false;
  /** Open offline delivery: what the server announced, and messages counted since. */
  #offline: { announced: number; total: number | undefined; arrived: number; from: number; lastArrival: number; ended: boolean } | undefined;
  #offlineTimer: NodeJS.Timeout | undefined;
  /** phone-offline thresholds already recorded for the current `phoneSeenAt`. */
  #warned = new Set<string>();
  readonly #pending = new Set<Promise<unknown>>();

  constructor(options: WhatsAppConnectorOptions) {
    this.#options = options;
    this.account = options.account;
    this.#now = options.clock ?? Date.now;
    const download: MediaDownloader = options.download ?? createMediaDownloader(options.media);
    this.#media = new MediaQueue(download, options.media?.concurrency ?? DEFAULT_MEDIA_CONCURRENCY, (media, outcome) => { this.#onMediaOutcome(media, outcome); });
    this.#runtime = createConnectorRuntime<WhatsAppEvent>({
      channel: this.channel,
      account: this.account,
      source: this.source,
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
      retry: { minMs: 50, maxMs: 5000 },
      events: {
        open: (io) => this.#open(io),
        acknowledge: (events) => this.#acknowledge(events),
        close: () => this.#close(),
      },
      map: (event) => this.#map(event),
    });
  }

  start(ctx: ConnectorContext): Promise<void> {
    return this.#runtime.start(ctx);
  }

  stop(): Promise<void> {
    return this.#runtime.stop();
  }

  status(): ConnectorStatus {
    return this.#runtime.status();
  }

  async whenIdle(): Promise<void> {
    let quiet = 0;
    while (quiet < 2) {
      const busy = this.#runtime.backlog > 0 || this.#media.size > 0 || this.#pending.size > 0;
      quiet = busy ? 0 : quiet + 1;
      if (busy) await Promise.allSettled([...this.#pending]);
      await new Promise((resolve) => setTimeout(resolve, busy ? 1 : 0));
    }
  }

  reconcile(options: ReconcileWhatsAppOptions = {}): Promise<ReconcileWhatsAppReport> {
    const reconciler = this.#reconciler;
    if (!reconciler || this.#closed) return Promise.reject(new OffchannelError('WHATSAPP_NOT_STARTED', 'start the connector before reconciling'));
    const settings = this.#options.reconcile || {};
    const merged = { ...(settings.timeoutMs === undefined ? {} : { timeoutMs: settings.timeoutMs }), ...(settings.count === undefined ? {} : { count: settings.count }), ...options };
    return this.#caughtUpOrTimeout(merged.timeoutMs ?? 60_000, merged.signal).then(() => {
      const socket = this.#openSocket;
      const fetch = socket?.fetchMessageHistory ? socket.fetchMessageHistory.bind(socket) : undefined;
      return reconciler.run(fetch, () => this.whenIdle(), (outcome) => { this.#deliverEvidence({ type: 'gap-reconciled', at: this.#iso(), ...outcome }); }, merged);
    });
  }

  /** Waits (up to `ms`) until connected and the offline delivery is in and counted: its gap is then known. */
  async #caughtUpOrTimeout(ms: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = performance.now() + ms;
    while ((!this.#openSocket || !this.#caughtUp || this.#offline) && performance.now() < deadline && !this.#closed && !signal?.aborted) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** A scheduled attempt (after a gap, or periodic while gaps are pending): outcomes are records; here only counts are logged. */
  #scheduledReconcile(): void {
    if (this.#closed || !this.#reconciler || this.#reconciler.pending === 0 || !this.#openSocket) return;
    const logger = this.#io?.ctx.logger;
    this.#reconciling ??= this.reconcile({ signal: this.#reconcileAbort.signal }).then(
      (report) => { logger?.info({ count: report.gaps, recorded: report.recorded, pending: report.notRecovered.length }, 'scheduled reconciliation done'); },
      (error: unknown) => { logger?.warn({ code: OffchannelError.isInstance(error) ? error.code : 'unknown' }, 'scheduled reconciliation did not finish; the gaps stay pending'); },
    ).finally(() => { this.#reconciling = undefined; });
  }

  // ── the event source: open, acknowledge, close ───────────────────────────────────────────

  async #open(io: EventSourceIo<WhatsAppEvent>): Promise<void> {
    this.#io = io;
    this.#closed = false;
    const { ctx } = io;
    const auth = await openAuthState(ctx.state.scope('auth'));
    this.#book = await IdentityBook.load(ctx.state);
    if (!auth.existing || !auth.state.creds.me?.id) {
      throw new OffchannelError('WHATSAPP_NOT_LINKED', `WhatsApp account "${this.account}" is not linked. Run \`offchannel link whatsapp --account ${this.account}\` and scan the QR code.`);
    }
    this.#auth = auth;
    this.#index = new MessageIndex(ctx.state);
    this.#reconciler = await HistoryReconciler.load(ctx.state);
    this.#reconcileAbort = new AbortController();
    this.#media.open();
    // The identity every mapping of this stream uses, recorded before anything else (not a
    // platform event, so captured here and not counted in status; if the archive is down, it
    // goes through the runtime like any event and is retried).
    const me = this.#me();
    const identity = encodeEventEvidence({ type: 'identity', at: this.#iso(), me: { id: me.id, ...(me.lid ? { lid: me.lid } : {}) } });
    try {
      for (const input of mapWhatsAppEvent({ raw: identity, format: EVENT_FORMAT }, this.#deps()).inputs) await ctx.capture(input);
    } catch {
      io.deliver({ raw: identity, format: EVENT_FORMAT, evidence: true }); // the archive is down: the runtime retries it
    }
    const now = this.#now();
    // First start with these checks: a device that already processed history (linked by an
    // earlier version) is not reported as missing it.
    const processed = auth.state.creds.processedHistoryMessages?.length ?? 0;
    this.#health = (await ctx.state.getJson<Health>(HEALTH)) ?? { linkedAt: now, phoneSeenAt: now, ...(processed > 0 ? { historyAt: now } : {}) };
    this.checkCompleteness();
    this.#healthTimer = setInterval(() => { this.checkCompleteness(); }, 60_000);
    this.#healthTimer.unref();
    if (this.#options.reconcile !== false) {
      const every = setInterval(() => { this.#scheduledReconcile(); }, this.#options.reconcile?.everyMs ?? 3_600_000);
      every.unref();
      this.#reconcileTimers.push(every);
    }
    this.#connect();
  }

  /**
   * Durable: remember secrets (for later encrypted edits), start media downloads. No upstream
   * ack exists; the run counts as acknowledged once its secrets are durable too (one batch).
   */
  async #acknowledge(events: readonly WhatsAppEvent[]): Promise<void> {
    const ctx = this.#io?.ctx;
    const entries: IndexEntry[] = [];
    for (const event of events) {
      const after = event instanceof EnvelopeEvent ? event.after : undefined;
      if (!after || !ctx) continue;
      if (after.hash && after.entry) entries.push({ hash: after.hash, entry: after.entry });
      const media = after.media;
      // A replayed message whose follow-up is archived already is not downloaded again.
      if (media) this.#track(ctx.lookup(media.key).then((seq) => { if (seq === undefined) this.#media.submit(media); }));
    }
    // A failed write throws: the runtime stops, nothing newer is acknowledged (no secret is lost silently).
    if (entries.length > 0) await this.#index?.rememberAll(entries);
    this.#scheduleSave();
    this.#options.onAcknowledge?.(events.flatMap((event) => (event instanceof EnvelopeEvent && event.id !== undefined ? [event.id] : [])));
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#healthTimer);
    for (const timer of this.#reconcileTimers.splice(0)) clearTimeout(timer);
    this.#reconcileAbort.abort();
    this.#disconnect();
    await this.#reconciling;
    // Downloads still running or waiting are recorded unavailable (`stopped`), directly: the
    // runtime takes no more events now.
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    this.#media.close();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    await this.#index?.close();
    await this.#auth?.close();
    clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    await this.#save();
  }

  // ── mapping: state lookups here, the decisions in map-whatsapp.ts ─────────────────────────

  async #map(event: WhatsAppEvent): Promise<readonly CaptureInput[]> {
    const deps = this.#deps();
    if ('media' in event) return [mapMediaOutcome(event.media, event.outcome)];
    if (!(event instanceof EnvelopeEvent)) {
      const mapped = mapWhatsAppEvent(event, deps);
      this.#learn(mapped.pairs, mapped.titles);
      return mapped.inputs;
    }
    let mapped = mapEnvelope(event.envelope, deps);
    // A message the phone returned for reconciliation, within the gap: counted when it is not archived yet.
    const recoveredFor = mapped.input.meta?.['recoveredFor'];
    if (typeof recoveredFor === 'string' && (await this.#io?.ctx.lookup(mapped.input.key ?? '')) === undefined) this.#reconciler?.countRecovered(recoveredFor);
    if (mapped.needsSecret && this.#index) {
      const secret = await this.#index.secret(mapped.needsSecret.chat, mapped.needsSecret.id);
      if (secret) mapped = mapEnvelope(event.envelope, { ...deps, secretOf: () => secret });
    }
    if (mapped.input.kind === 'message' && mapped.stubKey) {
      const seq = await this.#io?.ctx.lookup(mapped.stubKey);
      if (seq !== undefined) mapped = mapEnvelope(event.envelope, { ...deps, resolves: { seq, key: mapped.stubKey } });
    }
    this.#learn(mapped.aliasPairs, mapped.newTitle && mapped.ref ? [[mapped.ref.chat, mapped.newTitle]] : undefined);
    event.after = afterDurable(mapped);
    // Visible in memory at once (the next event may be an edit of this message); written once durable.
    if (event.after?.ref && event.after.entry) event.after.hash = this.#index?.note(event.after.ref.chat, event.after.ref.id, event.after.entry);
    return [mapped.input];
  }

  #learn(pairs: readonly (readonly [string, string])[] | undefined, titles: readonly (readonly [string, string])[] | undefined): void {
    for (const [a, b] of pairs ?? []) this.#book?.link(a, b);
    for (const [chat, title] of titles ?? []) this.#book?.setTitle(chat, title);
  }

  #deps(): MapDependencies {
    const book = this.#book;
    return { me: this.#me(), aliases: (jid) => book?.aliases(jid) ?? [], title: (chat) => book?.title(chat) };
  }

  // ── socket lifecycle ──────────────────────────────────────────────────────────────────────

  #connect(): void {
    const io = this.#io;
    const auth = this.#auth;
    if (!io || !auth || this.#closed) return;
    const logger = baileysLogger(io.ctx.logger);
    const config: UserFacingSocketConfig = {
      auth: { creds: auth.state.creds, keys: makeCacheableSignalKeyStore(auth.state.keys, logger) },
      logger,
      browser: Browsers.macOS('Desktop'),
      syncFullHistory: this.#options.syncFullHistory ?? true,
      // Every history chunk is recorded; an inline payload that does not inflate and decode is
      // recorded `unsupported` with its bytes instead of being handed to Baileys (history-payload.ts).
      shouldSyncHistoryMessage: (notification, message) => this.#acceptHistory(notification, message),
      markOnlineOnConnect: false,
      emitOwnEvents: true,
      getMessage: (key) => this.#getMessage(key),
      ...(this.#options.waWebSocketUrl ? { waWebSocketUrl: this.#options.waWebSocketUrl } : {}),
      ...(this.#options.waVersion ? { version: [...this.#options.waVersion] as [number, number, number] } : {}),
    };
    let socket: WhatsAppSocket;
    try {
      socket = (this.#options.socketFactory ?? ((c: UserFacingSocketConfig) => makeWASocket(c)))(config);
    } catch (error) {
      // Never let a reconnect attempt crash the process: report it and try again later.
      const delay = this.#backoff();
      io.transition('reconnecting', `socket-create-failed ${error instanceof Error ? error.name : 'unknown'}; retry in ${delay} ms`);
      this.#reconnectTimer = setTimeout(() => { this.#connect(); }, delay);
      return;
    }
    this.#socket = socket;
    // FIRST thing after the socket exists: tap the emitter (see emit-tap.ts).
    this.#untap = tapEmitter(socket.ev, (event, data) => { this.#onEvent(event, data); }, (error) => { this.#tapFailed(error); });
    socket.ws?.on('CB:ib,,offline_preview', (node) => { if (socket === this.#socket) this.#offlinePreview(node); });
    socket.ws?.on('CB:ib,,offline', (node) => { if (socket === this.#socket) this.#offlineDone(node); });
    socket.ev.on('creds.update', () => {
      if (socket === this.#socket) this.#track(auth.saveCreds());
    });
    socket.ev.on('connection.update', (update) => { this.#onConnection(socket, update); });
  }

  #disconnect(): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#openSocket = undefined;
    this.#caughtUp = false;
    // An offline delivery cut short is announced again on the next connection.
    this.#offline = undefined;
    clearTimeout(this.#offlineTimer);
    this.#untap?.();
    this.#untap = undefined;
    try {
      socket?.end(undefined);
    } catch {
      // already closed
    }
  }

  #onConnection(socket: WhatsAppSocket, update: BaileysEventMap['connection.update']): void {
    const io = this.#io;
    if (socket !== this.#socket || this.#closed || !io) return;
    if (update.qr) {
      // A QR means the stored credentials are not (or no longer) a linked device.
      this.#disconnect();
      io.transition('logged-out', 'pairing-requested');
      return;
    }
    if (update.receivedPendingNotifications === true) this.#caughtUp = true;
    if (update.connection === 'open') {
      this.#attempt = 0;
      this.#openSocket = socket;
      io.transition('connected');
      this.#online();
      // Also persist anything Baileys changed in the credentials before our listener existed.
      if (this.#auth) this.#track(this.#auth.saveCreds());
      return;
    }
    if (update.connection !== 'close') return;
    const code = (update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined)?.output?.statusCode;
    this.#online();
    this.#disconnect();
    if (code === DisconnectReason.loggedOut) {
      // The device was removed (on the phone or by WhatsApp): its keys are dead. Clear them so
      // `offchannel link whatsapp` can link a new device.
      io.transition('logged-out', '401');
      this.#track(clearAuthState(io.ctx.state.scope('auth')));
      return;
    }
    if (code === DisconnectReason.forbidden) {
      io.transition('banned', '403');
      return;
    }
    if (code === DisconnectReason.connectionReplaced) {
      io.transition('replaced', '440');
      return;
    }
    const delay = code === DisconnectReason.restartRequired ? 0 : this.#backoff();
    io.transition('reconnecting', code === DisconnectReason.restartRequired ? '515 restart required' : `${code ?? 'no code'}; retry in ${delay} ms`);
    this.#reconnectTimer = setTimeout(() => { this.#connect(); }, delay);
  }

  #backoff(): number {
    const first = this.#options.reconnect?.initialDelayMs ?? 1000;
    const max = this.#options.reconnect?.maxDelayMs ?? 60_000;
    const delay = Math.min(max, first * 2 ** Math.min(this.#attempt, 16));
    this.#attempt++;
    return delay;
  }

  // ── the tap: synchronous copies, delivered in arrival order ───────────────────────────────

  #onEvent<E extends keyof BaileysEventMap>(event: E, data: BaileysEventMap[E]): void {
    const receivedAt = this.#now();
    if (event === 'messages.upsert') {
      const upsert = data as BaileysEventMap['messages.upsert'];
      const origin = upsert.type === 'notify' ? 'notify' : 'append';
      if (origin === 'append' && this.#offline) {
        this.#offline.arrived += upsert.messages.length;
        this.#offline.lastArrival = performance.now();
      }
      for (const message of upsert.messages) {
        if (message.key?.fromMe === true) this.#phoneSeen(receivedAt);
        if (this.#reconciler?.seen(message)) this.#scheduleSave();
        this.#deliverMessage(message, () => freezeMessage(message, origin, { requestId: upsert.requestId, receivedAt }));
      }
    } else if (event === 'messaging-history.set') {
      const history = data as BaileysEventMap['messaging-history.set'];
      this.#phoneSeen(receivedAt);
      if (this.#health && this.#health.historyAt === undefined) {
        this.#health.historyAt = receivedAt;
        this.#scheduleSave();
      }
      const pairs = [...(history.lidPnMappings ?? []).map((p) => [p.lid, p.pn] as const), ...history.contacts.map((c) => [c.lid ?? c.id, c.phoneNumber ?? c.id] as const)];
      this.#deliverDirectory('history', pairs, []);
      const syncType = history.syncType !== undefined && history.syncType !== null ? (proto.HistorySync.HistorySyncType[history.syncType] ?? String(history.syncType)) : undefined;
      const recovering = history.syncType === proto.HistorySync.HistorySyncType.ON_DEMAND ? this.#reconciler?.recovering : undefined;
      for (const message of history.messages) this.#deliverMessage(message, () => freezeMessage(message, 'history', { historySyncType: syncType, recovering, receivedAt }));
      if (history.syncType === proto.HistorySync.HistorySyncType.ON_DEMAND) this.#reconciler?.answered(history);
    } else if (event === 'messages.delete') {
      const deletion = data as BaileysEventMap['messages.delete'];
      this.#phoneSeen(receivedAt);
      if ('keys' in deletion) {
        for (const key of deletion.keys) {
          const { remoteJid, fromMe, id, participant } = key;
          const fields = { remoteJid: remoteJid ?? null, fromMe: fromMe ?? null, id: id ?? null, participant: participant ?? null };
          this.#deliverEvidence({ type: 'delete-for-me', at: this.#iso(receivedAt), key: fields });
        }
      } else {
        this.#deliverEvidence({ type: 'chat-cleared', at: this.#iso(receivedAt), jid: deletion.jid });
      }
    } else if (event === 'lid-mapping.update') {
      const pair = data as BaileysEventMap['lid-mapping.update'];
      this.#deliverDirectory('lid-mapping', [[pair.lid, pair.pn]], []);
    } else if (event === 'contacts.upsert' || event === 'contacts.update') {
      const contacts = data as BaileysEventMap['contacts.upsert'];
      this.#deliverDirectory('contacts', contacts.map((c) => [c.lid ?? c.id, c.phoneNumber ?? c.id] as const), []);
    } else if (event === 'groups.update') {
      const groups = data as BaileysEventMap['groups.update'];
      this.#deliverDirectory('groups', [], groups.flatMap((g) => (g.id && typeof g.subject === 'string' && g.subject ? [[g.id, g.subject] as const] : [])));
    } else if (event === 'groups.upsert') {
      for (const group of data as BaileysEventMap['groups.upsert']) {
        const participants = (group.participants ?? []).map((p) => ({ id: p.id, ...(p.admin ? { admin: p.admin } : {}) }));
        const evidence = { id: group.id, ...(group.subject ? { subject: group.subject } : {}), ...(group.owner ? { owner: group.owner } : {}), ...(typeof group.creation === 'number' ? { creation: group.creation } : {}), participants };
        this.#deliverEvidence({ type: 'group-metadata', at: this.#iso(receivedAt), group: evidence });
      }
    }
  }

  /** Delivers only what the identity book does not know yet (once per contact, not per sync). */
  #deliverDirectory(source: string, pairs: readonly (readonly [string | null | undefined, string | null | undefined])[], titles: readonly (readonly [string, string])[]): void {
    const book = this.#book;
    const fresh = pairs.filter((p): p is readonly [string, string] => typeof p[0] === 'string' && typeof p[1] === 'string' && p[0].length > 0 && p[1].length > 0 && p[0] !== p[1] && !(book?.aliases(userOf(p[0])) ?? []).includes(userOf(p[1])));
    const newTitles = titles.filter(([chat, title]) => book?.title(chat) !== title.slice(0, 200));
    if (fresh.length === 0 && newTitles.length === 0) return;
    this.#deliverEvidence({ type: 'directory', at: this.#iso(), source, pairs: fresh.map(([a, b]) => [a, b] as const), titles: newTitles });
  }

  #deliverEvidence(evidence: WhatsAppEventEvidence): void {
    this.#io?.deliver({ raw: encodeEventEvidence(evidence), format: EVENT_FORMAT, evidence: true });
  }

  #deliverMessage(message: unknown, freeze: () => CapturedEnvelope): void {
    let envelope: CapturedEnvelope;
    try {
      envelope = freeze();
    } catch (error) {
      // protobufjs could not encode the object (a field of the wrong type). Keep what we can:
      // the object as JSON, as evidence of an event we could not read.
      let json: string | undefined;
      try {
        json = JSON.stringify(message, BufferJSON.replacer);
      } catch {
        json = undefined;
      }
      if (json === undefined) {
        this.#tapFailed(error);
        return;
      }
      this.#io?.deliver({ raw: Uint8Array.from(Buffer.from(json, 'utf8')), format: UNENCODABLE_FORMAT, evidence: true });
      return;
    }
    const id = (message as { key?: { id?: unknown } | null }).key?.id;
    this.#io?.deliver(new EnvelopeEvent(envelope, typeof id === 'string' ? id : undefined));
  }

  #tapFailed(error: unknown): void {
    const name = error instanceof Error ? error.name : 'unknown';
    this.#io?.ctx.logger.error({ error: name }, 'could not serialize an event in the emitter tap');
    this.#deliverEvidence({ type: 'tap-failure', at: this.#iso(), error: name });
  }

  #onMediaOutcome(media: PendingMedia, outcome: MediaOutcome): void {
    const raw = Uint8Array.from(Buffer.from(JSON.stringify({ followUp: media.key, ...('reason' in outcome ? { reason: outcome.reason } : {}) }), 'utf8'));
    if (!this.#closed) {
      this.#io?.deliver({ raw, format: 'whatsapp.media-outcome.json', media, outcome });
      return;
    }
    // Stopping: the runtime takes no more events; record the outcome directly, once.
    const ctx = this.#io?.ctx;
    if (ctx) this.#track(ctx.capture(mapMediaOutcome(media, outcome)));
  }

  // ── completeness: offline count, phone last seen, history sync ────────────────────────────

  #offlinePreview(node: BinaryNode): void {
    const attrs = getBinaryNodeChild(node, 'offline_preview')?.attrs ?? {};
    const number = (value: string | undefined) => (value !== undefined && /^\d{1,9}$/.test(value) ? Number(value) : undefined);
    const messages = number(attrs['message']);
    const total = number(attrs['count']);
    // The server states messages apart from receipts and notifications; with only a total, nothing is compared.
    if (messages === undefined) return;
    clearTimeout(this.#offlineTimer);
    this.#settleOffline(true); // a window still settling ends where the next begins
    this.#offline = { announced: messages, total, arrived: 0, from: this.#health?.onlineAt ?? this.#now(), lastArrival: performance.now(), ended: false };
    this.#reconciler?.openWindow();
  }

  #offlineDone(_node: BinaryNode): void {
    if (!this.#offline) return;
    this.#offline.ended = true;
    this.#settleOffline();
  }

  /**
   * Compares once everything announced arrived, or nothing more came for `offlineQuietMs`: the
   * end marker can overtake the last offline messages, which Baileys decrypts one by one.
   */
  #settleOffline(now = false): void {
    const offline = this.#offline;
    if (!offline?.ended || this.#closed) return;
    const quiet = this.#options.offlineQuietMs ?? 5000;
    const waited = performance.now() - offline.lastArrival;
    if (!now && offline.arrived < offline.announced && waited < quiet) {
      this.#offlineTimer = setTimeout(() => { this.#settleOffline(); }, Math.min(250, quiet - waited));
      return;
    }
    this.#offline = undefined;
    const at = this.#iso();
    const evidence = { type: 'offline-count', at, announced: offline.announced, arrived: offline.arrived, ...(offline.total === undefined ? {} : { total: offline.total }), from: this.#iso(offline.from), to: at } as const;
    this.#deliverEvidence(evidence);
    const lost = offline.arrived < offline.announced;
    this.#track(this.#reconciler?.settleWindow(lost ? { key: offlineCountKey(evidence), from: evidence.from, to: at, missing: offline.announced - offline.arrived } : undefined));
    if (lost && this.#options.reconcile !== false) {
      const timer = setTimeout(() => { this.#scheduledReconcile(); }, this.#options.reconcile?.afterGapMs ?? 60_000);
      timer.unref();
      this.#reconcileTimers.push(timer);
    }
  }

  checkCompleteness(): void {
    const health = this.#health;
    if (!health || this.#closed) return;
    const now = this.#now();
    if (this.#socket) this.#online();
    const days = Math.floor((now - health.phoneSeenAt) / DAY_MS);
    for (const threshold of this.#options.phoneWarningDays ?? [7, 12]) {
      const mark = `${health.phoneSeenAt}:${threshold}`;
      if (days < threshold || this.#warned.has(mark)) continue;
      this.#warned.add(mark);
      this.#io?.ctx.logger.warn({ reason: `phone-offline-${threshold}d` }, 'no sign of the phone: WhatsApp logs the device out after about 14 days; open WhatsApp on the phone');
      this.#deliverEvidence({ type: 'phone-offline', at: this.#iso(now), lastSeen: this.#iso(health.phoneSeenAt), days: threshold });
    }
    const bound = this.#options.historyBoundMs ?? 30 * 60_000;
    if (health.historyAt === undefined && health.historyMissingAt === undefined && now - health.linkedAt > bound) {
      health.historyMissingAt = now;
      this.#deliverEvidence({ type: 'history-missing', at: this.#iso(now), linkedAt: this.#iso(health.linkedAt), boundMs: bound });
      this.#scheduleSave();
    }
  }

  /**
   * Baileys' `shouldSyncHistoryMessage`: false (and an `unsupported` record) for an inline
   * payload that is not a history sync. Baileys calls it for every message carrying a
   * history-sync notification, before it drops those not sent by the account's own devices;
   * our patch (patches/@whiskeysockets__baileys*.patch) passes the message, and one not from
   * our own devices is refused unexamined: its payload is never inflated nor recorded as ours
   * (the message itself is recorded like any other). Without the message (Baileys' calls
   * without a payload), only the bounded check runs.
   */
  #acceptHistory(notification: proto.Message.IHistorySyncNotification, message?: proto.IWebMessageInfo): boolean {
    if (message && message.key?.fromMe !== true) return false;
    const problem = checkHistoryPayload(notification);
    if (!problem) return true;
    this.#io?.ctx.logger.warn({ reason: problem.reason }, 'a history-sync payload from our own device could not be read; recorded unsupported');
    this.#io?.deliver({ raw: problem.bytes, format: HISTORY_PAYLOAD_FORMAT, evidence: true });
    return false;
  }

  #phoneSeen(at: number): void {
    if (this.#health && at > this.#health.phoneSeenAt) {
      this.#health.phoneSeenAt = at;
      this.#scheduleSave();
    }
  }

  #online(): void {
    if (this.#health) {
      this.#health.onlineAt = this.#now();
      this.#scheduleSave();
    }
  }

  // ── helpers ───────────────────────────────────────────────────────────────────────────────

  #me(): WhatsAppIdentity {
    const me = this.#auth?.state.creds.me;
    return { id: me?.id ?? '', lid: me?.lid ?? undefined };
  }

  #iso(ms = this.#now()): string {
    return new Date(ms).toISOString();
  }

  /** Baileys asks for a message it must re-send (retry receipts). Only own messages are kept; `undefined` on a miss. */
  async #getMessage(key: WAMessageKey): Promise<proto.IMessage | undefined> {
    if (!key.remoteJid || !key.id || !this.#index) return undefined;
    const bytes = await this.#index.content(jidNormalizedUser(key.remoteJid), key.id);
    return bytes ? proto.Message.decode(bytes) : undefined;
  }

  /** Saves learned aliases, titles and completeness facts at most every few seconds (and on stop). */
  #scheduleSave(): void {
    if (this.#saveTimer || this.#closed) return;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      this.#track(this.#save());
    }, BOOK_SAVE_DELAY_MS);
    this.#saveTimer.unref();
  }

  async #save(): Promise<void> {
    const state = this.#io?.ctx.state;
    if (!state) return;
    if (this.#book) await this.#book.save(state);
    if (this.#health) await state.setJson(HEALTH, this.#health);
    await this.#reconciler?.save();
  }

  #track(promise: Promise<unknown> | undefined): void {
    if (!promise) return;
    const tracked = promise.catch((error: unknown) => {
      this.#io?.ctx.logger.error({ code: OffchannelError.isInstance(error) ? error.code : 'unknown' }, 'state write failed');
    });
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }
}

/** A user JID as the identity book keys it; the string itself if Baileys cannot parse it. */
function userOf(jid: string): string {
  try {
    return jidNormalizedUser(jid) || jid;
  } catch {
    return jid;
  }
}

/** What to do once a mapped message is durable. */
function afterDurable(mapped: MappedEnvelope): AfterDurable | undefined {
  const entry = mapped.ref && (mapped.messageSecret || mapped.ownContent) ? { ...(mapped.messageSecret ? { secret: mapped.messageSecret } : {}), ...(mapped.ownContent ? { content: mapped.ownContent } : {}) } : undefined;
  if (!entry && !mapped.media) return undefined;
  return { ...(mapped.ref ? { ref: mapped.ref } : {}), ...(entry ? { entry } : {}), ...(mapped.media ? { media: mapped.media } : {}) };
}
