/**
 * The WhatsApp connector: one linked device (Baileys) per account, capturing everything the
 * account sends and receives.
 *
 * Data path, in order:
 * 1. `makeWASocket` builds the socket; the connector immediately replaces `sock.ev.emit`
 *    (emit-tap.ts), so it sees every event before Baileys' event buffer can merge or mutate it.
 * 2. In the tap, synchronously, each message of `messages.upsert` (`notify` AND `append`) and
 *    of `messaging-history.set` is serialized to its protobuf bytes (raw-envelope.ts) and
 *    queued. Later mutations of the live object cannot reach the archive.
 * 3. One worker takes the queue in order: maps each envelope (map-whatsapp.ts), captures it,
 *    and only then remembers its messageSecret. History messages already archived (media
 *    follow-up included) are skipped before mapping.
 * 4. Media never waits in that queue: once a message with media is durable, its download goes
 *    to the media queue (media-queue.ts, a few at a time), and the outcome — the file, or why
 *    not — comes back into the worker's queue as the message's follow-up record. stop()
 *    cancels downloads still running; each is recorded unavailable with reason `stopped`.
 * Baileys acknowledges messages to WhatsApp before emitting them, so a crash between the
 * acknowledgement and the durable write can lose a message; full history sync on link and the
 * archive-backed dedupe are the reconciliation (see README, "Limits").
 */
import { createHash } from 'node:crypto';
import {
  CONNECTOR_SPEC_VERSION,
  OffchannelError,
  type CaptureInput,
  type Connector,
  type ConnectorContext,
  type ConnectorState,
  type ConnectorStatus,
  type SourceInfo,
} from '@offchannel/core';
import makeWASocket, {
  Browsers,
  BufferJSON,
  DisconnectReason,
  jidNormalizedUser,
  makeCacheableSignalKeyStore,
  proto,
  type BaileysEventEmitter,
  type BaileysEventMap,
  type UserFacingSocketConfig,
  type WAMessageKey,
} from '@whiskeysockets/baileys';
import { clearAuthState, openAuthState, type StoredAuthState } from './auth-state.ts';
import { baileysLogger } from './baileys-logger.ts';
import { tapEmitter } from './emit-tap.ts';
import { IdentityBook } from './identity-book.ts';
import { createMediaDownloader, type MediaDownloader, type MediaDownloaderOptions } from './media-download.ts';
import { DEFAULT_MEDIA_CONCURRENCY, MediaQueue } from './media-queue.ts';
import { MessageIndex } from './message-index.ts';
import { archiveKeysOf, mapDeleteForMe, mapEnvelope, mapMediaOutcome, type MapDependencies, type MappedEnvelope, type PendingMedia, type WhatsAppIdentity } from './map-whatsapp.ts';
import { RAW_FORMAT, encodeRawEvidence, freezeMessage, type CapturedEnvelope } from './raw-envelope.ts';
import { PACKAGE_VERSION, UPSTREAM } from './version.ts';

/** The parts of a Baileys socket the connector uses. `makeWASocket`'s result satisfies it. */
export interface WhatsAppSocket {
  readonly ev: BaileysEventEmitter;
  end(error: Error | undefined): void;
  requestPairingCode?(phoneNumber: string): Promise<string>;
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
  /** Seam: socket factory. Default `makeWASocket`. */
  readonly socketFactory?: WhatsAppSocketFactory;
  /** Seam: media downloader. Default {@link createMediaDownloader}(`media`). */
  readonly download?: MediaDownloader;
}

type Job = { readonly type: 'envelope'; readonly envelope: CapturedEnvelope } | { readonly type: 'input'; readonly input: CaptureInput };

const SOURCE_PACKAGE = '@offchannel/whatsapp';
/** Captures waiting for durability at once (group commit); mapping stays sequential. */
const CAPTURE_WINDOW = 64;
/** How long learned aliases may wait in memory before they are written to the state store. */
const BOOK_SAVE_DELAY_MS = 5000;

/** The core Connector, plus a way to wait until everything received so far is archived. */
export interface WhatsAppConnector extends Connector {
  /** Resolves when every event seen so far has been captured (or stop() gave up on it). */
  whenIdle(): Promise<void>;
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
  #state: ConnectorState = 'idle';
  #since = new Date().toISOString();
  #detail: string | undefined;
  #captured = 0;
  #duplicates = 0;
  #errors = 0;
  #lastEventAt: string | undefined;

  #ctx: ConnectorContext | undefined;
  #auth: StoredAuthState | undefined;
  #index: MessageIndex | undefined;
  #book: IdentityBook | undefined;
  #socket: WhatsAppSocket | undefined;
  #untap: (() => void) | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #stopping = false;
  readonly #queue: Job[] = [];
  #worker: Promise<void> | undefined;
  #bookTimer: NodeJS.Timeout | undefined;
  #abandoned = 0;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #media: MediaQueue;

  constructor(options: WhatsAppConnectorOptions) {
    this.#options = options;
    this.account = options.account;
    const download: MediaDownloader = options.download ?? createMediaDownloader(options.media);
    this.#media = new MediaQueue(download, options.media?.concurrency ?? DEFAULT_MEDIA_CONCURRENCY, (media, outcome) => {
      this.#enqueue({ type: 'input', input: mapMediaOutcome(media, outcome) });
    });
  }

  status(): ConnectorStatus {
    return {
      state: this.#state,
      since: this.#since,
      ...(this.#detail ? { detail: this.#detail } : {}),
      captured: this.#captured,
      duplicates: this.#duplicates,
      errors: this.#errors,
      ...(this.#lastEventAt ? { lastEventAt: this.#lastEventAt } : {}),
    };
  }

  async whenIdle(): Promise<void> {
    while (this.#worker || this.#pending.size > 0 || this.#media.size > 0) {
      await this.#worker;
      await this.#media.idle();
      await Promise.allSettled([...this.#pending]);
    }
  }

  async start(ctx: ConnectorContext): Promise<void> {
    if (this.#state !== 'idle' && this.#state !== 'stopped') throw new OffchannelError('WHATSAPP_ALREADY_STARTED', 'this connector is already running; call stop() first.');
    this.#ctx = ctx;
    this.#stopping = false;
    this.#media.open();
    this.#set('starting');
    let auth: StoredAuthState;
    try {
      auth = await openAuthState(ctx.state.scope('auth'));
      this.#book = await IdentityBook.load(ctx.state);
    } catch (error) {
      this.#set('failed', `cannot read the session state (${OffchannelError.isInstance(error) ? error.code : 'unreadable'})`);
      throw error;
    }
    if (!auth.existing || !auth.state.creds.me?.id) {
      this.#set('logged-out', 'not linked: run `offchannel link whatsapp --account <name>` first');
      throw new OffchannelError('WHATSAPP_NOT_LINKED', `WhatsApp account "${this.account}" is not linked. Run \`offchannel link whatsapp --account ${this.account}\` and scan the QR code.`);
    }
    this.#auth = auth;
    this.#index = new MessageIndex(ctx.state);
    if (ctx.signal.aborted) {
      this.#set('stopped', 'aborted before start');
      return;
    }
    ctx.signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.#connect();
  }

  async stop(): Promise<void> {
    if (this.#stopping || this.#state === 'idle' || this.#state === 'stopped') return;
    this.#stopping = true;
    this.#set('stopping');
    clearTimeout(this.#reconnectTimer);
    this.#disconnect();
    // Downloads still running or waiting are recorded unavailable (`stopped`): their follow-up
    // records join the queue, and the worker drains it (later media is reported at once).
    this.#media.close();
    while (this.#worker) await this.#worker;
    await Promise.allSettled([...this.#pending]);
    await this.#index?.flush();
    clearTimeout(this.#bookTimer);
    this.#bookTimer = undefined;
    if (this.#ctx && this.#book) await this.#book.save(this.#ctx.state).catch(() => undefined);
    const lost = this.#queue.length + this.#abandoned;
    if (lost > 0) {
      this.#ctx?.logger.error({ pending: lost }, 'stopped with events not yet archived; only history sync can recover them');
      this.#set('stopped', `${lost} event(s) could not be archived before stop`);
      return;
    }
    this.#set('stopped');
  }

  // ── socket lifecycle ──────────────────────────────────────────────────────────────────────

  #connect(): void {
    const ctx = this.#ctx;
    const auth = this.#auth;
    if (!ctx || !auth || this.#stopping) return;
    const logger = baileysLogger(ctx.logger);
    const config: UserFacingSocketConfig = {
      auth: { creds: auth.state.creds, keys: makeCacheableSignalKeyStore(auth.state.keys, logger) },
      logger,
      browser: Browsers.macOS('Desktop'),
      syncFullHistory: this.#options.syncFullHistory ?? true,
      shouldSyncHistoryMessage: () => true,
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
      this.#errors++;
      const delay = this.#backoff();
      this.#set('reconnecting', `could not create the socket (${error instanceof Error ? error.name : 'unknown'}): retrying in ${delay} ms`);
      this.#reconnectTimer = setTimeout(() => { this.#connect(); }, delay);
      return;
    }
    this.#socket = socket;
    // FIRST thing after the socket exists: tap the emitter (see emit-tap.ts).
    this.#untap = tapEmitter(socket.ev, (event, data) => { this.#onEvent(event, data); }, (error) => { this.#tapFailed(error); });
    socket.ev.on('creds.update', () => {
      if (socket === this.#socket) this.#track(auth.saveCreds());
    });
    socket.ev.on('connection.update', (update) => { this.#onConnection(socket, update); });
  }

  #disconnect(): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#untap?.();
    this.#untap = undefined;
    try {
      socket?.end(undefined);
    } catch {
      // already closed
    }
  }

  #onConnection(socket: WhatsAppSocket, update: BaileysEventMap['connection.update']): void {
    const ctx = this.#ctx;
    if (socket !== this.#socket || this.#stopping || !ctx) return;
    if (update.qr) {
      // A QR means the stored credentials are not (or no longer) a linked device.
      this.#disconnect();
      this.#set('logged-out', 'WhatsApp asks for pairing: link the device again with `offchannel link whatsapp`');
      return;
    }
    if (update.connection === 'open') {
      this.#attempt = 0;
      this.#set('running', 'connected');
      // Also persist anything Baileys changed in the credentials before our listener existed.
      if (this.#auth) this.#track(this.#auth.saveCreds());
      return;
    }
    if (update.connection !== 'close') return;
    const code = (update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined)?.output?.statusCode;
    this.#disconnect();
    if (code === DisconnectReason.loggedOut) {
      // The device was removed (on the phone or by WhatsApp): its keys are dead. Clear them so
      // `offchannel link whatsapp` can link a new device.
      this.#set('logged-out', 'WhatsApp logged this device out (401): capture stopped; link the device again');
      this.#enqueue({ type: 'input', input: this.#systemInput('logged-out', '401') });
      this.#track(clearAuthState(ctx.state.scope('auth')));
      return;
    }
    if (code === DisconnectReason.forbidden) {
      this.#set('logged-out', 'WhatsApp refused this account (403): capture stopped; check the account on the phone');
      this.#enqueue({ type: 'input', input: this.#systemInput('logged-out', '403') });
      return;
    }
    if (code === DisconnectReason.connectionReplaced) {
      this.#set('failed', 'another session replaced this one (440): run exactly one capture process per account');
      this.#enqueue({ type: 'input', input: this.#systemInput('session-replaced', '440') });
      return;
    }
    const delay = code === DisconnectReason.restartRequired ? 0 : this.#backoff();
    this.#set('reconnecting', code === DisconnectReason.restartRequired ? 'restart required (515): reconnecting' : `connection closed (${code ?? 'no code'}): reconnecting in ${delay} ms`);
    this.#reconnectTimer = setTimeout(() => { this.#connect(); }, delay);
  }

  #backoff(): number {
    const first = this.#options.reconnect?.initialDelayMs ?? 1000;
    const max = this.#options.reconnect?.maxDelayMs ?? 60_000;
    const delay = Math.min(max, first * 2 ** Math.min(this.#attempt, 16));
    this.#attempt++;
    return delay;
  }

  // ── the tap: synchronous copies, queued in arrival order ──────────────────────────────────

  #onEvent<E extends keyof BaileysEventMap>(event: E, data: BaileysEventMap[E]): void {
    const receivedAt = Date.now();
    if (event === 'messages.upsert') {
      const upsert = data as BaileysEventMap['messages.upsert'];
      for (const message of upsert.messages) this.#enqueueMessage(message, () => freezeMessage(message, upsert.type === 'notify' ? 'notify' : 'append', { requestId: upsert.requestId, receivedAt }));
    } else if (event === 'messaging-history.set') {
      const history = data as BaileysEventMap['messaging-history.set'];
      for (const pair of history.lidPnMappings ?? []) this.#book?.link(pair.lid, pair.pn);
      for (const contact of history.contacts) this.#book?.link(contact.lid ?? contact.id, contact.phoneNumber ?? contact.id);
      const syncType = history.syncType !== undefined && history.syncType !== null ? (proto.HistorySync.HistorySyncType[history.syncType] ?? String(history.syncType)) : undefined;
      for (const message of history.messages) this.#enqueueMessage(message, () => freezeMessage(message, 'history', { historySyncType: syncType, receivedAt }));
    } else if (event === 'messages.delete') {
      const deletion = data as BaileysEventMap['messages.delete'];
      const me = this.#me();
      if ('keys' in deletion) {
        for (const key of deletion.keys) {
          const input = mapDeleteForMe({ ...key }, this.#deps(me), new Date(receivedAt));
          if (input) this.#enqueue({ type: 'input', input });
        }
      } else {
        this.#enqueue({ type: 'input', input: this.#systemInput('chat-cleared-for-me', undefined, deletion.jid) });
      }
    } else if (event === 'lid-mapping.update') {
      const pair = data as BaileysEventMap['lid-mapping.update'];
      this.#book?.link(pair.lid, pair.pn);
    } else if (event === 'contacts.upsert' || event === 'contacts.update') {
      for (const contact of data as BaileysEventMap['contacts.upsert']) this.#book?.link(contact.lid ?? contact.id, contact.phoneNumber ?? contact.id);
    } else if (event === 'groups.upsert' || event === 'groups.update') {
      for (const group of data as BaileysEventMap['groups.update']) if (group.id) this.#book?.setTitle(group.id, group.subject);
      if (event === 'groups.upsert') {
        for (const group of data as BaileysEventMap['groups.upsert']) this.#enqueue({ type: 'input', input: this.#groupMetadataInput(group, receivedAt) });
      }
    }
  }

  #enqueueMessage(message: unknown, freeze: () => CapturedEnvelope): void {
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
      this.#errors++;
      const problem = { reason: 'unencodable-message', detail: error instanceof Error ? error.name : 'unknown' };
      const key = `unsupported:json:${createHash('sha256').update(json).digest('hex')}`;
      this.#enqueue({ type: 'input', input: { kind: 'unsupported', key, problem, raw: { bytes: Buffer.from(json, 'utf8'), format: 'whatsapp.WAMessage.json' } } });
      return;
    }
    this.#enqueue({ type: 'envelope', envelope });
  }

  #tapFailed(error: unknown): void {
    this.#errors++;
    this.#ctx?.logger.error({ error: error instanceof Error ? error.name : 'unknown' }, 'could not serialize an event in the emitter tap');
    this.#enqueue({ type: 'input', input: { kind: 'gap', gap: { reason: 'serialize-failed' }, meta: { error: error instanceof Error ? error.name : 'unknown' } } });
  }

  #enqueue(job: Job): void {
    this.#queue.push(job);
    this.#kick();
  }

  #kick(): void {
    if (this.#worker || this.#queue.length === 0) return;
    this.#worker = this.#drain().finally(() => {
      this.#worker = undefined;
      if (!this.#stopping) this.#kick();
    });
  }

  // ── the worker: map, capture, remember — one job at a time, in order ──────────────────────

  /**
   * Takes jobs in arrival order. Mapping is strictly sequential (an edit is mapped after its
   * original, with the original's secret at hand); captures are issued in that order (so seq
   * follows arrival) and up to {@link CAPTURE_WINDOW} of them wait for durability together,
   * which lets the recorder commit them in one group. After an archive failure, the retried
   * record may land after later ones; `sentAt` and the native ids still give the order.
   */
  async #drain(): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx) return;
    const inflight: { readonly job: Job; readonly done: Promise<void> }[] = [];
    for (;;) {
      while (inflight.length < CAPTURE_WINDOW && this.#queue.length > 0) {
        const job = this.#queue[0] as Job;
        let done: Promise<void>;
        try {
          ({ done } = await this.#issue(ctx, job));
        } catch (error) {
          done = Promise.reject(error instanceof Error ? error : new Error(String(error)));
        }
        done.catch(() => undefined); // handled when it is this job's turn below
        this.#queue.shift();
        inflight.push({ job, done });
      }
      const oldest = inflight.shift();
      if (!oldest) return;
      try {
        await oldest.done;
      } catch (error) {
        await this.#retry(ctx, oldest.job, error);
      }
    }
  }

  /** The archive did not take a job (not durable): keep retrying it until it does, or stop() gives up. */
  async #retry(ctx: ConnectorContext, job: Job, first: unknown): Promise<void> {
    let error = first;
    for (let delay = 50; ; delay = Math.min(delay * 2, 5000)) {
      this.#errors++;
      ctx.logger.error({ code: OffchannelError.isInstance(error) ? error.code : 'unknown' }, 'capture failed; retrying');
      if (this.#stopping && delay > 1000) {
        this.#abandoned++;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      try {
        const { done } = await this.#issue(ctx, job);
        await done;
        return;
      } catch (next) {
        error = next;
      }
    }
  }

  /**
   * Maps a job and issues its capture. Resolves (after mapping) with `done`, a promise that
   * settles when the record is durable and the follow-up state is written. (Wrapped in an object:
   * an async function cannot resolve to a bare promise.)
   */
  async #issue(ctx: ConnectorContext, job: Job): Promise<{ readonly done: Promise<void> }> {
    if (job.type === 'input') {
      const input = job.input;
      return {
        done: ctx.capture(input).then((result) => {
          this.#count(result, input);
        }),
      };
    }
    const envelope = job.envelope;
    const me = this.#me();
    if (envelope.origin === 'history') {
      const keys = archiveKeysOf(envelope, me);
      const archived = async (key: string | undefined) => key === undefined || (await ctx.lookup(key)) !== undefined;
      if (keys && (await archived(keys.message)) && (await archived(keys.attachment))) {
        this.#duplicates++;
        return { done: Promise.resolve() };
      }
    }
    let mapped: MappedEnvelope;
    try {
      mapped = await mapEnvelope(envelope, this.#deps(me));
    } catch (error) {
      // A mapping bug must not lose the message: archive its bytes as unsupported.
      mapped = { input: { kind: 'unsupported', problem: { reason: 'mapping-error', detail: error instanceof Error ? error.name : 'unknown' }, raw: { bytes: encodeRawEvidence(envelope), format: RAW_FORMAT } } };
    }
    for (const [a, b] of mapped.aliasPairs ?? []) this.#book?.link(a, b);
    if (mapped.newTitle && mapped.ref) this.#book?.setTitle(mapped.ref.chat, mapped.newTitle);
    let input = mapped.input;
    if (input.kind === 'message' && mapped.stubKey) {
      const stubSeq = await ctx.lookup(mapped.stubKey);
      if (stubSeq !== undefined) input = { ...input, meta: { ...input.meta, resolvesUndecryptableSeq: stubSeq, resolvesUndecryptableKey: mapped.stubKey } };
    }
    const entry = mapped.ref && (mapped.messageSecret || mapped.ownContent) ? { ...(mapped.messageSecret ? { secret: mapped.messageSecret } : {}), ...(mapped.ownContent ? { content: mapped.ownContent } : {}) } : undefined;
    // Visible in memory at once (the next job may be an edit of this message)…
    if (mapped.ref && entry) this.#index?.note(mapped.ref.chat, mapped.ref.id, entry);
    const ref = mapped.ref;
    const media = mapped.media;
    const done = ctx.capture(input).then(async (result) => {
      this.#count(result, input);
      // …but written to the state store only once the record is durable.
      if (ref && entry) this.#track(this.#index?.remember(ref.chat, ref.id, entry));
      this.#scheduleBookSave();
      if (media) await this.#fetchMedia(ctx, media);
    });
    return { done };
  }

  /** After its message is durable: download the media unless its follow-up is archived already (a replay). */
  async #fetchMedia(ctx: ConnectorContext, media: PendingMedia): Promise<void> {
    if ((await ctx.lookup(media.key)) === undefined) this.#media.submit(media);
  }

  #count(result: Awaited<ReturnType<ConnectorContext['capture']>>, input: CaptureInput): void {
    if (result.status === 'duplicate') this.#duplicates++;
    else this.#captured++;
    if (input.sentAt) this.#lastEventAt = new Date(input.sentAt).toISOString();
  }

  // ── helpers ───────────────────────────────────────────────────────────────────────────────

  #me(): WhatsAppIdentity {
    const me = this.#auth?.state.creds.me;
    return { id: me?.id ?? '', lid: me?.lid ?? undefined };
  }

  #deps(me: WhatsAppIdentity): MapDependencies {
    const book = this.#book;
    const index = this.#index;
    return {
      me,
      aliases: (jid) => book?.aliases(jid) ?? [],
      title: (chat) => book?.title(chat),
      messageSecret: async (chat, id) => index?.secret(chat, id),
    };
  }

  /** Baileys asks for a message it must re-send (retry receipts). Only own messages are kept; `undefined` on a miss. */
  async #getMessage(key: WAMessageKey): Promise<proto.IMessage | undefined> {
    if (!key.remoteJid || !key.id || !this.#index) return undefined;
    const bytes = await this.#index.content(jidNormalizedUser(key.remoteJid), key.id);
    return bytes ? proto.Message.decode(bytes) : undefined;
  }

  #systemInput(event: string, code?: string, chat?: string): CaptureInput {
    return {
      kind: 'system',
      sentAt: new Date().toISOString(),
      ...(chat ? { conversation: { id: chat, type: chat.endsWith('@g.us') ? 'group' : 'direct' } } : {}),
      system: { event, ...(code ? { fields: { code } } : {}) },
    };
  }

  #groupMetadataInput(group: BaileysEventMap['groups.upsert'][number], receivedAt: number): CaptureInput {
    const participants = (group.participants ?? []).map((p) => ({ id: p.id, ...(p.admin ? { admin: p.admin } : {}) }));
    const json = JSON.stringify({ id: group.id, subject: group.subject, owner: group.owner, creation: group.creation, participants });
    return {
      kind: 'membership',
      key: `group-metadata:${group.id}:${createHash('sha256').update(json).digest('hex')}`,
      sentAt: new Date(receivedAt).toISOString(),
      conversation: { id: group.id, type: 'group', ...(group.subject ? { title: group.subject.slice(0, 200) } : {}) },
      membership: { action: 'join', members: participants.slice(0, 1024).map((p) => ({ id: p.id })), ...(group.subject ? { value: group.subject.slice(0, 1000) } : {}) },
      raw: { bytes: Buffer.from(json, 'utf8'), format: 'whatsapp.GroupMetadata.json' },
    };
  }

  /** Saves learned aliases and titles at most every few seconds (and on stop), not per message. */
  #scheduleBookSave(): void {
    if (this.#bookTimer || this.#stopping) return;
    this.#bookTimer = setTimeout(() => {
      this.#bookTimer = undefined;
      if (this.#ctx && this.#book) this.#track(this.#book.save(this.#ctx.state));
    }, BOOK_SAVE_DELAY_MS);
    this.#bookTimer.unref();
  }

  #track(promise: Promise<unknown> | undefined): void {
    if (!promise) return;
    const tracked = promise.catch((error: unknown) => {
      this.#errors++;
      this.#ctx?.logger.error({ code: OffchannelError.isInstance(error) ? error.code : 'unknown' }, 'state write failed');
    });
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }

  #set(state: ConnectorState, detail?: string): void {
    this.#state = state;
    this.#since = new Date().toISOString();
    this.#detail = detail;
    this.#ctx?.logger.info({ state }, detail ?? state);
  }
}
