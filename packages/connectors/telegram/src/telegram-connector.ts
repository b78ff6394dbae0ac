/**
 * The MTProto user-session connector: one employee's Telegram account, captured through
 * mtcute's updates engine (persisted pts/qts/seq, `updates.getDifference` and
 * `updates.getChannelDifference` on gaps and at start).
 *
 * Order of operations for each update (mtcute dispatches synchronously and then advances its
 * cursor): the handler serializes the TL object at once and queues it; the queue maps it,
 * downloads media, and awaits `ctx.capture` for each record, one update at a time, in arrival
 * order. mtcute persists its cursor through our storage driver, whose `save()` first waits for
 * that queue to drain — so the stored cursor never covers an update that is not durable. If a
 * capture fails, the cursor is frozen (nothing more is saved) and the next start replays from
 * the last durable point; idempotency keys make the replay record each event once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CONNECTOR_SPEC_VERSION, OffchannelError, type CaptureInput, type CaptureResult, type Connector, type ConnectorContext, type ConnectorState, type ConnectorStatus, type SourceInfo } from '@offchannel/core';
import { getMarkedPeerId, type RawUpdateInfo, type RpcCallMiddleware, type tl } from '@mtcute/core';
import type { BaseTelegramClient } from '@mtcute/core/client.js';
import { downloadAsBuffer } from '@mtcute/core/methods.js';
import { isTlRpcError } from '@mtcute/core/utils.js';
import { errorCode } from './error-code.ts';
import { createTelegramBusinessConnector, type TelegramBusinessHandle, type TelegramBusinessOptions } from './business/business-connector.ts';
import { clientOptions, defaultClientFactory, type TelegramClientFactory } from './client-factory.ts';
import { captureAttachment, type MediaDownloader } from './media.ts';
import { MessageIndex } from './message-index.ts';
import { runReconcile, type ReconcileHost, type ReconcileTelegramOptions, type ReconcileTelegramReport } from './reconcile-telegram.ts';
import { contentFingerprint, conversationOf, gapInput, mapTelegramUpdate, mediaOf, reactionSet, unsupportedUpdate } from './map-telegram.ts';
import { SessionLease } from './session-lease.ts';
import { StateStoreStorage, hasTelegramSession, storedApiHash } from './state-storage.ts';
import { MTCUTE_JSON_FORMAT, TL_LAYER, encodeTl, jsonEvidence } from './tl-evidence.ts';
import { PACKAGE_NAME, PACKAGE_VERSION, UPSTREAM } from './version.ts';

/** RPC errors that mean the session is gone and the employee must link again. */
const SESSION_ENDED = new Set(['AUTH_KEY_UNREGISTERED', 'AUTH_KEY_INVALID', 'SESSION_REVOKED', 'SESSION_EXPIRED', 'USER_DEACTIVATED', 'USER_DEACTIVATED_BAN', 'AUTH_KEY_DUPLICATED', 'AUTH_KEY_PERM_EMPTY']);

export interface TelegramConnectorOptions {
  /** Which route: the MTProto user session (this, the default) or `business` (see `createTelegramBusinessConnector`). */
  readonly route?: 'mtproto';
  /** The custodian's account name (the stream is `telegram:<account>`). */
  readonly account: string;
  /** Telegram API id and hash from my.telegram.org, registered to the firm. */
  readonly apiId: number;
  /** Omitted: the one `linkTelegram({ storeApiHash: true })` kept in the account's encrypted state. */
  readonly apiHash?: string;
  /** Use Telegram's test DCs. */
  readonly testMode?: boolean;
  /** Largest media file downloaded, in bytes (default 256 MiB); larger ones are recorded as unavailable. */
  readonly maxMediaBytes?: number;
  /** Messages remembered for deletes, edits and reactions (default 200,000). */
  readonly indexCapacity?: number;
  /** Longest flood wait slept through, in ms (default 60 s). */
  readonly maxFloodWaitMs?: number;
  /** How long a session lease lives without renewal, in ms (default 60 s). */
  readonly leaseTtlMs?: number;
  /** Seam: builds the mtcute client (the offline harness answers RPCs locally). */
  readonly clientFactory?: TelegramClientFactory;
  /** Seam: downloads a media file (default: mtcute's `downloadAsBuffer`). */
  readonly downloadMedia?: MediaDownloader;
  /**
   * Reconcile while running: every `everyMs` (the config file allows a minute at least), compare the `dialogs` most
   * recent chats' last `limit` messages with the archive (see `reconcile-telegram.ts`). Off by
   * default; `offchannel reconcile telegram` runs it once while capture is stopped.
   */
  readonly reconcile?: { readonly everyMs: number; readonly dialogs?: number; readonly limit?: number };
  /** Called after each capture is durable (diagnostics, tests, the demo). Must not throw. */
  readonly onCapture?: (input: CaptureInput, result: CaptureResult) => void;
}

/**
 * Creates a Telegram connector. By default (or `route: 'mtproto'`) the MTProto user-session
 * connector — the account must have been linked with `linkTelegram`; with `route: 'business'`
 * the Bot API Business webhook receiver. Takes what `parseTelegramConnectorConfig` returns.
 */
export function createTelegramConnector(options: TelegramBusinessOptions & { readonly route: 'business' }): TelegramBusinessHandle;
export function createTelegramConnector(options: TelegramConnectorOptions): TelegramConnectorHandle;
export function createTelegramConnector(options: TelegramConnectorOptions | (TelegramBusinessOptions & { readonly route: 'business' })): TelegramConnectorHandle | TelegramBusinessHandle;
export function createTelegramConnector(options: TelegramConnectorOptions | (TelegramBusinessOptions & { readonly route: 'business' })): TelegramConnectorHandle | TelegramBusinessHandle {
  if (options.route === 'business') return createTelegramBusinessConnector(options);
  return new TelegramConnector(options);
}

/** The connector, plus what operators and tests need beyond the core contract. */
export interface TelegramConnectorHandle extends Connector {
  /** The running mtcute client (for {@link reconcileTelegram}); `undefined` when stopped. */
  readonly client: BaseTelegramClient | undefined;
  /** Resolves once every update dispatched so far has been captured (or has failed). */
  idle(): Promise<void>;
  /** Compares recent history with the archive and records what is missing. The connector must be running. */
  reconcile(options?: ReconcileTelegramOptions): Promise<ReconcileTelegramReport>;
}

class TelegramConnector implements TelegramConnectorHandle {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'telegram';
  readonly account: string;
  readonly source: SourceInfo = { package: PACKAGE_NAME, version: PACKAGE_VERSION, upstream: UPSTREAM };
  readonly #options: TelegramConnectorOptions;
  #status: ConnectorStatus = { state: 'idle', since: new Date().toISOString(), captured: 0, duplicates: 0, errors: 0 };
  #ctx: ConnectorContext | undefined;
  #client: BaseTelegramClient | undefined;
  #lease: SessionLease | undefined;
  #index = new MessageIndex();
  #selfId = 0;
  #tail: Promise<void> = Promise.resolve();
  readonly #pipeline = new AsyncLocalStorage<true>();
  /** Set when a capture failed: the stored cursor must not advance any more. */
  #frozen: Error | undefined;
  /** Flood waits slept through since start. */
  #floodWaits = 0;
  /** Aborted at stop, so a reconciliation in progress ends between chats instead of holding stop up. */
  #reconciling = new AbortController();
  #reconcileTimer: NodeJS.Timeout | undefined;

  constructor(options: TelegramConnectorOptions) {
    this.#options = options;
    this.account = options.account;
  }

  get client(): BaseTelegramClient | undefined {
    return this.#client;
  }

  status(): ConnectorStatus {
    return this.#status;
  }

  async start(ctx: ConnectorContext): Promise<void> {
    if (this.#status.state === 'running' || this.#status.state === 'starting') throw new OffchannelError('CONNECTOR_RUNNING', 'this Telegram connector is already started; stop it first.');
    this.#ctx = ctx;
    this.#frozen = undefined;
    this.#setState('starting');
    const lease = new SessionLease(ctx.state, this.#options.leaseTtlMs === undefined ? {} : { ttlMs: this.#options.leaseTtlMs });
    try {
      await lease.acquire((error) => {
        // Another process took the account over: stop at once rather than both being revoked.
        this.#setState('failed', OffchannelError.isInstance(error) ? error.code : 'LEASE_LOST');
        void this.stop();
      });
    } catch (error) {
      this.#setState('failed', OffchannelError.isInstance(error) ? error.code : 'lease error');
      throw error;
    }
    this.#lease = lease;
    try {
      if (!(await hasTelegramSession(ctx.state))) {
        throw new OffchannelError('TELEGRAM_NOT_LINKED', `no Telegram session for account "${this.account}"; run \`offchannel link telegram --account ${this.account}\` first.`);
      }
      const apiHash = this.#options.apiHash ?? (await storedApiHash(ctx.state));
      if (apiHash === undefined) {
        throw new OffchannelError('TELEGRAM_API_HASH_MISSING', `no api_hash for account "${this.account}": set apiHashFile or apiHashEnv in its config entry, or run \`offchannel link telegram --account ${this.account} --replace\`, which keeps it encrypted in the state store.`);
      }
      this.#index = await MessageIndex.load(ctx.state, this.#options.indexCapacity);
      const storage = new StateStoreStorage(ctx.state, { beforeSave: () => this.#barrier() });
      const client = (this.#options.clientFactory ?? defaultClientFactory)(
        clientOptions({
          apiId: this.#options.apiId,
          apiHash,
          storage,
          logger: ctx.logger,
          testMode: this.#options.testMode === true,
          ...(this.#options.maxFloodWaitMs === undefined ? {} : { maxFloodWaitMs: this.#options.maxFloodWaitMs }),
          onFloodWait: (method, seconds) => {
            this.#floodWaits++;
            this.#status = { ...this.#status, detail: `flood wait: ${method} retried after ${seconds} s (flood waits so far: ${this.#floodWaits})` };
            ctx.logger.warn({ method, seconds }, 'flood wait: sleeping before retrying');
          },
          observe: [this.#observer()],
          updates: {
            catchUp: true,
            onChannelTooLong: (channelId) => {
              this.#onChannelTooLong(channelId);
            },
          },
        }),
      );
      this.#client = client;
      client.onRawUpdate.add((info) => {
        this.#enqueue(info);
      });
      client.onError.add((error) => {
        this.#onClientError(error);
      });
      client.onConnectionState.add((state) => {
        this.#onConnectionState(state);
      });
      await client.prepare();
      const self = await client.storage.self.fetch();
      if (!self) throw new OffchannelError('TELEGRAM_NOT_LINKED', `the Telegram session for "${this.account}" has no user; link the account again.`);
      this.#selfId = self.userId;
      await client.startUpdatesLoop();
      // Catch-up runs in the background; a session error it meets may already have set the state.
      if ((this.#status.state as ConnectorState) === 'starting') this.#setState('running', `catching up from the stored update state (layer ${TL_LAYER})`);
      this.#reconciling = new AbortController();
      this.#scheduleReconcile();
    } catch (error) {
      await this.#teardown();
      if ((this.#status.state as ConnectorState) === 'starting') this.#setState('failed', OffchannelError.isInstance(error) ? error.code : 'start failed');
      throw error;
    }
  }

  async stop(): Promise<void> {
    if (this.#status.state === 'idle' || this.#status.state === 'stopped' || this.#status.state === 'stopping') return;
    const ended = this.#status.state;
    this.#setState('stopping');
    await this.#teardown();
    this.#setState(ended === 'logged-out' || ended === 'failed' ? ended : 'stopped', this.#status.detail);
  }

  /**
   * Compares recent history with the archive and records what is missing (see
   * `reconcile-telegram.ts`). Runs in the capture queue, after everything dispatched so far.
   */
  async reconcile(options: ReconcileTelegramOptions = {}): Promise<ReconcileTelegramReport> {
    const host = this.#host();
    // While reconnecting, mtcute holds the calls until the connection is back.
    if (!host || (this.#status.state !== 'running' && this.#status.state !== 'reconnecting')) throw new OffchannelError('TELEGRAM_NOT_RUNNING', 'start the Telegram connector before reconciling.');
    const signal = options.signal ? AbortSignal.any([options.signal, this.#reconciling.signal]) : this.#reconciling.signal;
    return runReconcile(host, { ...options, signal });
  }

  /** The periodic reconciliation of `options.reconcile`; one run at a time, counts logged. */
  #scheduleReconcile(): void {
    const every = this.#options.reconcile;
    if (!every) return;
    let running = false;
    this.#reconcileTimer = setInterval(() => {
      if (running || this.#status.state !== 'running') return;
      running = true;
      const { dialogs, limit } = every;
      this.reconcile({ ...(dialogs === undefined ? {} : { dialogs }), ...(limit === undefined ? {} : { limit }) })
        .then(
          ({ skipped, ...counts }) => this.#ctx?.logger.info({ ...counts, skipped: skipped.length }, 'scheduled reconciliation done'),
          (error: unknown) => this.#ctx?.logger.warn({ code: errorCode(error) }, 'scheduled reconciliation failed; it runs again at the next interval'),
        )
        .finally(() => {
          running = false;
        });
    }, every.everyMs);
    this.#reconcileTimer.unref();
  }

  #host(): ReconcileHost | undefined {
    const client = this.#client;
    const ctx = this.#ctx;
    if (!client || !ctx) return undefined;
    return { client, ctx, index: this.#index, encode: encodeTl, queue: (task) => this.#schedule(task), handle: (update, peers, raw, source) => this.#handle(update, peers, raw, new Date(), source) };
  }

  /** Waits until every update dispatched so far has been captured (or failed). */
  async idle(): Promise<void> {
    let tail: Promise<void>;
    do {
      tail = this.#tail;
      await tail;
    } while (tail !== this.#tail);
  }

  async #teardown(): Promise<void> {
    clearInterval(this.#reconcileTimer);
    this.#reconcileTimer = undefined;
    this.#reconciling.abort();
    const client = this.#client;
    if (client) {
      await client.stopUpdatesLoop().catch(() => undefined);
      // Captures still queued finish with the client connected: a media download must not fail
      // (and be recorded as unavailable, for good) just because the connector is stopping.
      await this.idle();
      this.#client = undefined;
      try {
        await client.destroy(); // saves storage through the barrier, then disconnects
      } catch (error) {
        this.#ctx?.logger.warn({ code: errorCode(error) }, 'telegram client did not close cleanly; the stored cursor stays at the last durable point');
      }
    }
    await this.#lease?.release().catch(() => undefined);
    this.#lease = undefined;
  }

  /**
   * The storage driver's save barrier: the captures queued when the save began are done and the
   * index persisted, or `false` (nothing is saved). mtcute dispatches updates synchronously and
   * then saves, so the queue at that moment holds every update the cursor covers; tasks queued
   * later (the next chat of a reconciliation) are not waited for, so live updates are held up
   * by at most the chat being checked. A save triggered from inside the capture queue itself
   * (an RPC made while reconciling or downloading caches peers and saves) is skipped: waiting
   * would deadlock, and mtcute's cursor may already cover updates still queued behind the
   * running task. Skipped changes stay pending and are written by the next regular save.
   */
  async #barrier(): Promise<boolean> {
    if (this.#pipeline.getStore() === true) return false;
    await this.#tail;
    if (this.#frozen) return false;
    const ctx = this.#ctx;
    if (ctx) await this.#index.persist(ctx.state);
    return true;
  }

  #enqueue(info: RawUpdateInfo): void {
    const receivedAt = new Date();
    let raw: Uint8Array;
    try {
      // Serialized now, in mtcute's dispatch tick, before anything can mutate the object.
      raw = encodeTl(info.update);
    } catch {
      // Not expressible in this TL layer (should not happen for objects mtcute parsed): keep a
      // JSON rendering as evidence instead of losing the update.
      this.#enqueueInput({ kind: 'unsupported', key: `unserializable:${receivedAt.getTime()}:${info.update._}`, problem: { reason: 'unserializable-update', detail: `constructor ${info.update._}` }, raw: { bytes: jsonEvidence(info.update), format: MTCUTE_JSON_FORMAT } });
      return;
    }
    void this.#schedule(() => this.#handle(info.update, info.peers, raw, receivedAt)).catch(() => undefined);
  }

  /**
   * Maps and captures one update; resolves to the number of new records. Never rejects:
   * failures are counted and freeze the cursor.
   */
  async #handle(update: tl.TypeUpdate, peers: RawUpdateInfo['peers'], raw: Uint8Array, receivedAt: Date, source?: string): Promise<number> {
    const ctx = this.#ctx;
    if (!ctx) return 0;
    let inputs: CaptureInput[];
    const memory = this.#index.memoryFor(update);
    const message = 'message' in update && typeof update.message === 'object' && update.message !== null && '_' in update.message ? (update.message as tl.TypeMessage) : undefined;
    try {
      const attachments = [];
      const media = message ? mediaOf(message) : undefined;
      const unchanged = message?._ === 'message' && memory.get(message.id)?.fingerprint === contentFingerprint(message);
      if (media && !unchanged) attachments.push(await captureAttachment(media, this.#downloader(), this.#options.maxMediaBytes, ctx));
      inputs = mapTelegramUpdate(update, { selfId: this.#selfId, peers, raw, attachments, memory, receivedAt, ...(source ? { source } : {}), ...('pts' in update && typeof update.pts === 'number' && update.pts > 0 ? { pts: update.pts } : {}) });
    } catch (error) {
      ctx.logger.warn({ update: update._, code: errorCode(error) }, 'update could not be mapped; recording it as unsupported');
      inputs = [unsupportedUpdate(raw, 'mapping-failed', `${update._}: ${errorCode(error)}`)];
    }
    let recorded = 0;
    for (const input of inputs) {
      const result = await this.#capture(input);
      if (!result) return recorded;
      if (result.status === 'recorded') recorded++;
    }
    if (message && message._ !== 'messageEmpty') this.#remember(message, peers);
    else if (update._ === 'updateMessageReactions') {
      const known = memory.get(update.msgId);
      if (known) this.#index.set(update.msgId, { ...known, reactions: [...reactionSet(update.reactions, this.#selfId).keys()] });
    }
    return recorded;
  }

  #remember(message: tl.RawMessage | tl.RawMessageService, peers: RawUpdateInfo['peers']): void {
    const conversation = conversationOf(message.peerId, peers, message.post === true);
    this.#index.set(message.id, {
      peer: conversation.id,
      type: conversation.type,
      direction: message.out === true ? 'outbound' : 'inbound',
      fingerprint: message._ === 'message' ? contentFingerprint(message) : 'service',
      reactions: [...reactionSet(message.reactions, this.#selfId).keys()],
    });
  }

  /** Captures one input; `undefined` when the archive failed (the cursor is then frozen). */
  async #capture(input: CaptureInput): Promise<CaptureResult | undefined> {
    const ctx = this.#ctx;
    if (!ctx) return undefined;
    try {
      const result = await ctx.capture(input);
      const sentAt = input.sentAt instanceof Date ? input.sentAt.toISOString() : input.sentAt;
      this.#status = {
        ...this.#status,
        ...(result.status === 'recorded' ? { captured: this.#status.captured + 1 } : { duplicates: this.#status.duplicates + 1 }),
        ...(sentAt ? { lastEventAt: sentAt } : {}),
      };
      try {
        this.#options.onCapture?.(input, result);
      } catch {
        // a diagnostics hook never affects capture
      }
      return result;
    } catch (error) {
      this.#frozen ??= error instanceof Error ? error : new Error(String(error));
      this.#status = { ...this.#status, errors: this.#status.errors + 1, detail: `capture failed (${errorCode(error)}); update state frozen at the last durable point, restart to replay` };
      ctx.logger.error({ code: errorCode(error), kind: input.kind }, 'capture failed; the update will be replayed from the stored state on restart');
      return undefined;
    }
  }

  /** Watches RPC results for what mtcute handles silently: lost differences, ended sessions. */
  #observer(): RpcCallMiddleware {
    return async (mctx, next) => {
      const result = await next(mctx);
      const request = mctx.request;
      if (isTlRpcError(result)) {
        if (SESSION_ENDED.has(result.errorMessage)) this.#sessionEnded(result.errorMessage);
        return result;
      }
      const kind = typeof result === 'object' && result !== null ? (result as { _?: unknown })._ : undefined;
      if (request._ === 'updates.getDifference' && kind === 'updates.differenceTooLong') {
        const to = (result as tl.updates.RawDifferenceTooLong).pts;
        this.#enqueueInput(gapInput('common', 'difference-too-long', request.pts, to));
      } else if (request._ === 'updates.getChannelDifference' && kind === 'updates.channelDifferenceTooLong' && request.channel._ === 'inputChannel') {
        const diff = result as tl.updates.RawChannelDifferenceTooLong;
        const peer: tl.TypePeer = { _: 'peerChannel', channelId: request.channel.channelId };
        const to = diff.dialog._ === 'dialog' ? diff.dialog.pts : undefined;
        const conversation = conversationOf(peer, { users: new Map(), chats: new Map(diff.chats.map((chat) => [chat.id, chat])) }, false);
        this.#enqueueInput(gapInput(conversation.id, 'channel-too-long', request.pts, to, { conversation }));
      }
      return result;
    };
  }

  #onChannelTooLong(channelId: number): void {
    // The gap itself was recorded by the RPC observer; backfill what the history still holds.
    const marked = String(getMarkedPeerId(channelId, 'channel'));
    const host = this.#host();
    if (!host) return;
    // Queued at once, right behind the gap record (runReconcile queues the chat synchronously).
    const backfill = runReconcile(host, { chats: [marked], signal: this.#reconciling.signal }).then((report) => {
      this.#ctx?.logger.info({ chat: marked, recorded: report.missingRecorded }, 'channel backfilled from history after channelDifferenceTooLong');
    });
    backfill.catch((error: unknown) => {
      this.#ctx?.logger.warn({ chat: marked, code: errorCode(error) }, 'channel backfill failed; run reconcile later');
    });
  }

  #enqueueInput(input: CaptureInput): void {
    void this.#schedule(() => this.#capture(input)).catch(() => undefined);
  }

  /**
   * Appends a task to the capture queue. Tasks run one at a time in order, marked so that a
   * storage save they trigger does not wait for the queue (itself). The queue itself never
   * rejects: a failing task is logged and the next one still runs; the caller gets the result.
   */
  #schedule<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => this.#pipeline.run(true, task));
    this.#tail = run.then(
      () => undefined,
      (error: unknown) => {
        this.#ctx?.logger.error({ code: errorCode(error) }, 'capture queue task failed');
      },
    );
    return run;
  }

  #sessionEnded(code: string): void {
    if (this.#status.state === 'logged-out') return;
    this.#enqueueInput({ kind: 'system', key: `session-ended:${code}:${Date.now()}`, system: { event: 'logged-out', fields: { code } } });
    this.#setState('logged-out', `Telegram ended the session (${code}); link the account again`);
    this.#client?.stopUpdatesLoop().catch(() => undefined);
  }

  #onClientError(error: Error): void {
    const code = errorCode(error);
    this.#ctx?.logger.warn({ code }, 'telegram client error');
    if (SESSION_ENDED.has(code)) this.#sessionEnded(code);
    else if (this.#status.state === 'running' || this.#status.state === 'reconnecting') this.#status = { ...this.#status, detail: `Telegram client error ${code}; mtcute retries` };
  }

  #onConnectionState(state: string): void {
    const current = this.#status.state;
    if ((state === 'offline' || state === 'connecting') && current === 'running') this.#setState('reconnecting', `connection ${state}`);
    else if ((state === 'connected' || state === 'updating') && current === 'reconnecting') this.#setState('running', state === 'updating' ? 'catching up after reconnecting' : 'connected');
    else if (current === 'running') this.#status = { ...this.#status, detail: state === 'updating' ? 'catching up (getDifference)' : 'connected and up to date' };
  }

  #downloader(): MediaDownloader {
    if (this.#options.downloadMedia) return this.#options.downloadMedia;
    return async (media, signal) => {
      const client = this.#client;
      if (!client) throw new OffchannelError('CONNECTOR_STOPPED', 'connector stopped');
      return downloadAsBuffer(client, media.location, { dcId: media.dcId, ...(media.size ? { fileSize: media.size } : {}), abortSignal: signal });
    };
  }

  #setState(state: ConnectorState, detail?: string): void {
    const floods = this.#floodWaits > 0 ? ` (flood waits so far: ${this.#floodWaits})` : '';
    this.#status = { ...this.#status, state, since: new Date().toISOString(), ...(detail === undefined ? {} : { detail: `${detail}${floods}` }) };
    if (detail === undefined) {
      const { detail: _dropped, ...rest } = this.#status;
      this.#status = rest;
    }
  }
}
