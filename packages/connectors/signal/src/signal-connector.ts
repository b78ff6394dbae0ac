/**
 * The Signal connector: a linked device that receives every envelope for the employee's
 * account over libsignal's authenticated chat websocket, on core's connector runtime.
 *
 * This file is the event source: it connects (reconnecting with backoff), delivers each
 * envelope to the runtime, and acknowledges (HTTP 200) only what the runtime hands back as
 * durable. The runtime works in staged batches: it decrypts and maps a batch of envelopes in
 * order (envelope-processor.ts), records all of it in one group commit, then calls
 * `acknowledge`, which commits the protocol state once and only then sends the 200s. If the
 * archive fails, the runtime retries the batch's captures with backoff and nothing is
 * acknowledged meanwhile. Keepalives are libsignal's. The server unlinks a device that stays
 * offline for about 30 days: the connector warns from `unlinkWarningDays` offline on.
 */
import {
  CONNECTOR_SPEC_VERSION,
  type Connector,
  type ConnectorContext,
  ConnectorError,
  type ConnectorEvent,
  type ConnectorRuntime,
  type ConnectorStatus,
  type EventSourceIo,
  type SourceInfo,
  createConnectorRuntime,
} from '@offchannel/core';
import { ErrorCode, type LibSignalError, type PublicKey } from '@signalapp/libsignal-client';
import type { AuthenticatedChatConnection, ChatServerMessageAck, Net } from '@signalapp/libsignal-client/dist/net.js';
import { type SignalAccount, loadAccount } from './account.ts';
import { type AttachmentFetcher, DEFAULT_MAX_ATTACHMENT_BYTES, httpsAttachmentFetcher } from './attachments.ts';
import { EnvelopeProcessor, MAX_BATCH_ENVELOPES } from './envelope-processor.ts';
import { RAW_ENVELOPE_FORMAT, mapDeviceUnlinked, mapLinkedDevice, mapOfflineGap, mapUnlinkRisk } from './map-signal-content.ts';
import { topUpPreKeys } from './prekeys.ts';
import { type ProtocolStores, StateSenderKeyStore, protocolStores } from './protocol-stores.ts';
import { SignalError } from './signal-error.ts';
import { type SignalServer, createNet, defaultCdnUrls, defaultTrustRoots, parseTrustRoots } from './signal-server.ts';
import { StagedState } from './staged-state.ts';
import { SIGNAL_PACKAGE_VERSION, LIBSIGNAL_VERSION } from './version.ts';

/** Points in envelope processing where tests inject a crash. */
export type FaultPoint = 'after-decrypt' | 'after-capture' | 'before-ack';

export interface SignalConnectorOptions {
  /** The custodian's account name (stream `signal:<account>`). */
  readonly account: string;
  /** Default production. */
  readonly server?: SignalServer;
  /** Sealed-sender trust roots, base64. Default: the server environment's roots. */
  readonly trustRoots?: readonly string[];
  /** CDN base URLs by CDN number. Default: the environment's CDNs. */
  readonly cdnUrls?: Readonly<Record<number, string>>;
  /** Largest attachment downloaded, bytes of plaintext. Default 200 MiB. */
  readonly maxAttachmentBytes?: number;
  /** Warn when the device has been offline this many days (Signal unlinks at about 30). Default 14. */
  readonly unlinkWarningDays?: number;
  /** Reconnect backoff, and archive retry backoff, ms. Default 1 s doubling to 5 min. */
  readonly reconnect?: { readonly minMs?: number; readonly maxMs?: number };
  /** Most envelopes decrypted into one batch (one group commit, one state commit). Default 256. */
  readonly maxBatch?: number;
  /** Replaces the HTTPS attachment downloader (tests, proxies). */
  readonly attachmentFetcher?: AttachmentFetcher;
  /** Replaces the libsignal network stack built from `server` (tests). */
  readonly net?: Net;
  /** Test seam: throw from here to simulate a crash at that point. */
  readonly fault?: (point: FaultPoint, envelopeId: string) => void;
  /** Clock for offline-time warnings, gaps and their records (ms since the epoch; default `Date.now`). */
  readonly clock?: () => number;
}

/** Signal-specific status beyond {@link ConnectorStatus}. */
export interface SignalStatus extends ConnectorStatus {
  /** `draining` until the server reports the backlog delivered, then `empty`. */
  readonly queue: 'unknown' | 'draining' | 'empty';
  /** When the last envelope was received and acknowledged, ISO 8601. */
  readonly lastEnvelopeAt?: string;
  readonly envelopesAcknowledged: number;
  readonly connectedSince?: string;
  readonly disconnectedSince?: string;
  /** When Signal is expected to unlink this device if it stays offline, ISO 8601. */
  readonly unlinkRiskAt?: string;
}

/** One envelope as delivered on the chat websocket, with the means to acknowledge it. */
interface SignalEnvelope extends ConnectorEvent {
  readonly deliveredAt: number;
  readonly ack: ChatServerMessageAck;
}

const DAY_MS = 86_400_000;
/** Signal unlinks a linked device, and drops what was queued for it, after about this many days offline. */
const UNLINK_AFTER_DAYS = 30;
const LAST_ONLINE = 'last-online';

export function createSignalConnector(options: SignalConnectorOptions): SignalConnector {
  return new SignalConnector(options);
}

export class SignalConnector implements Connector {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'signal';
  readonly account: string;
  readonly source: SourceInfo = { package: '@offchannel/signal', version: SIGNAL_PACKAGE_VERSION, upstream: `@signalapp/libsignal-client@${LIBSIGNAL_VERSION}` };
  readonly #options: SignalConnectorOptions;
  readonly #runtime: ConnectorRuntime<SignalEnvelope>;
  #io: EventSourceIo<SignalEnvelope> | undefined;
  #net: Net | undefined;
  #chat: AuthenticatedChatConnection | undefined;
  /** Bumped on every connect and close: callbacks of an older connection are ignored. */
  #generation = 0;
  #closed = false;
  #processor: EnvelopeProcessor | undefined;
  #stage: StagedState | undefined;
  #stores: { aci: ProtocolStores; pni: ProtocolStores } | undefined;
  #signalAccount: SignalAccount | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #backoffMs = 0;
  #lastOnline: number | undefined;
  #lastTopUp = 0;
  #identityRecorded = false;
  /**
   * Serializes everything that commits the staged state: an envelope batch holds it from its
   * first decryption to its acknowledgement (or abandonment); prekey top-ups take it between.
   */
  #lock: Promise<void> = Promise.resolve();
  #batchRelease: (() => void) | undefined;
  /** Work started by connection callbacks, awaited on close. */
  #background = new Set<Promise<void>>();
  #extra: {
    queue: 'unknown' | 'draining' | 'empty';
    lastEnvelopeAt?: string;
    envelopesAcknowledged: number;
    connectedSince?: string;
    disconnectedSince?: string;
  } = { queue: 'unknown', envelopesAcknowledged: 0 };

  constructor(options: SignalConnectorOptions) {
    this.account = options.account;
    this.#options = options;
    const maxBatch = options.maxBatch ?? MAX_BATCH_ENVELOPES;
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > MAX_BATCH_ENVELOPES) {
      throw new SignalError('SIGNAL_CONFIG_INVALID', `maxBatch must be an integer from 1 to ${MAX_BATCH_ENVELOPES}.`);
    }
    this.#runtime = createConnectorRuntime<SignalEnvelope>({
      channel: this.channel,
      account: this.account,
      source: this.source,
      maxInFlight: maxBatch,
      ...(options.reconnect === undefined ? {} : { retry: options.reconnect }),
      events: {
        staged: true,
        open: (io) => this.#open(io),
        acknowledge: (events) => this.#acknowledge(events),
        abandon: async () => {
          this.#processor?.discard();
          this.#endBatch();
        },
        close: () => this.#close(),
      },
      map: (envelope) => this.#map(envelope),
    });
  }

  start(ctx: ConnectorContext): Promise<void> {
    return this.#runtime.start(ctx);
  }

  stop(): Promise<void> {
    return this.#runtime.stop();
  }

  status(): ConnectorStatus {
    return this.signalStatus();
  }

  signalStatus(): SignalStatus {
    const unlinkRiskAt = this.#extra.disconnectedSince === undefined || this.#lastOnline === undefined ? undefined : new Date(this.#lastOnline + UNLINK_AFTER_DAYS * DAY_MS).toISOString();
    return { ...this.#runtime.status(), ...this.#extra, ...(unlinkRiskAt === undefined ? {} : { unlinkRiskAt }) };
  }

  async #open(io: EventSourceIo<SignalEnvelope>): Promise<void> {
    this.#io = io;
    const { ctx } = io;
    const server = this.#options.server ?? { environment: 'production' };
    const trustRoots = parseTrustRoots(this.#options.trustRoots ?? defaultTrustRoots(server));
    if (trustRoots.length === 0) throw new SignalError('SIGNAL_CONFIG_INVALID', 'no sealed-sender trust roots configured; set trustRoots.');
    if (await StagedState.recover(ctx.state)) ctx.logger.warn({}, 'completed a state commit interrupted by a crash');
    const account = await loadAccount(ctx.state);
    if (account === undefined) {
      throw new SignalError('SIGNAL_NOT_LINKED', `no linked Signal device for account ${this.account}; run \`offchannel link signal --account ${this.account}\` first.`);
    }
    this.#signalAccount = account;
    const stage = new StagedState(ctx.state);
    this.#stage = stage;
    const identityChanges: { serviceId: string; key: PublicKey }[] = [];
    const onChange = (serviceId: string, key: PublicKey) => identityChanges.push({ serviceId, key });
    const stores = {
      aci: protocolStores(stage, 'aci', account.aciIdentity, account.registrationId, onChange),
      pni: protocolStores(stage, 'pni', account.pniIdentity, account.pniRegistrationId, onChange),
    };
    this.#stores = stores;
    const fault = this.#options.fault;
    this.#processor = new EnvelopeProcessor({
      state: stage,
      decrypt: { selfAci: account.aci, selfPni: account.pni, deviceId: account.deviceId, aci: stores.aci, pni: stores.pni, senderKeys: new StateSenderKeyStore(stage), trustRoots },
      capture: (input) => ctx.capture(input),
      logger: ctx.logger,
      fetcher: this.#options.attachmentFetcher ?? httpsAttachmentFetcher(server.environment === 'local' ? { ca: server.caCertificatePem } : {}),
      cdnUrls: this.#options.cdnUrls ?? defaultCdnUrls(server),
      maxAttachmentBytes: this.#options.maxAttachmentBytes ?? DEFAULT_MAX_ATTACHMENT_BYTES,
      identityChanges,
      signal: ctx.signal,
      ...(fault === undefined ? {} : { fault: (point: 'after-decrypt' | 'after-capture', id: string) => { this.#fault(point, id); } }),
    });
    // The device's own identity: the context every record's direction is computed with.
    await this.#recordIdentity();
    const lastOnline = await ctx.state.getJson<string>(LAST_ONLINE);
    this.#lastOnline = lastOnline === undefined ? Date.parse(account.linkedAt) : Date.parse(lastOnline);
    await this.#checkUnlinkRisk();
    if (this.#now() - this.#lastOnline > UNLINK_AFTER_DAYS * DAY_MS) {
      // Signal keeps a device's queue for about 30 days: older traffic may be gone for good.
      await ctx.capture(mapOfflineGap(new Date(this.#lastOnline).toISOString(), new Date(this.#now()).toISOString()));
    }
    this.#net = this.#options.net ?? createNet(server);
    await this.#connect();
    this.#healthTimer = setInterval(() => {
      this.#spawn(async () => {
        await this.#recordIdentity();
        await this.#checkUnlinkRisk();
        if (this.#chat !== undefined) await this.#markOnline();
        await this.#topUp(false);
      });
    }, 3_600_000);
    this.#healthTimer.unref();
  }

  /** Decrypts and maps one envelope into the open batch, opening one (taking the lock) if needed. */
  async #map(envelope: SignalEnvelope) {
    const processor = this.#processor as EnvelopeProcessor;
    // The archive failed when capture started: record the device's identity as soon as it takes records.
    if (!this.#identityRecorded) this.#spawn(() => this.#recordIdentity());
    if (this.#batchRelease === undefined) this.#batchRelease = await this.#exclusive();
    try {
      const prepared = await processor.prepare(envelope.raw, envelope.deliveredAt);
      return prepared.status === 'prepared' ? prepared.inputs : [];
    } catch (error) {
      // Whatever goes wrong with an envelope itself is already a record; what reaches here is
      // the state store, an abort or an injected crash: stop rather than acknowledge it unread.
      if (error instanceof ConnectorError || this.#io?.ctx.signal.aborted === true) throw error;
      throw new ConnectorError('CONNECTOR_SOURCE_FAILED', `the Signal state could not be read or staged (${(error as { code?: string }).code ?? (error as Error).name}); capture stopped, nothing acknowledged. Check the state directory and restart.`, { cause: error });
    }
  }

  /** The batch is durable: commit its state once, then acknowledge every envelope in it. */
  async #acknowledge(envelopes: readonly SignalEnvelope[]): Promise<void> {
    try {
      this.#options.fault?.('after-capture', '');
      await (this.#processor as EnvelopeProcessor).commit();
    } finally {
      this.#endBatch();
    }
    this.#options.fault?.('before-ack', '');
    for (const envelope of envelopes) {
      try {
        envelope.ack.send(200);
      } catch {
        // The connection is gone: the server redelivers, and the committed id is acknowledged without decrypting.
      }
    }
    this.#extra.envelopesAcknowledged += envelopes.length;
    this.#extra.lastEnvelopeAt = new Date().toISOString();
  }

  /** Test seam: an injected crash inside decryption stops the connector (nothing acknowledged). */
  #fault(point: 'after-decrypt' | 'after-capture', id: string): void {
    try {
      this.#options.fault?.(point, id);
    } catch (cause) {
      throw new ConnectorError('CONNECTOR_STOPPED', `crash injected at ${point}`, { cause });
    }
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#generation++;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#healthTimer);
    while (this.#background.size > 0) await Promise.all(this.#background);
    await this.#disconnect();
  }

  async #connect(): Promise<void> {
    const io = this.#io;
    const account = this.#signalAccount;
    const net = this.#net;
    if (io === undefined || account === undefined || net === undefined || this.#closed || io.ctx.signal.aborted) return;
    const generation = ++this.#generation;
    try {
      this.#extra.queue = 'draining';
      const chat = await net.connectAuthenticatedChat(`${account.aci}.${account.deviceId}`, account.password, false, {
        onIncomingMessage: (envelope: Uint8Array, serverTimestamp: number, ack: ChatServerMessageAck) => {
          // A stale connection's envelopes are not delivered: the server sends them again.
          if (generation === this.#generation) io.deliver({ raw: envelope, format: RAW_ENVELOPE_FORMAT, deliveredAt: serverTimestamp, ack });
        },
        onQueueEmpty: () => {
          this.#spawn(async () => {
            if (generation !== this.#generation) return;
            this.#extra.queue = 'empty';
            await this.#markOnline();
            await this.#topUp(false);
          });
        },
        onConnectionInterrupted: (cause: LibSignalError | null) => {
          if (generation !== this.#generation) return;
          this.#interrupted(cause);
        },
      });
      if (generation !== this.#generation) {
        await chat.disconnect();
        return;
      }
      this.#chat = chat;
      this.#backoffMs = 0;
      this.#extra.connectedSince = new Date().toISOString();
      delete this.#extra.disconnectedSince;
      io.transition('connected');
      await this.#markOnline();
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#interrupted(error as LibSignalError);
    }
  }

  #interrupted(cause: LibSignalError | null): void {
    const io = this.#io;
    if (io === undefined || this.#closed) return;
    const { ctx } = io;
    this.#chat = undefined;
    this.#extra.disconnectedSince ??= new Date().toISOString();
    delete this.#extra.connectedSince;
    const code = cause?.code;
    const reason = code === undefined ? undefined : ErrorCode[code];
    if (code === ErrorCode.DeviceDelinked || code === ErrorCode.RequestUnauthorized) {
      this.#generation++;
      io.transition('logged-out', reason);
      ctx.logger.error({ code: reason }, 'Signal unlinked this device; capture stopped. Relink with `offchannel link signal`.');
      this.#spawn(async () => {
        await ctx.capture(mapDeviceUnlinked(this.#signalAccount?.deviceId ?? 0, new Date(this.#now()).toISOString(), reason));
      });
      return;
    }
    const min = this.#options.reconnect?.minMs ?? 1000;
    const max = this.#options.reconnect?.maxMs ?? 300_000;
    this.#backoffMs = Math.min(max, this.#backoffMs === 0 ? min : this.#backoffMs * 2);
    const delay = Math.round(this.#backoffMs * (0.8 + Math.random() * 0.4));
    io.transition('reconnecting', reason);
    ctx.logger.warn({ code: reason, delayMs: delay }, 'chat connection lost; reconnecting');
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      this.#spawn(() => this.#connect());
    }, delay);
  }

  async #topUp(force: boolean): Promise<void> {
    const ctx = this.#io?.ctx;
    if (ctx === undefined || this.#chat === undefined || this.#signalAccount === undefined || this.#stage === undefined || this.#stores === undefined) return;
    if (!force && Date.now() - this.#lastTopUp < 600_000) return;
    this.#lastTopUp = Date.now();
    const release = await this.#exclusive(); // never while a batch is staged
    try {
      const chat = this.#chat;
      if (chat === undefined || this.#closed) return;
      this.#signalAccount = await topUpPreKeys({ chat, account: this.#signalAccount, state: this.#stage, stores: this.#stores, logger: ctx.logger, force });
    } catch (error) {
      ctx.logger.warn({ code: (error as { code?: string }).code }, 'prekey top-up failed; will retry');
    } finally {
      release();
    }
  }

  async #markOnline(): Promise<void> {
    const ctx = this.#io?.ctx;
    if (ctx === undefined) return;
    this.#lastOnline = this.#now();
    await ctx.state.setJson(LAST_ONLINE, new Date(this.#lastOnline).toISOString());
  }

  /** Records the `linked-device` record once per run (idempotent key); retried hourly if the archive failed. */
  async #recordIdentity(): Promise<void> {
    const ctx = this.#io?.ctx;
    const account = this.#signalAccount;
    if (ctx === undefined || account === undefined || this.#identityRecorded) return;
    try {
      await ctx.capture(mapLinkedDevice(account.aci, account.deviceId, account.linkedAt));
      this.#identityRecorded = true;
    } catch (error) {
      ctx.logger.warn({ code: (error as { code?: string }).code }, 'could not record the linked-device record; retrying within the hour');
    }
  }

  /** Offline for `unlinkWarningDays` or more: logged, and recorded once per whole day offline. */
  async #checkUnlinkRisk(): Promise<void> {
    const ctx = this.#io?.ctx;
    if (ctx === undefined || this.#lastOnline === undefined || this.#chat !== undefined) return;
    const offlineDays = Math.floor((this.#now() - this.#lastOnline) / DAY_MS);
    if (offlineDays < (this.#options.unlinkWarningDays ?? 14)) return;
    const unlinkRiskAt = new Date(this.#lastOnline + UNLINK_AFTER_DAYS * DAY_MS).toISOString();
    ctx.logger.warn(
      { offlineDays, unlinkRiskAt },
      'this Signal linked device has been offline long enough that Signal may unlink it at about 30 days; messages queued for it would be lost. Reconnect it.',
    );
    await ctx.capture(mapUnlinkRisk(new Date(this.#lastOnline).toISOString(), new Date(this.#now()).toISOString(), offlineDays, unlinkRiskAt));
  }

  #now(): number {
    return (this.#options.clock ?? Date.now)();
  }

  /** Waits for the state lock; resolves with its release. */
  async #exclusive(): Promise<() => void> {
    const previous = this.#lock;
    let release!: () => void;
    this.#lock = new Promise<void>((resolve) => (release = resolve));
    await previous;
    return release;
  }

  #endBatch(): void {
    const release = this.#batchRelease;
    this.#batchRelease = undefined;
    release?.();
  }

  /** Runs connection work outside the runtime, logging failures; awaited on close. */
  #spawn(task: () => Promise<void>): void {
    const running: Promise<void> = task()
      .catch((error: unknown) => {
        this.#io?.ctx.logger.error({ code: (error as { code?: string }).code, name: (error as Error).name }, 'unexpected error in Signal connection work');
      })
      .finally(() => this.#background.delete(running));
    this.#background.add(running);
  }

  async #disconnect(): Promise<void> {
    const chat = this.#chat;
    this.#chat = undefined;
    if (chat !== undefined) await chat.disconnect().catch(() => undefined);
  }
}
