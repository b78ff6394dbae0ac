/**
 * The Signal connector: a linked device that receives every envelope for the employee's
 * account over libsignal's authenticated chat websocket and acknowledges each one (HTTP 200)
 * only after its records are durable and its decryption state is committed.
 *
 * Envelopes are processed strictly one at a time (libsignal's callback is synchronous; work
 * is chained on one promise). If the archive fails, the connector stops acknowledging,
 * disconnects and reconnects with backoff, so the server redelivers everything not yet
 * acknowledged. Keepalives are libsignal's. The server unlinks a device that stays offline
 * for about 30 days: the connector warns from `unlinkWarningDays` offline on.
 */
import { CONNECTOR_SPEC_VERSION, type Connector, type ConnectorContext, type ConnectorState, type ConnectorStatus, type SourceInfo } from '@offchannel/core';
import { ErrorCode, type LibSignalError, type PublicKey } from '@signalapp/libsignal-client';
import type { AuthenticatedChatConnection, ChatServerMessageAck, Net } from '@signalapp/libsignal-client/dist/net.js';
import { type SignalAccount, loadAccount } from './account.ts';
import { type AttachmentFetcher, DEFAULT_MAX_ATTACHMENT_BYTES, httpsAttachmentFetcher } from './attachments.ts';
import { EnvelopeProcessor } from './envelope-processor.ts';
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
  /** Reconnect backoff, ms. Default 1 s doubling to 5 min. */
  readonly reconnect?: { readonly minMs?: number; readonly maxMs?: number };
  /** Replaces the HTTPS attachment downloader (tests, proxies). */
  readonly attachmentFetcher?: AttachmentFetcher;
  /** Replaces the libsignal network stack built from `server` (tests). */
  readonly net?: Net;
  /** Test seam: throw from here to simulate a crash at that point. */
  readonly fault?: (point: FaultPoint, envelopeId: string) => void;
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
  #ctx: ConnectorContext | undefined;
  #net: Net | undefined;
  #chat: AuthenticatedChatConnection | undefined;
  #generation = 0;
  #queue: Promise<void> = Promise.resolve();
  #processor: EnvelopeProcessor | undefined;
  #stage: StagedState | undefined;
  #stores: { aci: ProtocolStores; pni: ProtocolStores } | undefined;
  #signalAccount: SignalAccount | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #backoffMs = 0;
  #lastOnline: number | undefined;
  #lastTopUp = 0;
  #stopping: Promise<void> | undefined;
  #status: {
    state: ConnectorState;
    since: string;
    detail?: string;
    captured: number;
    duplicates: number;
    errors: number;
    lastEventAt?: string;
    queue: 'unknown' | 'draining' | 'empty';
    lastEnvelopeAt?: string;
    envelopesAcknowledged: number;
    connectedSince?: string;
    disconnectedSince?: string;
  } = { state: 'idle', since: new Date().toISOString(), captured: 0, duplicates: 0, errors: 0, queue: 'unknown', envelopesAcknowledged: 0 };

  constructor(options: SignalConnectorOptions) {
    this.account = options.account;
    this.#options = options;
  }

  async start(ctx: ConnectorContext): Promise<void> {
    if (this.#ctx !== undefined) throw new SignalError('SIGNAL_ALREADY_STARTED', 'this connector is already started; create a new one to start again.');
    this.#ctx = ctx;
    this.#setState('starting');
    try {
      await this.#start(ctx);
    } catch (error) {
      this.#setState('failed', `could not start: ${(error as { code?: string }).code ?? (error as Error).name}`);
      throw error;
    }
  }

  async #start(ctx: ConnectorContext): Promise<void> {
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
      capture: async (input) => {
        const result = await ctx.capture(input);
        if (result.status === 'duplicate') this.#status.duplicates++;
        else this.#status.captured++;
        return result;
      },
      logger: ctx.logger,
      fetcher: this.#options.attachmentFetcher ?? httpsAttachmentFetcher(server.environment === 'local' ? { ca: server.caCertificatePem } : {}),
      cdnUrls: this.#options.cdnUrls ?? defaultCdnUrls(server),
      maxAttachmentBytes: this.#options.maxAttachmentBytes ?? DEFAULT_MAX_ATTACHMENT_BYTES,
      identityChanges,
      signal: ctx.signal,
      ...(fault === undefined ? {} : { fault }),
    });
    const lastOnline = await ctx.state.getJson<string>(LAST_ONLINE);
    this.#lastOnline = lastOnline === undefined ? Date.parse(account.linkedAt) : Date.parse(lastOnline);
    this.#checkUnlinkRisk();
    if (Date.now() - this.#lastOnline > UNLINK_AFTER_DAYS * DAY_MS) {
      // Signal keeps a device's queue for about 30 days: older traffic may be gone for good.
      const from = new Date(this.#lastOnline).toISOString();
      await ctx.capture({ kind: 'gap', key: `gap:offline:${from}`, sentAt: new Date(), gap: { reason: 'offline-beyond-signal-retention', from, to: new Date().toISOString() } });
    }
    this.#net = this.#options.net ?? createNet(server);
    ctx.signal.addEventListener('abort', () => void this.stop(), { once: true });
    await this.#connect();
    this.#healthTimer = setInterval(() => {
      this.#checkUnlinkRisk();
      this.#enqueue(async () => {
        if (this.#chat !== undefined) await this.#markOnline();
        await this.#topUp(false);
      });
    }, 3_600_000);
    this.#healthTimer.unref();
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#setState('stopping');
    this.#generation++;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#healthTimer);
    await this.#queue;
    await this.#disconnect();
    this.#setState('stopped');
  }

  status(): ConnectorStatus {
    return this.signalStatus();
  }

  signalStatus(): SignalStatus {
    const unlinkRiskAt = this.#status.disconnectedSince === undefined || this.#lastOnline === undefined ? undefined : new Date(this.#lastOnline + UNLINK_AFTER_DAYS * DAY_MS).toISOString();
    return { ...this.#status, ...(unlinkRiskAt === undefined ? {} : { unlinkRiskAt }) };
  }

  async #connect(): Promise<void> {
    const ctx = this.#ctx;
    const account = this.#signalAccount;
    const net = this.#net;
    if (ctx === undefined || account === undefined || net === undefined || ctx.signal.aborted) return;
    const generation = ++this.#generation;
    try {
      this.#status.queue = 'draining';
      const chat = await net.connectAuthenticatedChat(`${account.aci}.${account.deviceId}`, account.password, false, {
        onIncomingMessage: (envelope: Uint8Array, serverTimestamp: number, ack: ChatServerMessageAck) => {
          this.#enqueue(() => this.#handle(generation, envelope, serverTimestamp, ack));
        },
        onQueueEmpty: () => {
          this.#enqueue(async () => {
            if (generation !== this.#generation) return;
            this.#status.queue = 'empty';
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
      this.#status.connectedSince = new Date().toISOString();
      delete this.#status.disconnectedSince;
      this.#setState('running', 'connected');
      await this.#markOnline();
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#interrupted(error as LibSignalError);
    }
  }

  #interrupted(cause: LibSignalError | null): void {
    const ctx = this.#ctx;
    if (ctx === undefined || this.#status.state === 'stopping' || this.#status.state === 'stopped') return;
    this.#chat = undefined;
    this.#status.disconnectedSince ??= new Date().toISOString();
    delete this.#status.connectedSince;
    const code = cause?.code;
    if (code === ErrorCode.DeviceDelinked || code === ErrorCode.RequestUnauthorized) {
      this.#generation++;
      this.#setState('logged-out', 'this linked device was removed from the account; relink it');
      ctx.logger.error({ code }, 'Signal unlinked this device; capture stopped. Relink with `offchannel link signal`.');
      this.#enqueue(async () => {
        await ctx.capture({ kind: 'system', key: `event:device-unlinked:${Date.now()}`, sentAt: new Date(), system: { event: 'device-unlinked', fields: { deviceId: String(this.#signalAccount?.deviceId ?? 0) } } });
      });
      return;
    }
    const min = this.#options.reconnect?.minMs ?? 1000;
    const max = this.#options.reconnect?.maxMs ?? 300_000;
    this.#backoffMs = Math.min(max, this.#backoffMs === 0 ? min : this.#backoffMs * 2);
    const delay = Math.round(this.#backoffMs * (0.8 + Math.random() * 0.4));
    this.#setState('reconnecting', `reconnecting in ${delay} ms`);
    ctx.logger.warn({ code: code === undefined ? undefined : ErrorCode[code], delayMs: delay }, 'chat connection lost; reconnecting');
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      this.#enqueue(() => this.#connect());
    }, delay);
  }

  async #handle(generation: number, envelope: Uint8Array, deliveredAt: number, ack: ChatServerMessageAck): Promise<void> {
    // A stale connection's envelopes are not acknowledged: the server sends them again.
    if (generation !== this.#generation || this.#processor === undefined || this.#ctx === undefined) return;
    try {
      const outcome = await this.#processor.process(envelope, deliveredAt);
      if (outcome.status === 'recorded' && outcome.sentAt !== undefined) this.#status.lastEventAt = outcome.sentAt;
      this.#options.fault?.('before-ack', '');
      ack.send(200);
      this.#status.envelopesAcknowledged++;
      this.#status.lastEnvelopeAt = new Date().toISOString();
    } catch (error) {
      this.#status.errors++;
      this.#ctx.logger.error({ code: (error as { code?: string }).code, name: (error as Error).name }, 'envelope not recorded; not acknowledged, reconnecting so the server redelivers it');
      this.#generation++;
      const chat = this.#chat;
      this.#chat = undefined;
      if (chat !== undefined) await chat.disconnect().catch(() => undefined);
      if (!this.#ctx.signal.aborted) this.#interrupted(null);
    }
  }

  async #topUp(force: boolean): Promise<void> {
    const ctx = this.#ctx;
    const chat = this.#chat;
    if (ctx === undefined || chat === undefined || this.#signalAccount === undefined || this.#stage === undefined || this.#stores === undefined) return;
    if (!force && Date.now() - this.#lastTopUp < 600_000) return;
    this.#lastTopUp = Date.now();
    try {
      this.#signalAccount = await topUpPreKeys({ chat, account: this.#signalAccount, state: this.#stage, stores: this.#stores, logger: ctx.logger, force });
    } catch (error) {
      ctx.logger.warn({ code: (error as { code?: string }).code }, 'prekey top-up failed; will retry');
    }
  }

  async #markOnline(): Promise<void> {
    const ctx = this.#ctx;
    if (ctx === undefined) return;
    this.#lastOnline = Date.now();
    await ctx.state.setJson(LAST_ONLINE, new Date(this.#lastOnline).toISOString());
  }

  #checkUnlinkRisk(): void {
    const ctx = this.#ctx;
    if (ctx === undefined || this.#lastOnline === undefined || this.#chat !== undefined) return;
    const offlineDays = (Date.now() - this.#lastOnline) / DAY_MS;
    if (offlineDays >= (this.#options.unlinkWarningDays ?? 14)) {
      ctx.logger.warn(
        { offlineDays: Math.floor(offlineDays), unlinkRiskAt: new Date(this.#lastOnline + UNLINK_AFTER_DAYS * DAY_MS).toISOString() },
        'this Signal linked device has been offline long enough that Signal may unlink it at about 30 days; messages queued for it would be lost. Reconnect it.',
      );
    }
  }

  #enqueue(task: () => Promise<void>): void {
    this.#queue = this.#queue.then(task).catch((error: unknown) => {
      this.#ctx?.logger.error({ name: (error as Error).name }, 'unexpected error in the Signal work queue');
    });
  }

  async #disconnect(): Promise<void> {
    const chat = this.#chat;
    this.#chat = undefined;
    if (chat !== undefined) await chat.disconnect().catch(() => undefined);
  }

  #setState(state: ConnectorState, detail?: string): void {
    this.#status = { ...this.#status, state, since: new Date().toISOString() };
    if (detail === undefined) delete this.#status.detail;
    else this.#status.detail = detail;
  }
}
