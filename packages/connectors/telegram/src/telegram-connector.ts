/**
 * The MTProto user-session connector: one employee's Telegram account, captured through
 * mtcute's updates engine (persisted pts/qts/seq, `updates.getDifference` and
 * `updates.getChannelDifference` on gaps and at start), on core's connector runtime.
 *
 * This file is the event source. mtcute dispatches each update synchronously and then advances
 * its cursor; the handler serializes the TL object at once and delivers it to the runtime, which
 * maps updates in order (media downloaded first, then the pure mapping in `map-telegram.ts`) and
 * issues their captures pipelined. **Acknowledging is letting the cursor be saved:** mtcute
 * persists its cursor through our storage driver, whose `save()` first waits until every update
 * delivered so far has been acknowledged by the runtime (its records durable). If the runtime
 * abandons updates (stopped during an archive outage, or a fatal archive error), nothing is saved
 * any more and the next start replays from the last durable point; idempotency keys make the
 * replay record each event once. The message index (edits, deletes, reactions) follows the same
 * rule: staged when an update is mapped, committed when it is acknowledged, persisted only then.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { OffchannelError, createConnectorRuntime, type CaptureInput, type CaptureResult, type Connector, type ConnectorContext, type ConnectorEvent, type ConnectorRuntime, type ConnectorStatus, type EventSourceIo, type SourceInfo } from '@offchannel/core';
import { getMarkedPeerId, type RawUpdateInfo, type RpcCallMiddleware, type tl } from '@mtcute/core';
import type { BaseTelegramClient } from '@mtcute/core/client.js';
import { downloadAsBuffer } from '@mtcute/core/methods.js';
import { isTlRpcError } from '@mtcute/core/utils.js';
import { errorCode } from './error-code.ts';
import { createTelegramBusinessConnector, type TelegramBusinessHandle, type TelegramBusinessOptions } from './business/business-connector.ts';
import { clientOptions, defaultClientFactory, type TelegramClientFactory } from './client-factory.ts';
import { captureAttachment, type MediaDownloader } from './media.ts';
import { MessageIndex } from './message-index.ts';
import { runReconcile, type ReconcileHost, type ReconcileRecord, type ReconcileTelegramOptions, type ReconcileTelegramReport } from './reconcile-telegram.ts';
import {
  contentFingerprint,
  conversationOf,
  gapBackfilledInput,
  gapInput,
  mapTelegramUpdate,
  mediaOf,
  memoryAfter,
  ptsOf,
  sessionEndedInput,
  sessionInput,
  unsupportedUpdate,
  updateEvidence,
  type MessageMemory,
  type PeerLookup,
} from './map-telegram.ts';
import { SessionLease } from './session-lease.ts';
import { UpdateStreamWatch } from './update-stream-watch.ts';
import { StateStoreStorage, hasTelegramSession, storedApiHash } from './state-storage.ts';
import { MTCUTE_JSON_FORMAT, TL_RAW_FORMAT, encodeTl, jsonEvidence } from './tl-evidence.ts';
import { PACKAGE_NAME, PACKAGE_VERSION, UPSTREAM } from './version.ts';

/**
 * RPC errors that mean the session is gone and the employee must link again, and the
 * transition each is reported as: banned by Telegram, replaced (the key was used from two
 * places at once), or logged out (revoked from another device, expired, deleted).
 */
const SESSION_ENDED: ReadonlyMap<string, 'logged-out' | 'banned' | 'replaced'> = new Map([
  ['AUTH_KEY_UNREGISTERED', 'logged-out'],
  ['AUTH_KEY_INVALID', 'logged-out'],
  ['SESSION_REVOKED', 'logged-out'],
  ['SESSION_EXPIRED', 'logged-out'],
  ['AUTH_KEY_PERM_EMPTY', 'logged-out'],
  ['USER_DEACTIVATED', 'logged-out'],
  ['USER_DEACTIVATED_BAN', 'banned'],
  ['AUTH_KEY_DUPLICATED', 'replaced'],
]);

/** Longest wait in start for the catch-up's first answer to be recorded. */
const START_CATCH_UP_MS = 30_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

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
  /** Backoff while the archive is unavailable (nothing acknowledged meanwhile), ms. Default 1 s doubling to 5 min. */
  readonly retry?: { readonly minMs?: number; readonly maxMs?: number };
  /** Most updates mapped but not yet durable (the runtime's pipelining window). Default 256. */
  readonly maxInFlight?: number;
  /**
   * Updates that silently stop: after `quietMs` (default 20 min) with no update and no
   * difference answered, call `updates.getState`; if the server's pts is ahead of the engine's,
   * record `updates-behind` and force a getDifference; if the probe fails, record
   * `updates-probe-failed`. Checked every `checkEveryMs` (default 1 min).
   */
  readonly liveness?: { readonly quietMs?: number; readonly checkEveryMs?: number };
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
  /** Resolves once every update delivered so far has been acknowledged (durable) or abandoned. */
  idle(): Promise<void>;
  /** Compares recent history with the archive and records what is missing. The connector must be running. */
  reconcile(options?: ReconcileTelegramOptions): Promise<ReconcileTelegramReport>;
}


/** One thing for the runtime to map, in delivery order; `n` numbers deliveries (1, 2, 3…). */
type TelegramEvent = UpdateEvent | InputEvent | TaskEvent;

/** A live (or reconciled) update: `raw` is its TL bytes. */
interface UpdateEvent extends ConnectorEvent {
  readonly type: 'update';
  readonly n: number;
  readonly update: tl.TypeUpdate;
  readonly peers: PeerLookup;
  readonly receivedAt: Date;
  /** Set by the mapping: what is left to do once the event is durable. */
  pending?: Pending;
}

/** A record built outside an update: gaps and session events seen in RPC results. */
interface InputEvent extends ConnectorEvent {
  readonly type: 'input';
  readonly n: number;
  readonly input: CaptureInput;
}

/** A reconciliation step: runs in the pipeline and maps what it finds there. */
interface TaskEvent extends ConnectorEvent {
  readonly type: 'task';
  readonly n: number;
  readonly run: (record: ReconcileRecord) => Promise<unknown>;
  readonly settle: (outcome: { value?: unknown; error?: unknown; recorded: number[] }) => void;
  /** Set by the mapping: what is left to do once the event is durable. */
  pending?: Pending;
}

/** What one event's mapping left to do once it is durable. */
interface Pending {
  /** Index entries to commit. */
  readonly remember: [number, MessageMemory][];
  /** Task events: per `record` call, its inputs (to count what was newly recorded). */
  readonly groups?: CaptureInput[][];
  value?: unknown;
  error?: unknown;
}

const TASK_FORMAT = 'offchannel.telegram-task';

class TelegramConnector implements TelegramConnectorHandle {
  readonly channel = 'telegram';
  readonly account: string;
  readonly source: SourceInfo = { package: PACKAGE_NAME, version: PACKAGE_VERSION, upstream: UPSTREAM };
  readonly specVersion: Connector['specVersion'];
  readonly #options: TelegramConnectorOptions;
  readonly #runtime: ConnectorRuntime<TelegramEvent>;
  #io: EventSourceIo<TelegramEvent> | undefined;
  #client: BaseTelegramClient | undefined;
  #lease: SessionLease | undefined;
  #index = new MessageIndex();
  #selfId = 0;
  readonly #pipeline = new AsyncLocalStorage<true>();
  /** Results of the captures of reconciliation steps (task counting), by input; only theirs are kept. */
  readonly #results = new WeakMap<CaptureInput, CaptureResult>();
  readonly #counted = new WeakSet<CaptureInput>();
  /** Deliveries so far, and the last one acknowledged. */
  #delivered = 0;
  #acknowledged = 0;
  /** Set once the runtime abandoned an update: the stored cursor must not advance any more. */
  #frozen = false;
  #closed = false;
  #waiters: { readonly n: number; readonly resolve: (ok: boolean) => void }[] = [];
  #floodWaits = 0;
  #floodNote: string | undefined;
  #connected: boolean | undefined;
  #sessionEnded = false;
  /** An update reached us after delivery closed: the stored cursor must not advance past it. */
  #dropped = false;
  /** Completeness signals (catch-up, frozen, liveness); one per open. */
  #watch: UpdateStreamWatch | undefined;
  /** Gap record key per channel, for the backfill record that follows it. */
  readonly #channelGaps = new Map<number, string>();
  /** Aborted at stop, so a reconciliation in progress ends between chats instead of holding stop up. */
  #reconciling = new AbortController();
  #reconcileTimer: NodeJS.Timeout | undefined;

  constructor(options: TelegramConnectorOptions) {
    this.#options = options;
    this.account = options.account;
    this.#runtime = createConnectorRuntime<TelegramEvent>({
      channel: this.channel,
      account: this.account,
      source: this.source,
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
      events: {
        open: (io) => this.#open(io),
        acknowledge: async (events) => {
          this.#acknowledge(events);
        },
        abandon: async (events) => {
          this.#abandon(events);
        },
        close: () => this.#close(),
      },
      map: (event) => this.#pipeline.run(true, () => this.#map(event)),
    });
    this.specVersion = this.#runtime.specVersion;
  }

  get client(): BaseTelegramClient | undefined {
    return this.#client;
  }

  start(ctx: ConnectorContext): Promise<void> {
    return this.#runtime.start(this.#observed(ctx));
  }

  stop(): Promise<void> {
    // A reconciliation step in the pipeline ends between messages; what it found is still captured.
    this.#reconciling.abort();
    return this.#runtime.stop();
  }

  status(): ConnectorStatus {
    const status = this.#runtime.status();
    const quiet = status.detail === undefined || status.detail === 'connected';
    return this.#floodNote !== undefined && status.state === 'running' && quiet ? { ...status, detail: this.#floodNote } : status;
  }

  /** Waits until every update delivered so far has been acknowledged or abandoned. */
  async idle(): Promise<void> {
    await this.#settled(this.#delivered);
  }

  /**
   * Compares recent history with the archive and records what is missing (see
   * `reconcile-telegram.ts`). Each chat is one step in the capture pipeline.
   */
  async reconcile(options: ReconcileTelegramOptions = {}): Promise<ReconcileTelegramReport> {
    const host = this.#host();
    const state = this.#runtime.status().state;
    // While reconnecting, mtcute holds the calls until the connection is back.
    if (!host || (state !== 'running' && state !== 'reconnecting')) throw new OffchannelError('TELEGRAM_NOT_RUNNING', 'start the Telegram connector before reconciling.');
    const signals = [this.#reconciling.signal, host.ctx.signal, ...(options.signal ? [options.signal] : [])];
    const signal = AbortSignal.any(signals);
    return runReconcile(host, { ...options, signal });
  }

  /** The context the runtime captures through: the same, plus the `onCapture` hook and result tracking. */
  #observed(ctx: ConnectorContext): ConnectorContext {
    const onCapture = this.#options.onCapture;
    const transition = ctx.transition?.bind(ctx);
    return {
      stream: ctx.stream,
      channel: ctx.channel,
      account: ctx.account,
      state: ctx.state,
      logger: ctx.logger,
      signal: ctx.signal,
      putBlob: (bytes) => ctx.putBlob(bytes),
      lookup: (key) => ctx.lookup(key),
      ...(transition === undefined ? {} : { transition }),
      capture: async (input) => {
        const result = await ctx.capture(input);
        if (this.#counted.has(input)) this.#results.set(input, result);
        try {
          onCapture?.(input, result);
        } catch {
          // a diagnostics hook never affects capture
        }
        return result;
      },
    };
  }

  async #open(io: EventSourceIo<TelegramEvent>): Promise<void> {
    const { ctx } = io;
    this.#io = io;
    this.#closed = false;
    const watch = new UpdateStreamWatch({
      ctx,
      client: () => this.#client,
      running: () => !this.#closed && this.#runtime.status().state === 'running',
      ...(this.#options.liveness?.quietMs === undefined ? {} : { quietMs: this.#options.liveness.quietMs }),
      ...(this.#options.liveness?.checkEveryMs === undefined ? {} : { checkEveryMs: this.#options.liveness.checkEveryMs }),
    });
    this.#watch = watch;
    const lease = new SessionLease(ctx.state, this.#options.leaseTtlMs === undefined ? {} : { ttlMs: this.#options.leaseTtlMs });
    await lease.acquire((error) => {
      // Another process took the account over: stop at once rather than both being revoked.
      io.transition('replaced', errorCode(error));
      void this.stop();
    });
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
      // overlap: mtcute fetches the next difference slice while the last one's captures finish.
      const storage = new StateStoreStorage(ctx.state, { beforeSave: () => this.#barrier(), overlap: true });
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
            this.#floodNote = `flood wait: ${method} retried after ${seconds} s (flood waits so far: ${this.#floodWaits})`;
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
        this.#onUpdate(info);
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
      // The mapping's one piece of account context, recorded once per stream (duplicate after),
      // before any update can be delivered.
      await ctx.capture(sessionInput(self.userId));
      await client.startUpdatesLoop(); // catch-up (getDifference from the stored pts) runs in the background
      // Catch-up runs in the background; start resolves once its first answer is recorded
      // (what it recovered is captured meanwhile), or after START_CATCH_UP_MS at most.
      await Promise.race([watch.started, sleep(START_CATCH_UP_MS)]);
      this.#connected = true;
      if (!this.#sessionEnded) io.transition('connected');
      this.#reconciling = new AbortController();
      this.#scheduleReconcile();
      watch.watch();
    } catch (error) {
      await this.#close();
      throw error;
    }
  }

  /** Rule 6: stops delivery and disconnects. The runtime has settled everything in flight. */
  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#reconcileTimer);
    this.#reconcileTimer = undefined;
    this.#reconciling.abort();
    const watched = this.#watch?.close(); // no more probes or retries; signals in progress settle
    this.#wakeWaiters();
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      await client.stopUpdatesLoop().catch(() => undefined);
      try {
        await client.destroy(); // saves storage through the barrier, then disconnects
      } catch (error) {
        this.#io?.ctx.logger.warn({ code: errorCode(error) }, 'telegram client did not close cleanly; the stored cursor stays at the last durable point');
      }
    }
    await watched;
    await this.#lease?.release().catch(() => undefined);
    this.#lease = undefined;
  }

  /** Rule 2: these events are durable. Their index entries may be persisted, the cursor saved. */
  #acknowledge(events: readonly TelegramEvent[]): void {
    for (const event of events) {
      const pending = event.type === 'input' ? undefined : event.pending;
      for (const [id, memory] of pending?.remember ?? []) this.#index.commit(id, memory);
      if (event.type === 'task') {
        const recorded = (pending?.groups ?? []).map((inputs) => inputs.filter((input) => this.#results.get(input)?.status === 'recorded').length);
        event.settle({ value: pending?.value, error: pending?.error, recorded });
      }
      this.#acknowledged = Math.max(this.#acknowledged, event.n);
    }
    this.#wakeWaiters();
  }

  /** Rule 3: these (and everything after them) will not be acknowledged: freeze the cursor. */
  #abandon(events: readonly TelegramEvent[]): void {
    this.#frozen = true;
    this.#index.discardStaged();
    for (const event of events) if (event.type === 'task') event.settle({ error: new OffchannelError('CONNECTOR_STOPPED', 'the connector stopped before this reconciliation step was durable; run it again.'), recorded: [] });
    this.#io?.ctx.logger.warn({ count: events.length }, 'updates abandoned; the stored update state stays at the last durable point and they are fetched again on the next start');
    this.#wakeWaiters();
  }

  /**
   * The storage driver's save barrier: every update delivered when the save began is durable
   * (then the committed index is persisted too), or `false` (nothing is saved). A save
   * triggered from inside the pipeline itself (an RPC made while downloading or reconciling) is
   * skipped at once (`false`, not a promise): waiting would deadlock; its changes are written by
   * the next regular save.
   */
  #barrier(): Promise<boolean> | false {
    if (this.#pipeline.getStore() === true) return false;
    return this.#settled(this.#delivered).then(async (durable) => {
      const ctx = this.#io?.ctx;
      if (durable && ctx) await this.#index.persist(ctx.state);
      return durable;
    });
  }

  /** True once delivery `n` is acknowledged; false if it never will be (abandoned, or closed first). */
  #settled(n: number): Promise<boolean> {
    const now = this.#verdict(n);
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  #verdict(n: number): boolean | undefined {
    if (this.#frozen || this.#dropped) return false;
    if (this.#acknowledged >= n) return true;
    return this.#closed ? false : undefined;
  }

  #wakeWaiters(): void {
    this.#waiters = this.#waiters.filter((waiter) => {
      const verdict = this.#verdict(waiter.n);
      if (verdict !== undefined) waiter.resolve(verdict);
      return verdict === undefined;
    });
  }

  /** Rule 1: queue an event in platform order. */
  #deliver(event: Omit<UpdateEvent, 'n'> | Omit<InputEvent, 'n'> | Omit<TaskEvent, 'n'>): void {
    const io = this.#io;
    if (!io || this.#closed) {
      // mtcute dispatched it after we stopped taking updates: never save a cursor covering it.
      this.#dropped = true;
      return;
    }
    this.#delivered++;
    io.deliver({ ...event, n: this.#delivered });
  }

  #onUpdate(info: RawUpdateInfo): void {
    const receivedAt = new Date();
    this.#watch?.updateSeen();
    let raw: Uint8Array;
    try {
      // Serialized now, in mtcute's dispatch tick, before anything can mutate the object.
      raw = updateEvidence(info.update, info.peers, this.#selfId);
    } catch {
      // Not expressible in this TL layer (should not happen for objects mtcute parsed): keep a
      // JSON rendering as evidence instead of losing the update.
      const bytes = jsonEvidence(info.update);
      this.#deliverInput({ kind: 'unsupported', key: `unserializable:${receivedAt.getTime()}:${info.update._}`, problem: { reason: 'unserializable-update', detail: `constructor ${info.update._}` }, raw: { bytes, format: MTCUTE_JSON_FORMAT } });
      return;
    }
    this.#deliver({ type: 'update', raw, format: TL_RAW_FORMAT, update: info.update, peers: info.peers, receivedAt });
  }

  #deliverInput(input: CaptureInput): void {
    const raw = input.raw && 'bytes' in input.raw ? input.raw.bytes : new TextEncoder().encode(input.key ?? input.kind);
    this.#deliver({ type: 'input', raw, format: input.raw?.format ?? TASK_FORMAT, input });
  }

  /** The runtime's mapper (runs in the pipeline, one event at a time, in order). */
  async #map(event: TelegramEvent): Promise<readonly CaptureInput[]> {
    switch (event.type) {
      case 'input':
        return [event.input];
      case 'update': {
        const remember: [number, MessageMemory][] = [];
        event.pending = { remember };
        return this.#mapUpdate(event.update, event.peers, event.raw, event.receivedAt, undefined, remember);
      }
      case 'task': {
        const pending: Pending = { remember: [], groups: [] };
        event.pending = pending;
        const record: ReconcileRecord = async (update, peers, raw, source) => {
          const inputs = await this.#mapUpdate(update, peers, raw, new Date(), source, pending.remember);
          for (const input of inputs) this.#counted.add(input);
          pending.groups?.push(inputs);
        };
        try {
          pending.value = await event.run(record);
        } catch (error) {
          // Stopped mid-chat: what was mapped is captured; the rest waits for the next run.
          if (!OffchannelError.hasCode(error, 'CONNECTOR_STOPPED')) pending.error = error;
        }
        return (pending.groups ?? []).flat();
      }
    }
  }

  /** Downloads the update's media, runs the pure mapping, stages what the index learns. */
  async #mapUpdate(update: tl.TypeUpdate, peers: PeerLookup, raw: Uint8Array, receivedAt: Date, source: string | undefined, remember: [number, MessageMemory][]): Promise<CaptureInput[]> {
    const ctx = (this.#io as EventSourceIo<TelegramEvent>).ctx;
    const memory = this.#index.memoryFor(update);
    // Only message updates carry a `message` (a secret chat's `encryptedMessage` is not one).
    const message = update._ === 'updateNewMessage' || update._ === 'updateNewChannelMessage' || update._ === 'updateEditMessage' || update._ === 'updateEditChannelMessage' ? update.message : undefined;
    let inputs: CaptureInput[];
    try {
      const attachments = [];
      const media = message ? mediaOf(message) : undefined;
      const unchanged = media !== undefined && message?._ === 'message' && memory.get(message.id)?.fingerprint === contentFingerprint(message);
      if (media && !unchanged) attachments.push(await captureAttachment(media, this.#downloader(), this.#options.maxMediaBytes, ctx));
      // A download cut short by stopping is not "unavailable" for good: the update is abandoned
      // (not acknowledged) and fetched again on the next start.
      if (ctx.signal.aborted || this.#reconciling.signal.aborted) throw new OffchannelError('CONNECTOR_STOPPED', 'stopped while mapping an update; it is fetched again on the next start.');
      const pts = ptsOf(update);
      inputs = mapTelegramUpdate(update, { selfId: this.#selfId, peers, raw, attachments, memory, receivedAt, ...(source ? { source } : {}), ...(pts === undefined ? {} : { pts }) });
    } catch (error) {
      if (OffchannelError.hasCode(error, 'CONNECTOR_STOPPED')) throw error;
      ctx.logger.warn({ update: update._, code: errorCode(error) }, 'update could not be mapped; recording it as unsupported');
      return [unsupportedUpdate(raw, 'mapping-failed', `${update._}: ${errorCode(error)}`)];
    }
    for (const [id, next] of memoryAfter(update, { selfId: this.#selfId, peers, memory }, inputs)) {
      this.#index.stage(id, next);
      remember.push([id, next]);
    }
    return inputs;
  }

  /** The periodic reconciliation of `options.reconcile`; one run at a time, counts logged. */
  #scheduleReconcile(): void {
    const every = this.#options.reconcile;
    if (!every) return;
    let running = false;
    this.#reconcileTimer = setInterval(() => {
      if (running || this.#runtime.status().state !== 'running') return;
      running = true;
      const { dialogs, limit } = every;
      this.reconcile({ ...(dialogs === undefined ? {} : { dialogs }), ...(limit === undefined ? {} : { limit }) })
        .then(
          ({ skipped, ...counts }) => this.#io?.ctx.logger.info({ ...counts, skipped: skipped.length }, 'scheduled reconciliation done'),
          (error: unknown) => this.#io?.ctx.logger.warn({ code: errorCode(error) }, 'scheduled reconciliation failed; it runs again at the next interval'),
        )
        .finally(() => {
          running = false;
        });
    }, every.everyMs);
    this.#reconcileTimer.unref();
  }

  #host(): ReconcileHost | undefined {
    const client = this.#client;
    const ctx = this.#io?.ctx;
    if (!client || !ctx || this.#closed) return undefined;
    return {
      client,
      ctx,
      index: this.#index,
      selfId: this.#selfId,
      encode: encodeTl,
      queue: <T>(task: (record: ReconcileRecord) => Promise<T>) =>
        new Promise<{ value: T; recorded: number[] }>((resolve, reject) => {
          if (this.#closed) {
            reject(new OffchannelError('CONNECTOR_STOPPED', 'the connector stopped; run the reconciliation again.'));
            return;
          }
          this.#deliver({
            type: 'task',
            raw: new TextEncoder().encode('reconcile'),
            format: TASK_FORMAT,
            run: task,
            settle: ({ value, error, recorded }) => {
              if (error === undefined) resolve({ value: value as T, recorded });
              else reject(error instanceof Error ? error : new OffchannelError('TELEGRAM_RECONCILE_FAILED', 'reconciliation step failed'));
            },
          });
        }),
    };
  }

  /** Watches RPC results for what mtcute handles silently: lost differences, ended sessions. */
  #observer(): RpcCallMiddleware {
    return async (mctx, next) => {
      const result = await next(mctx);
      const request = mctx.request;
      if (isTlRpcError(result)) {
        if (request._ === 'updates.getDifference') this.#watch?.startSettled(); // start need not wait for retries
        if (SESSION_ENDED.has(result.errorMessage)) this.#endSession(result.errorMessage);
        else if (result.errorMessage.startsWith('FROZEN_')) this.#watch?.frozen(result.errorMessage, request._);
        return result;
      }
      const kind = typeof result === 'object' && result !== null ? (result as { _?: unknown })._ : undefined;
      if (request._ === 'updates.getDifference') this.#watch?.difference(request.pts, result as tl.updates.TypeDifference);
      if (request._ === 'updates.getDifference' && kind === 'updates.differenceTooLong') {
        const to = (result as tl.updates.RawDifferenceTooLong).pts;
        this.#deliverInput(gapInput('common', 'difference-too-long', request.pts, to));
      } else if (request._ === 'updates.getChannelDifference' && kind === 'updates.channelDifferenceTooLong' && request.channel._ === 'inputChannel') {
        const diff = result as tl.updates.RawChannelDifferenceTooLong;
        const peer: tl.TypePeer = { _: 'peerChannel', channelId: request.channel.channelId };
        const to = diff.dialog._ === 'dialog' ? diff.dialog.pts : undefined;
        const conversation = conversationOf(peer, { users: new Map(), chats: new Map(diff.chats.map((chat) => [chat.id, chat])) }, false);
        const gap = gapInput(conversation.id, 'channel-too-long', request.pts, to, { conversation });
        this.#channelGaps.set(request.channel.channelId, gap.key ?? '');
        this.#deliverInput(gap);
      }
      return result;
    };
  }

  #onChannelTooLong(channelId: number): void {
    // The gap itself was recorded by the RPC observer; backfill what the history still holds.
    const marked = String(getMarkedPeerId(channelId, 'channel'));
    const host = this.#host();
    if (!host) return;
    // Queued at once, right behind the gap record (runReconcile delivers the chat synchronously).
    const gapKey = this.#channelGaps.get(channelId);
    const backfill = runReconcile(host, { chats: [marked], signal: this.#reconciling.signal }).then((report) => {
      // What was recovered says so, naming the gap it follows.
      if (gapKey !== undefined && !report.interrupted) this.#watch?.record(gapBackfilledInput(gapKey, report.missingRecorded, new Date()));
      this.#io?.ctx.logger.info({ recorded: report.missingRecorded }, 'channel backfilled from history after channelDifferenceTooLong');
    });
    backfill.catch((error: unknown) => {
      this.#io?.ctx.logger.warn({ code: errorCode(error) }, 'channel backfill failed; run reconcile later');
    });
  }

  #endSession(code: string): void {
    const io = this.#io;
    if (!io || this.#sessionEnded) return;
    this.#sessionEnded = true;
    this.#watch?.startSettled();
    this.#watch?.record(sessionEndedInput(code, new Date()));
    io.transition(SESSION_ENDED.get(code) ?? 'logged-out', code);
    io.ctx.logger.error({ code }, 'Telegram ended the session; capture stopped. Relink with `offchannel link telegram`.');
    this.#client?.stopUpdatesLoop().catch(() => undefined);
  }

  #onClientError(error: Error): void {
    const code = errorCode(error);
    this.#io?.ctx.logger.warn({ code }, 'telegram client error');
    if (SESSION_ENDED.has(code)) this.#endSession(code);
  }

  /** mtcute's connection states, reported as transitions when connectivity changes. */
  #onConnectionState(state: string): void {
    const io = this.#io;
    if (!io || this.#sessionEnded) return;
    const connected = state === 'connected' || state === 'updating';
    if (connected === this.#connected) return;
    const first = this.#connected === undefined;
    this.#connected = connected;
    if (connected && !first) io.transition('connected', state);
    else if (!connected && !first) io.transition('reconnecting', state);
  }

  #downloader(): MediaDownloader {
    if (this.#options.downloadMedia) return this.#options.downloadMedia;
    return async (media, signal) => {
      const client = this.#client;
      if (!client) throw new OffchannelError('CONNECTOR_STOPPED', 'connector stopped');
      return downloadAsBuffer(client, media.location, { dcId: media.dcId, ...(media.size ? { fileSize: media.size } : {}), abortSignal: signal });
    };
  }
}
