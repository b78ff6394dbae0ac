/**
 * The offline harness: the real Telegram connector, on mtcute's real updates engine, with
 * every RPC answered by a {@link LocalTelegramServer} in this process. Scripted events go in
 * as Telegram's own TL update containers; each helper resolves once the resulting record is
 * durable in the archive. Used by this package's tests and by `offchannel demo`.
 *
 * ```ts
 * const peer = createLocalTelegramPeer({ account: 'alice' });
 * await peer.start({ recorder, state });            // links (locally) and starts the connector
 * const hello = await peer.incomingText('Buy 100 ACME @ 12.34?');
 * await peer.edit(hello, 'Buy 200 ACME @ 12.34?');
 * await peer.delete(hello);
 * await peer.stop();
 * ```
 */
import { randomBytes } from 'node:crypto';
import { OffchannelError, createConnectorContext, type CaptureInput, type CaptureResult, type ConnectorContext, type Logger, type Recorder, type StateStore } from '@offchannel/core';
import { getMarkedPeerId, Long, tl } from '@mtcute/core';
import { BaseTelegramClient, type BaseTelegramClientOptions } from '@mtcute/core/client.js';
import { isTlRpcError } from '@mtcute/core/utils.js';
import type { TelegramClientFactory } from '../client-factory.ts';
import { linkTelegram, telegramStateScope } from '../link-telegram.ts';
import { createTelegramConnector, type TelegramConnectorHandle, type TelegramConnectorOptions } from '../telegram-connector.ts';
import { LocalTelegramServer } from './local-telegram-server.ts';

/** Where a scripted event happens. */
export type LocalChat = 'direct' | 'group' | 'supergroup' | 'channel';

/** A message the harness sent, to edit, delete or react to later. */
export interface LocalMessageRef {
  readonly id: number;
  /** Marked peer id of its conversation (the record's `conversation.id`). */
  readonly peer: string;
  readonly chat: LocalChat;
}

export interface LocalTelegramPeerOptions {
  readonly account?: string;
  readonly maxMediaBytes?: number;
  /** How long helpers wait for a record before failing (default 10 s). */
  readonly timeoutMs?: number;
  readonly leaseTtlMs?: number;
  /** Reuse another peer's server: a restarted process talking to the same Telegram account. */
  readonly server?: LocalTelegramServer;
  /** Periodic reconciliation, as the connector option of that name. */
  readonly reconcile?: TelegramConnectorOptions['reconcile'];
  /** Archive retry backoff, as the connector option of that name. */
  readonly retry?: TelegramConnectorOptions['retry'];
  /** Pipelining window, as the connector option of that name. */
  readonly maxInFlight?: number;
  /** Liveness probe, as the connector option of that name. */
  readonly liveness?: TelegramConnectorOptions['liveness'];
}

/** A file sent in a scripted message (`available: false`: the server will not serve its bytes). */
export interface LocalFile {
  readonly bytes: Uint8Array;
  readonly mime: string;
  readonly name: string;
  readonly caption?: string;
  readonly available?: boolean;
}

/** Fixture identities. */
export const LOCAL_IDS = { self: 5_000_001, client: 5_000_002, colleague: 5_000_003, group: 4_001, supergroup: 1_500_000_001, channel: 1_500_000_002 } as const;

export const LOCAL_API = { apiId: 1, apiHash: '00000000000000000000000000000000' } as const;

/** mtcute's client with the network replaced by the local server (everything else is mtcute's). */
class LocalPeerClient extends BaseTelegramClient {
  readonly #server: LocalTelegramServer;
  readonly #middlewares: NonNullable<NonNullable<BaseTelegramClientOptions['network']>['middlewares']>;

  constructor(options: BaseTelegramClientOptions, server: LocalTelegramServer) {
    super(options);
    this.#server = server;
    this.#middlewares = options.network?.middlewares ?? [];
  }

  override async call<T extends tl.RpcMethod>(message: T, params?: Parameters<BaseTelegramClient['call']>[1]): Promise<tl.RpcCallReturn[T['_']]> {
    // A linked session has an auth key; locally it is random bytes (no key exchange offline).
    if (!(await this.mt.storage.provider.authKeys.get(2))) await this.mt.storage.provider.authKeys.set(2, randomBytes(256));
    const run = async (index: number, ctx: { request: tl.RpcMethod; params?: typeof params }): Promise<unknown> => {
      const middleware = this.#middlewares[index];
      if (!middleware) return this.#server.answer(ctx.request);
      return middleware({ request: ctx.request, manager: this.mt.network, ...(ctx.params ? { params: ctx.params } : {}) }, (next) => run(index + 1, next));
    };
    const result = (await run(0, { request: message, ...(params ? { params } : {}) })) as tl.RpcCallReturn[T['_']];
    if (isTlRpcError(result)) throw tl.RpcError.fromTl(result);
    await this.storage.peers.updatePeersFrom(result);
    return result;
  }
}

export class LocalTelegramPeer {
  readonly server: LocalTelegramServer;
  readonly account: string;
  readonly connector: TelegramConnectorHandle;
  /** Every durable capture, in order. */
  readonly captured: { readonly input: CaptureInput; readonly result: CaptureResult }[] = [];
  readonly clientFactory: TelegramClientFactory;
  readonly #timeoutMs: number;
  readonly #waiters = new Set<() => void>();
  /** Updates mtcute dispatched to the connector, in order (after its own ordering and gap handling). */
  readonly dispatched: tl.TypeUpdate[] = [];
  /** Current reactions per message (`peer:id`), carried on later edits as Telegram does. */
  readonly #reactions = new Map<string, tl.TypeMessageReactions>();
  #client: LocalPeerClient | undefined;
  #controller: AbortController | undefined;

  constructor(options: LocalTelegramPeerOptions = {}) {
    this.account = options.account ?? 'alice';
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.server = options.server ?? createLocalServer();
    this.clientFactory = (clientOptions) => {
      const client = new LocalPeerClient(clientOptions, this.server);
      this.#client = client;
      client.onRawUpdate.add((info) => {
        this.dispatched.push(info.update);
        for (const wake of this.#waiters) wake();
      });
      return client;
    };
    this.connector = createTelegramConnector({
      account: this.account,
      ...LOCAL_API,
      clientFactory: this.clientFactory,
      ...(options.maxMediaBytes === undefined ? {} : { maxMediaBytes: options.maxMediaBytes }),
      ...(options.leaseTtlMs === undefined ? {} : { leaseTtlMs: options.leaseTtlMs }),
      ...(options.reconcile === undefined ? {} : { reconcile: options.reconcile }),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
      ...(options.liveness === undefined ? {} : { liveness: options.liveness }),
      onCapture: (input, result) => {
        this.captured.push({ input, result });
        for (const wake of this.#waiters) wake();
      },
    });
  }

  /** Links the account against the local server (login code answered automatically). */
  async link(accountState: StateStore): Promise<void> {
    await linkTelegram({
      account: this.account,
      ...LOCAL_API,
      state: accountState,
      clientFactory: this.clientFactory,
      io: { phone: async () => '+1 555 000 0001', code: async () => this.server.loginCode, password: async () => Promise.reject(new Error('no 2FA locally')) },
    });
  }

  /**
   * Links (if needed) and starts the connector on `recorder`. `state` is the root state store;
   * the connector gets its account scope, as in production. Returns the connector context.
   */
  async start(options: { readonly recorder: Recorder; readonly state: StateStore; readonly logger?: Logger }): Promise<ConnectorContext> {
    const scoped = telegramStateScope(options.state, this.account);
    if ((await scoped.get('mtcute.auth')) === undefined) await this.link(scoped);
    this.#controller = new AbortController();
    const ctx = createConnectorContext({ recorder: options.recorder, connector: this.connector, state: options.state, signal: this.#controller.signal, ...(options.logger ? { logger: options.logger } : {}) });
    await this.connector.start(ctx);
    return ctx;
  }

  async stop(): Promise<void> {
    this.#controller?.abort();
    await this.connector.stop();
  }

  /** A text message from a contact (or a colleague in group chats). */
  incomingText(text: string, options: { readonly chat?: LocalChat; readonly replyTo?: LocalMessageRef; readonly forwarded?: boolean } = {}): Promise<LocalMessageRef> {
    return this.#newMessage(options.chat ?? 'direct', { message: text, out: false, replyTo: options.replyTo, forwarded: options.forwarded });
  }

  /** A text message the custodian sent. */
  outgoingText(text: string, options: { readonly chat?: LocalChat; readonly replyTo?: LocalMessageRef } = {}): Promise<LocalMessageRef> {
    return this.#newMessage(options.chat ?? 'direct', { message: text, out: true, replyTo: options.replyTo });
  }

  /** An incoming document whose bytes `upload.getFile` serves (or not, with `available: false`). */
  incomingMedia(file: LocalFile, options: { readonly chat?: LocalChat } = {}): Promise<LocalMessageRef> {
    return this.#newMessage(options.chat ?? 'direct', { message: file.caption ?? '', out: false, media: this.#document(file) });
  }

  /** A document message that exists only in history (see {@link historyOnlyText}). */
  historyOnlyMedia(file: LocalFile, options: { readonly chat?: LocalChat } = {}): LocalMessageRef {
    const message = this.#message(options.chat ?? 'direct', { message: file.caption ?? '', out: false, media: this.#document(file) });
    this.server.putHistory(message);
    return this.#ref(message);
  }

  #document(file: LocalFile): tl.RawMessageMediaDocument {
    const id = Long.fromNumber(900_000 + this.server.tick());
    if (file.available !== false) this.server.serveFile(id, file.bytes);
    const document: tl.RawDocument = { _: 'document', id, accessHash: Long.fromNumber(77), fileReference: new Uint8Array([1, 2, 3, 4]), date: this.server.tick(), mimeType: file.mime, size: file.bytes.length, dcId: 2, attributes: [{ _: 'documentAttributeFilename', fileName: file.name }] };
    return { _: 'messageMediaDocument', document };
  }

  /**
   * A message that reaches Telegram while this session misses its update (offline, dropped
   * packet): logged on the server, not pushed. The next pushed update reveals the pts gap and
   * mtcute fetches it with `updates.getDifference`. Resolves once it is recorded.
   */
  missedText(text: string, options: { readonly chat?: LocalChat } = {}): { readonly ref: LocalMessageRef; readonly recorded: Promise<void> } {
    const chat = options.chat ?? 'direct';
    const message = this.#message(chat, { message: text, out: false });
    if (chat === 'supergroup' || chat === 'channel') this.server.logChannel(channelIdOf(chat), { _: 'updateNewChannelMessage', message, pts: 0, ptsCount: 1 });
    else this.server.logCommon({ _: 'updateNewMessage', message, pts: 0, ptsCount: 1 });
    const ref = this.#ref(message);
    return { ref, recorded: this.waitFor((input) => input.key === `message:${ref.peer}:${ref.id}`).then(() => undefined) };
  }

  /**
   * A message that exists only in the chat's history on the server — sent before the account
   * was linked, or lost with a too-long difference. Only reconciliation can find it.
   */
  historyOnlyText(text: string, options: { readonly chat?: LocalChat } = {}): LocalMessageRef {
    const message = this.#message(options.chat ?? 'direct', { message: text, out: false });
    this.server.putHistory(message);
    return this.#ref(message);
  }

  /** The message's text changes in history, with no update sent. */
  silentEdit(ref: LocalMessageRef, text: string): void {
    this.server.putHistory({ ...this.#message(ref.chat, { message: text, out: false }), id: ref.id, editDate: this.server.tick() });
  }

  /** The message disappears from history, with no delete update sent. */
  silentDelete(ref: LocalMessageRef): void {
    this.server.removeHistory(peerOf(ref.chat), ref.id);
  }

  /** The sender edits the message's text. */
  async edit(ref: LocalMessageRef, text: string): Promise<void> {
    const reactions = this.#reactions.get(`${ref.peer}:${ref.id}`);
    const message = { ...this.#message(ref.chat, { message: text, out: false }), id: ref.id, editDate: this.server.tick(), ...(reactions ? { reactions } : {}) };
    const update: tl.TypeUpdate = ref.chat === 'supergroup' || ref.chat === 'channel' ? { _: 'updateEditChannelMessage', message, pts: 0, ptsCount: 1 } : { _: 'updateEditMessage', message, pts: 0, ptsCount: 1 };
    this.#push(update, ref.chat);
    await this.waitFor((input) => input.kind === 'edit' && input.target?.id === String(ref.id) && input.target.peer === ref.peer && input.text === text);
  }

  /** The message is deleted (for private chats and basic groups the update carries only its id). */
  async delete(ref: LocalMessageRef): Promise<void> {
    const channelId = ref.chat === 'supergroup' ? LOCAL_IDS.supergroup : ref.chat === 'channel' ? LOCAL_IDS.channel : undefined;
    const update: tl.TypeUpdate = channelId === undefined ? { _: 'updateDeleteMessages', messages: [ref.id], pts: 0, ptsCount: 1 } : { _: 'updateDeleteChannelMessages', channelId, messages: [ref.id], pts: 0, ptsCount: 1 };
    this.#push(update, ref.chat);
    await this.waitFor((input) => input.kind === 'delete' && input.target?.id === String(ref.id) && input.target.peer === ref.peer);
  }

  /** Someone (the contact by default, or the custodian) reacts to a message. */
  async react(ref: LocalMessageRef, emoji: string, options: { readonly by?: 'contact' | 'self' } = {}): Promise<void> {
    const by = options.by === 'self' ? LOCAL_IDS.self : LOCAL_IDS.client;
    const reaction: tl.TypeReaction = { _: 'reactionEmoji', emoticon: emoji };
    const reactions: tl.TypeMessageReactions = {
      _: 'messageReactions',
      results: [{ _: 'reactionCount', reaction, count: 1, ...(by === LOCAL_IDS.self ? { chosenOrder: 1 } : {}) }],
      recentReactions: [{ _: 'messagePeerReaction', peerId: { _: 'peerUser', userId: by }, date: this.server.tick(), reaction }],
    };
    this.#reactions.set(`${ref.peer}:${ref.id}`, reactions);
    this.#push({ _: 'updateMessageReactions', peer: peerOf(ref.chat), msgId: ref.id, reactions }, ref.chat);
    await this.waitFor((input) => input.kind === 'reaction' && input.target?.id === String(ref.id) && input.reaction?.value === emoji);
  }

  /** Resolves with the first capture (past or future) matching `predicate`; rejects after the timeout. */
  waitFor(predicate: (input: CaptureInput, result: CaptureResult) => boolean, timeoutMs = this.#timeoutMs): Promise<{ input: CaptureInput; result: CaptureResult }> {
    return new Promise((resolve, reject) => {
      // Each capture is tested once: a waiter scans only what arrived since it last looked, so a
      // backlog of N captures costs N checks, not N² (the bench waits on thousands).
      let seen = 0;
      const check = (): boolean => {
        for (; seen < this.captured.length; seen++) {
          const entry = this.captured[seen] as (typeof this.captured)[number];
          if (!predicate(entry.input, entry.result)) continue;
          cleanup();
          resolve(entry);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new OffchannelError('TIMEOUT', `no matching capture within ${timeoutMs} ms (connector state: ${this.connector.status().state})`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      const wake = (): void => {
        check();
      };
      this.#waiters.add(wake);
      check();
    });
  }

  /**
   * Resolves once mtcute has dispatched an update matching `predicate` to the connector (past or
   * future). Follow with `connector.idle()` to wait for its capture to finish, successful or not.
   */
  async waitForDispatch(predicate: (update: tl.TypeUpdate) => boolean, timeoutMs = this.#timeoutMs): Promise<tl.TypeUpdate> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(wake);
        reject(new OffchannelError('TIMEOUT', `no matching update dispatched within ${timeoutMs} ms`));
      }, timeoutMs);
      let seen = 0;
      const wake = (): void => {
        for (; seen < this.dispatched.length; seen++) {
          const update = this.dispatched[seen] as tl.TypeUpdate;
          if (!predicate(update)) continue;
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve(update);
          return;
        }
      };
      this.#waiters.add(wake);
      wake();
    });
  }

  /** Pushes an update container to the client as the server would (assigning pts). */
  pushUpdate(update: tl.TypeUpdate, chat: LocalChat = 'direct'): void {
    this.#push(update, chat);
  }

  async #newMessage(chat: LocalChat, fields: { message: string; out: boolean; media?: tl.TypeMessageMedia; replyTo?: LocalMessageRef | undefined; forwarded?: boolean | undefined }): Promise<LocalMessageRef> {
    const message = this.#message(chat, fields);
    const update: tl.TypeUpdate = chat === 'supergroup' || chat === 'channel' ? { _: 'updateNewChannelMessage', message, pts: 0, ptsCount: 1 } : { _: 'updateNewMessage', message, pts: 0, ptsCount: 1 };
    this.#push(update, chat);
    const ref = this.#ref(message);
    await this.waitFor((input) => input.key === `message:${ref.peer}:${ref.id}`);
    return ref;
  }

  #message(chat: LocalChat, fields: { message: string; out: boolean; media?: tl.TypeMessageMedia; replyTo?: LocalMessageRef | undefined; forwarded?: boolean | undefined }): tl.RawMessage {
    const channelId = chat === 'supergroup' ? LOCAL_IDS.supergroup : chat === 'channel' ? LOCAL_IDS.channel : undefined;
    const from = fields.out ? LOCAL_IDS.self : chat === 'direct' ? LOCAL_IDS.client : LOCAL_IDS.colleague;
    const date = this.server.tick();
    return {
      _: 'message',
      id: this.server.messageId(channelId),
      out: fields.out,
      ...(chat === 'channel' ? { post: true } : { fromId: { _: 'peerUser', userId: from } }),
      peerId: peerOf(chat),
      date,
      message: fields.message,
      ...(fields.media ? { media: fields.media } : {}),
      ...(fields.replyTo ? { replyTo: { _: 'messageReplyHeader', replyToMsgId: fields.replyTo.id } } : {}),
      ...(fields.forwarded ? { fwdFrom: { _: 'messageFwdHeader', fromId: { _: 'peerUser', userId: LOCAL_IDS.colleague }, date: date - 60 } } : {}),
    };
  }

  #ref(message: tl.RawMessage): LocalMessageRef {
    const peer = message.peerId;
    const chat: LocalChat = peer._ === 'peerUser' ? 'direct' : peer._ === 'peerChat' ? 'group' : peer.channelId === LOCAL_IDS.supergroup ? 'supergroup' : 'channel';
    return { id: message.id, peer: String(getMarkedPeerId(peer)), chat };
  }

  #push(update: tl.TypeUpdate, chat: LocalChat): void {
    const client = this.#client;
    if (!client) throw new OffchannelError('NOT_STARTED', 'start the local peer before sending events');
    if ('pts' in update && 'ptsCount' in update) {
      const ordered = update as tl.TypeUpdate & { pts: number; ptsCount: number };
      if (chat === 'supergroup' || chat === 'channel') this.server.logChannel(chat === 'supergroup' ? LOCAL_IDS.supergroup : LOCAL_IDS.channel, ordered);
      else this.server.logCommon(ordered);
    }
    client.onServerUpdate.emit({ _: 'updates', updates: [update], users: [...this.server.users.values()], chats: [...this.server.chats.values()], date: this.server.tick(), seq: 0 });
  }
}

function channelIdOf(chat: 'supergroup' | 'channel'): number {
  return chat === 'supergroup' ? LOCAL_IDS.supergroup : LOCAL_IDS.channel;
}

function peerOf(chat: LocalChat): tl.TypePeer {
  switch (chat) {
    case 'direct':
      return { _: 'peerUser', userId: LOCAL_IDS.client };
    case 'group':
      return { _: 'peerChat', chatId: LOCAL_IDS.group };
    case 'supergroup':
      return { _: 'peerChannel', channelId: LOCAL_IDS.supergroup };
    case 'channel':
      return { _: 'peerChannel', channelId: LOCAL_IDS.channel };
  }
}

/** The fixture account: Alice (custodian), Dana (client), Sam (colleague), a group, a supergroup, a channel. */
function createLocalServer(): LocalTelegramServer {
  const server = new LocalTelegramServer({ _: 'user', id: LOCAL_IDS.self, self: true, accessHash: Long.fromNumber(11), firstName: 'Alice', lastName: 'Trader', username: 'alice_trader', phone: '15550000001' });
  server.users.set(LOCAL_IDS.client, { _: 'user', id: LOCAL_IDS.client, accessHash: Long.fromNumber(12), firstName: 'Dana', lastName: 'Client', username: 'dana_client' });
  server.users.set(LOCAL_IDS.colleague, { _: 'user', id: LOCAL_IDS.colleague, accessHash: Long.fromNumber(13), firstName: 'Sam', lastName: 'Colleague' });
  server.chats.set(LOCAL_IDS.group, { _: 'chat', id: LOCAL_IDS.group, title: 'Deal desk', photo: { _: 'chatPhotoEmpty' }, participantsCount: 3, date: 1_700_000_000, version: 1 });
  server.chats.set(LOCAL_IDS.supergroup, { _: 'channel', id: LOCAL_IDS.supergroup, megagroup: true, accessHash: Long.fromNumber(14), title: 'Trading floor', photo: { _: 'chatPhotoEmpty' }, date: 1_700_000_000 });
  server.chats.set(LOCAL_IDS.channel, { _: 'channel', id: LOCAL_IDS.channel, broadcast: true, accessHash: Long.fromNumber(15), title: 'Research notes', photo: { _: 'chatPhotoEmpty' }, date: 1_700_000_000 });
  return server;
}

/** Creates the offline harness. */
export function createLocalTelegramPeer(options: LocalTelegramPeerOptions = {}): LocalTelegramPeer {
  return new LocalTelegramPeer(options);
}

