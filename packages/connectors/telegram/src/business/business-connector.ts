/**
 * The Bot API Business route: a webhook receiver for a bot the employee connected to their
 * Telegram Business account (Settings → Telegram Business → Chatbots). Telegram POSTs
 * `business_connection`, `business_message`, `edited_business_message` and
 * `deleted_business_messages` updates; each is recorded and the webhook answers 200 only once
 * the records are durable, so Telegram re-delivers anything we failed to keep.
 *
 * Security: the listener exists only when this connector is configured and started; it binds
 * to 127.0.0.1 unless told otherwise (put a TLS-terminating proxy in front); the secret token
 * (`X-Telegram-Bot-Api-Secret-Token`, set with `setWebhook`) is checked in constant time
 * before the body is read — a wrong token gets 401 and nothing is recorded; bodies are capped.
 * The bot never calls the Bot API except `getFile` for media, and only when a bot token is given.
 *
 * Coverage limits (documented in the README): private chats only, Telegram Premium accounts
 * only, the employee can exclude chats or disconnect the bot, no history backfill.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CONNECTOR_SPEC_VERSION, OffchannelError, type AttachmentInput, type CaptureInput, type CaptureResult, type Connector, type ConnectorContext, type ConnectorState, type ConnectorStatus, type SourceInfo } from '@offchannel/core';
import { Bot, webhookCallback } from 'grammy';
import type { Message, Update } from 'grammy/types';
import { errorCode } from '../error-code.ts';
import { MessageIndex } from '../message-index.ts';
import { BUSINESS_UPSTREAM, PACKAGE_NAME, PACKAGE_VERSION } from '../version.ts';
import { businessFingerprint, filesOf, mapBusinessUpdate, unsupportedBotUpdate, type BotFileDescriptor } from './map-business.ts';

/** Downloads one file by Bot API `file_id`. */
export type BotFileDownloader = (file: BotFileDescriptor, signal: AbortSignal) => Promise<Uint8Array>;

/** The cloud Bot API serves files up to 20 MB. */
export const BOT_API_MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024;

export interface TelegramBusinessOptions {
  readonly route?: 'business';
  readonly account: string;
  /** The webhook secret token given to `setWebhook` (1–256 characters of `A-Z a-z 0-9 _ -`). */
  readonly secretToken: string;
  readonly listen: { readonly host?: string; readonly port: number; readonly path?: string };
  /** Bot token, used only to download media with `getFile`. Without it media is recorded as unavailable. */
  readonly botToken?: string;
  /** Largest request body accepted (default 1 MiB). */
  readonly maxBodyBytes?: number;
  /** Longest a request may take to become durable before failing with 500 (default 30 s). */
  readonly timeoutMs?: number;
  /** Seam: downloads a file (default: Bot API `getFile` with {@link TelegramBusinessOptions.botToken}). */
  readonly downloadFile?: BotFileDownloader;
  readonly onCapture?: (input: CaptureInput, result: CaptureResult) => void;
}

export interface TelegramBusinessHandle extends Connector {
  /** Where the webhook listens, once started. */
  address(): { readonly host: string; readonly port: number; readonly path: string } | undefined;
}

const SECRET_HEADER = 'x-telegram-bot-api-secret-token';

/** grammY's `callback` webhook adapter: (update, respond, secret header, unauthorized) → settles after the handlers. */
type WebhookHandler = (update: Update, respond: (json: string) => unknown, header: string, unauthorized: () => unknown) => Promise<unknown>;

export function createTelegramBusinessConnector(options: TelegramBusinessOptions): TelegramBusinessHandle {
  return new TelegramBusinessConnector(options);
}

class TelegramBusinessConnector implements TelegramBusinessHandle {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'telegram';
  readonly account: string;
  readonly source: SourceInfo = { package: PACKAGE_NAME, version: PACKAGE_VERSION, upstream: BUSINESS_UPSTREAM };
  readonly #options: TelegramBusinessOptions;
  readonly #secret: Buffer;
  #status: ConnectorStatus = { state: 'idle', since: new Date().toISOString(), captured: 0, duplicates: 0, errors: 0 };
  #server: Server | undefined;
  #ctx: ConnectorContext | undefined;
  #index = new MessageIndex(50_000);
  /** The raw body of each update object handed to grammY. */
  readonly #raw = new WeakMap<object, Uint8Array>();
  #webhook: WebhookHandler | undefined;
  #inFlight = new Set<Promise<unknown>>();
  #indexChain: Promise<void> = Promise.resolve();

  constructor(options: TelegramBusinessOptions) {
    if (typeof options.secretToken !== 'string' || !/^[A-Za-z0-9_-]{16,256}$/.test(options.secretToken)) {
      throw new OffchannelError('TELEGRAM_SECRET_WEAK', 'the webhook secret token must be 16–256 characters of A-Z a-z 0-9 _ - (generate a random one).');
    }
    this.#options = options;
    this.account = options.account;
    this.#secret = createHash('sha256').update(options.secretToken).digest();
  }

  status(): ConnectorStatus {
    return this.#status;
  }

  address(): { host: string; port: number; path: string } | undefined {
    const address = this.#server?.address();
    if (!address || typeof address === 'string') return undefined;
    const info: AddressInfo = address;
    return { host: info.address, port: info.port, path: this.#path() };
  }

  async start(ctx: ConnectorContext): Promise<void> {
    if (this.#server) throw new OffchannelError('CONNECTOR_RUNNING', 'this Telegram Business connector is already started; stop it first.');
    this.#ctx = ctx;
    this.#setState('starting');
    this.#index = await MessageIndex.load(ctx.state.scope('business'), 50_000);
    const bot = new Bot(this.#options.botToken ?? '0:offline-capture', {
      botInfo: {
        id: 0,
        is_bot: true,
        first_name: 'offchannel capture',
        username: 'offchannel_capture_bot',
        can_join_groups: false,
        can_read_all_group_messages: false,
        supports_inline_queries: false,
        can_connect_to_business: true,
        has_main_web_app: false,
        has_topics_enabled: false,
        allows_users_to_create_topics: false,
        can_manage_bots: false,
        supports_join_request_queries: false,
      },
    });
    // Capture never talks back to Telegram through grammY (no replies, no webhook answers).
    bot.api.config.use(() => Promise.reject(new OffchannelError('TELEGRAM_BOT_API_DISABLED', 'the capture bot makes no Bot API calls')));
    const record = async (update: Update): Promise<void> => {
      await this.#record(update, this.#raw.get(update) ?? new TextEncoder().encode(JSON.stringify(update)));
    };
    bot.on('business_connection', (gctx) => record(gctx.update));
    bot.on('business_message', (gctx) => record(gctx.update));
    bot.on('edited_business_message', (gctx) => record(gctx.update));
    bot.on('deleted_business_messages', (gctx) => record(gctx.update));
    bot.use((gctx) => record(gctx.update)); // anything else is kept as unsupported
    this.#webhook = webhookCallback(bot, 'callback', { secretToken: this.#options.secretToken, onTimeout: 'throw', timeoutMilliseconds: this.#options.timeoutMs ?? 30_000 }) as WebhookHandler;
    const server = createServer((request, response) => {
      const task = this.#serve(request, response).catch((error: unknown) => {
        ctx.logger.error({ code: errorCode(error) }, 'webhook request failed');
        if (!response.headersSent) response.writeHead(500).end();
      });
      this.#inFlight.add(task);
      void task.finally(() => this.#inFlight.delete(task));
    });
    server.requestTimeout = (this.#options.timeoutMs ?? 30_000) + 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#options.listen.port, this.#options.listen.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((error: unknown) => {
      this.#setState('failed', `cannot listen (${errorCode(error)})`);
      throw new OffchannelError('TELEGRAM_WEBHOOK_LISTEN', `the Business webhook cannot listen on ${this.#options.listen.host ?? '127.0.0.1'}:${this.#options.listen.port} (${errorCode(error)}).`, { cause: error });
    });
    this.#server = server;
    this.#setState('running', `webhook listening on ${this.#path()}`);
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#setState('stopping');
    const closed = new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
    server.closeIdleConnections();
    await Promise.allSettled([...this.#inFlight]);
    await closed;
    await this.#indexChain;
    this.#setState(this.#status.state === 'stopping' ? 'stopped' : this.#status.state, this.#status.detail);
  }

  async #serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const ctx = this.#ctx;
    const webhook = this.#webhook;
    if (!ctx || !webhook) return void response.writeHead(503).end();
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== this.#path()) return void response.writeHead(404).end();
    if (request.method !== 'POST') return void response.writeHead(405, { allow: 'POST' }).end();
    const header = request.headers[SECRET_HEADER];
    const given = createHash('sha256').update(typeof header === 'string' ? header : '').digest();
    if (typeof header !== 'string' || !timingSafeEqual(given, this.#secret)) {
      ctx.logger.warn({ remote: request.socket.remoteAddress ?? 'unknown' }, 'webhook request with a wrong secret token refused');
      response.writeHead(401, { connection: 'close' }).end();
      request.destroy();
      return;
    }
    const body = await readBody(request, this.#options.maxBodyBytes ?? 1024 * 1024);
    if (body === 'too-large') {
      ctx.logger.warn({}, 'webhook body over the size limit refused');
      response.writeHead(413, { connection: 'close' }).end();
      request.destroy();
      return;
    }
    let update: unknown;
    try {
      update = JSON.parse(Buffer.from(body).toString('utf8'));
    } catch {
      update = undefined;
    }
    if (typeof update !== 'object' || update === null || Array.isArray(update) || !Number.isSafeInteger((update as { update_id?: unknown }).update_id)) {
      // Authenticated but unreadable: keep the bytes. 200 only once that is durable.
      await this.#capture(unsupportedBotUpdate(body, 'malformed-update', 'body is not a JSON Update object'));
      response.writeHead(200).end();
      return;
    }
    this.#raw.set(update, body);
    let refused = false;
    await webhook(update as Update, () => undefined, header, () => {
      refused = true; // grammY's own secret check; unreachable after ours, kept as a second lock
    });
    response.writeHead(refused ? 401 : 200).end();
  }

  /** Maps, downloads and captures one update; throws if it is not durable (→ 500, Telegram retries). */
  async #record(update: Update, raw: Uint8Array): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx) throw new OffchannelError('CONNECTOR_STOPPED', 'connector stopped');
    // The body passed the secret check but its shape is still untrusted: read it defensively.
    const message = readableMessage(update.business_message ?? update.edited_business_message);
    let inputs: CaptureInput[];
    try {
      const previous = message ? this.#index.get(String(message.chat.id), message.message_id)?.fingerprint : undefined;
      const unchanged = message !== undefined && update.edited_business_message !== undefined && previous === businessFingerprint(message);
      const attachments: AttachmentInput[] = [];
      if (message && !unchanged) for (const file of filesOf(message)) attachments.push(await this.#download(file, ctx));
      inputs = mapBusinessUpdate(update, { raw, attachments, receivedAt: new Date(), ...(previous ? { previousFingerprint: previous } : {}) });
    } catch (error) {
      ctx.logger.warn({ code: errorCode(error) }, 'business update could not be mapped; recording it as unsupported');
      inputs = [unsupportedBotUpdate(raw, 'mapping-failed', errorCode(error))];
    }
    for (const input of inputs) await this.#capture(input);
    // Durable now. What follows is bookkeeping; it must not turn a kept update into a 500.
    try {
      const connection = update.business_connection as { readonly id?: unknown; readonly is_enabled?: unknown } | null | undefined; // untrusted shape
      if (connection?.is_enabled === false) {
        const id = typeof connection.id === 'string' ? connection.id.slice(0, 128) : 'unknown';
        this.#status = { ...this.#status, detail: `business connection ${id} was disabled by the account owner: its chats are no longer captured` };
        ctx.logger.warn({ connection: id }, 'business connection disabled by the account owner');
      }
      if (message) {
        this.#index.set(message.message_id, { peer: String(message.chat.id), type: 'direct', direction: message.from?.id === message.chat.id ? 'inbound' : 'outbound', fingerprint: businessFingerprint(message), reactions: [] });
        const state = ctx.state.scope('business');
        this.#indexChain = this.#indexChain.then(() => this.#index.persist(state));
        await this.#indexChain;
      }
    } catch (error) {
      this.#indexChain = Promise.resolve();
      ctx.logger.warn({ code: errorCode(error) }, 'business message index not updated; a later edit of this message may be recorded again');
    }
  }

  async #capture(input: CaptureInput): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx) throw new OffchannelError('CONNECTOR_STOPPED', 'connector stopped');
    try {
      const result = await ctx.capture(input);
      const sentAt = input.sentAt instanceof Date ? input.sentAt.toISOString() : input.sentAt;
      this.#status = { ...this.#status, ...(result.status === 'recorded' ? { captured: this.#status.captured + 1 } : { duplicates: this.#status.duplicates + 1 }), ...(sentAt ? { lastEventAt: sentAt } : {}) };
      try {
        this.#options.onCapture?.(input, result);
      } catch {
        // diagnostics only
      }
    } catch (error) {
      this.#status = { ...this.#status, errors: this.#status.errors + 1 };
      throw error;
    }
  }

  async #download(file: BotFileDescriptor, ctx: ConnectorContext): Promise<AttachmentInput> {
    const declared = { mime: file.mime, ...(file.name ? { name: file.name } : {}), ...(file.size === undefined ? {} : { size: file.size }) };
    if (file.size !== undefined && file.size > BOT_API_MAX_DOWNLOAD_BYTES) return { status: 'unavailable', reason: `too-large: the Bot API serves at most ${BOT_API_MAX_DOWNLOAD_BYTES} bytes`, ...declared };
    const download = this.#options.downloadFile ?? (this.#options.botToken ? botApiDownloader(this.#options.botToken) : undefined);
    if (!download) return { status: 'unavailable', reason: 'no-bot-token: media downloads need the bot token', ...declared };
    try {
      const bytes = await download(file, ctx.signal);
      return { bytes, mime: file.mime, ...(file.name ? { name: file.name } : {}) };
    } catch (error) {
      ctx.logger.warn({ code: errorCode(error) }, 'business media download failed; recording the attachment as unavailable');
      return { status: 'unavailable', reason: `download-failed: ${errorCode(error)}`, ...declared };
    }
  }

  #path(): string {
    return this.#options.listen.path ?? '/telegram/business';
  }

  #setState(state: ConnectorState, detail?: string): void {
    const { detail: _old, ...rest } = this.#status;
    this.#status = { ...rest, state, since: new Date().toISOString(), ...(detail === undefined ? {} : { detail }) };
  }
}

/** The message if it has the fields the index needs (chat id, message id), else `undefined`. */
function readableMessage(message: Message | undefined): Message | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const { chat, message_id: id } = message as { chat?: { id?: unknown }; message_id?: unknown };
  return typeof chat === 'object' && chat !== null && Number.isSafeInteger(chat.id) && Number.isSafeInteger(id) ? message : undefined;
}

/** Reads a request body, or `'too-large'` once it exceeds `limit` bytes. */
async function readBody(request: IncomingMessage, limit: number): Promise<Uint8Array | 'too-large'> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return 'too-large';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > limit) return 'too-large';
    chunks.push(buffer);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** Downloads through the cloud Bot API: `getFile`, then the file URL (HTTPS, 20 MB cap). */
export function botApiDownloader(token: string): BotFileDownloader {
  return async (file, signal) => {
    const meta = await fetch(`https://api.telegram.org/bot${token}/getFile?file_id=${encodeURIComponent(file.fileId)}`, { signal });
    const json = (await meta.json()) as { ok?: boolean; result?: { file_path?: string }; error_code?: number };
    const path = json.result?.file_path;
    if (!json.ok || !path) throw new OffchannelError('TELEGRAM_GETFILE_FAILED', `getFile failed (${json.error_code ?? meta.status})`);
    const response = await fetch(`https://api.telegram.org/file/bot${token}/${path}`, { signal });
    if (!response.ok) throw new OffchannelError('TELEGRAM_DOWNLOAD_FAILED', `file download failed (HTTP ${response.status})`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length > BOT_API_MAX_DOWNLOAD_BYTES) throw new OffchannelError('TELEGRAM_DOWNLOAD_TOO_LARGE', 'file over the Bot API limit');
    return bytes;
  };
}
