/**
 * An in-process stand-in for Telegram's API servers, for offline tests and the demo. It keeps
 * the server side of the update protocol — the account's `pts`/`qts`/`seq`, each channel's
 * `pts`, the log of updates — and answers the RPCs the connector's mtcute client makes:
 * `updates.getState`, `updates.getDifference`, `updates.getChannelDifference`,
 * `upload.getFile`, `messages.getHistory`, and the login calls. Everything the client does
 * with the answers (gap detection, difference handling, flood waits) is mtcute's real code.
 */
import { Long, type tl } from '@mtcute/core';
import { LocalSrpVerifier } from './local-srp.ts';

/** Updates are dated from here (2023-11-14T22:13:20Z) onward, one second per event. */
const EPOCH = 1_700_000_000;

interface LoggedUpdate {
  readonly pts: number;
  readonly update: tl.TypeUpdate;
}

/** An RPC error the server will answer with, as mtcute receives it from the wire. */
export interface InjectedRpcError {
  readonly code: number;
  readonly message: string;
}

export class LocalTelegramServer {
  readonly self: tl.RawUser;
  readonly users = new Map<number, tl.RawUser>();
  readonly chats = new Map<number, tl.TypeChat>();
  /** Every RPC method called, in order (for assertions). */
  readonly calls: string[] = [];
  /** Every RPC request, in order. */
  readonly requests: tl.RpcMethod[] = [];
  pts = 100;
  qts = 0;
  seq = 0;
  #clock = EPOCH;
  #nextMessageId = 1000;
  readonly #commonLog: LoggedUpdate[] = [];
  readonly #channelPts = new Map<number, number>();
  readonly #channelLog = new Map<number, LoggedUpdate[]>();
  readonly #channelMessageIds = new Map<number, number>();
  readonly #history = new Map<string, (tl.RawMessage | tl.RawMessageService)[]>();
  readonly #files = new Map<string, Uint8Array>();
  readonly #failures = new Map<string, InjectedRpcError[]>();
  #differenceTooLong = false;
  /**
   * Most updates one `updates.getDifference` answers with; more pending → `updates.differenceSlice`
   * (with the intermediate state), as Telegram slices a long difference. Default: no limit.
   */
  differenceSliceSize = Number.POSITIVE_INFINITY;
  readonly #channelTooLong = new Set<number>();
  /** The login code the server accepts. */
  loginCode = '12345';
  /** Two-step verification, when set with {@link LocalTelegramServer.setPassword}. */
  #password: LocalSrpVerifier | undefined;

  readonly #holds = new Map<string, { gate: Promise<void>; reached: () => void }[]>();

  constructor(self: tl.RawUser) {
    this.self = self;
    this.users.set(self.id, self);
  }

  /** The next event time, in seconds. */
  tick(): number {
    return ++this.#clock;
  }

  /** A new message id: common box for users/basic groups, per channel otherwise. */
  messageId(channelId?: number): number {
    if (channelId === undefined) return ++this.#nextMessageId;
    const next = (this.#channelMessageIds.get(channelId) ?? 0) + 1;
    this.#channelMessageIds.set(channelId, next);
    return next;
  }

  /** Assigns the next pts to a common-box update and logs it (as the server would). */
  logCommon(update: tl.TypeUpdate & { pts: number; ptsCount: number }): void {
    this.pts += update.ptsCount;
    update.pts = this.pts;
    this.#commonLog.push({ pts: this.pts, update });
    this.#keepHistory(update);
  }

  /** Assigns the next channel pts to a channel update and logs it. */
  logChannel(channelId: number, update: tl.TypeUpdate & { pts: number; ptsCount: number }): void {
    const pts = (this.#channelPts.get(channelId) ?? 1) + update.ptsCount;
    this.#channelPts.set(channelId, pts);
    update.pts = pts;
    const log = this.#channelLog.get(channelId) ?? [];
    log.push({ pts, update });
    this.#channelLog.set(channelId, log);
    this.#keepHistory(update);
  }

  channelPts(channelId: number): number {
    return this.#channelPts.get(channelId) ?? 1;
  }

  /** Serves `bytes` for the document or photo with this id through `upload.getFile`. */
  serveFile(id: Long, bytes: Uint8Array): void {
    this.#files.set(id.toString(), bytes);
  }

  /** The next call(s) of `method` answer with this RPC error (queued, one per call). */
  failNext(method: string, error: InjectedRpcError): void {
    const queue = this.#failures.get(method) ?? [];
    queue.push(error);
    this.#failures.set(method, queue);
  }

  /** The next call of `method` waits until the returned function is called (then answers normally). */
  holdNext(method: string): { readonly held: Promise<void>; release(): void } {
    let release!: () => void;
    let reached!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const held = new Promise<void>((resolve) => (reached = resolve));
    const queue = this.#holds.get(method) ?? [];
    queue.push({ gate, reached });
    this.#holds.set(method, queue);
    return { held, release };
  }

  /** The next `updates.getDifference` says the gap is too long to replay (`differenceTooLong`). */
  forgetHistory(): void {
    this.#differenceTooLong = true;
  }

  /** Turns on two-step verification: sign-in then needs this password (checked with real SRP). */
  setPassword(password: string, hint?: string): void {
    this.#password = new LocalSrpVerifier(password, hint);
  }

  /** The next `updates.getChannelDifference` for this channel answers `channelDifferenceTooLong`. */
  forgetChannelHistory(channelId: number): void {
    this.#channelTooLong.add(channelId);
  }

  /**
   * Changes the server's history without any update reaching the client: a message that exists
   * only in history (sent before linking, or lost with a too-long difference), a silent edit, or
   * a message gone without a delete notification.
   */
  putHistory(message: tl.RawMessage): void {
    this.#keepHistory({ _: 'updateNewMessage', message, pts: 0, ptsCount: 0 });
  }

  removeHistory(peer: tl.TypePeer, id: number): void {
    const list = this.#history.get(historyKey(peer));
    const at = list?.findIndex((message) => message.id === id) ?? -1;
    if (list && at >= 0) list.splice(at, 1);
  }

  /** Answers one RPC, or returns an `mt_rpc_error` object exactly as the wire layer would. */
  async answer(request: tl.RpcMethod): Promise<unknown> {
    this.calls.push(request._);
    this.requests.push(request);
    const hold = this.#holds.get(request._)?.shift();
    if (hold) {
      hold.reached();
      await hold.gate;
    }
    const failure = this.#failures.get(request._)?.shift();
    if (failure) return { _: 'mt_rpc_error', errorCode: failure.code, errorMessage: failure.message };
    switch (request._) {
      case 'updates.getState':
        return this.#state();
      case 'updates.getDifference':
        return this.#difference(request);
      case 'updates.getChannelDifference':
        return this.#channelDifference(request);
      case 'upload.getFile':
        return this.#file(request);
      case 'messages.getHistory':
        return this.#historyOf(request);
      case 'messages.getDialogs':
        return this.#dialogs(request);
      case 'auth.sendCode':
        return { _: 'auth.sentCode', type: { _: 'auth.sentCodeTypeApp', length: this.loginCode.length }, phoneCodeHash: 'local-hash' } satisfies tl.auth.RawSentCode;
      case 'auth.signIn':
        if (request.phoneCode !== this.loginCode) return { _: 'mt_rpc_error', errorCode: 400, errorMessage: 'PHONE_CODE_INVALID' };
        if (this.#password) return { _: 'mt_rpc_error', errorCode: 401, errorMessage: 'SESSION_PASSWORD_NEEDED' };
        return { _: 'auth.authorization', user: this.self } satisfies tl.auth.RawAuthorization;
      case 'account.getPassword':
        return this.#password?.challenge() ?? { _: 'account.password', newAlgo: { _: 'passwordKdfAlgoUnknown' }, newSecureAlgo: { _: 'securePasswordKdfAlgoUnknown' }, secureRandom: new Uint8Array(32) };
      case 'auth.checkPassword':
        if (!this.#password?.verify(request.password)) return { _: 'mt_rpc_error', errorCode: 400, errorMessage: 'PASSWORD_HASH_INVALID' };
        return { _: 'auth.authorization', user: this.self } satisfies tl.auth.RawAuthorization;
      case 'help.getConfig':
      case 'help.getNearestDc':
        return { _: 'mt_rpc_error', errorCode: 400, errorMessage: 'NOT_AVAILABLE_OFFLINE' };
      default:
        return { _: 'mt_rpc_error', errorCode: 400, errorMessage: `METHOD_NOT_SERVED_LOCALLY_${request._.toUpperCase().replace(/\W/g, '_')}` };
    }
  }

  #state(): tl.updates.RawState {
    return { _: 'updates.state', pts: this.pts, qts: this.qts, date: this.#clock, seq: this.seq, unreadCount: 0 };
  }

  #difference(request: tl.updates.RawGetDifferenceRequest): tl.updates.TypeDifference {
    if (this.#differenceTooLong) {
      this.#differenceTooLong = false;
      return { _: 'updates.differenceTooLong', pts: this.pts };
    }
    const pending = this.#commonLog.filter((entry) => entry.pts > request.pts);
    if (pending.length === 0) return { _: 'updates.differenceEmpty', date: this.#clock, seq: this.seq };
    const missed = pending.slice(0, this.differenceSliceSize);
    const newMessages: tl.TypeMessage[] = [];
    const otherUpdates: tl.TypeUpdate[] = [];
    for (const { update } of missed) {
      if (update._ === 'updateNewMessage') newMessages.push(update.message);
      else otherUpdates.push(update);
    }
    const common = { newMessages, newEncryptedMessages: [], otherUpdates, users: [...this.users.values()], chats: [...this.chats.values()] };
    if (missed.length === pending.length) return { _: 'updates.difference', ...common, state: this.#state() };
    const last = missed[missed.length - 1] as LoggedUpdate;
    return { _: 'updates.differenceSlice', ...common, intermediateState: { ...this.#state(), pts: last.pts } };
  }

  #channelDifference(request: tl.updates.RawGetChannelDifferenceRequest): tl.updates.TypeChannelDifference {
    const channelId = request.channel._ === 'inputChannel' ? request.channel.channelId : 0;
    if (this.#channelTooLong.delete(channelId)) {
      const dialog = this.#dialogOf({ _: 'peerChannel', channelId });
      return { _: 'updates.channelDifferenceTooLong', final: true, dialog: { ...dialog, pts: this.channelPts(channelId) }, messages: [], chats: [...this.chats.values()], users: [...this.users.values()] };
    }
    const missed = (this.#channelLog.get(channelId) ?? []).filter((entry) => entry.pts > request.pts);
    const pts = this.channelPts(channelId);
    if (missed.length === 0) return { _: 'updates.channelDifferenceEmpty', final: true, pts };
    const newMessages: tl.TypeMessage[] = [];
    const otherUpdates: tl.TypeUpdate[] = [];
    for (const { update } of missed) {
      if (update._ === 'updateNewChannelMessage') newMessages.push(update.message);
      else otherUpdates.push(update);
    }
    return { _: 'updates.channelDifference', final: true, pts, newMessages, otherUpdates, users: [...this.users.values()], chats: [...this.chats.values()] };
  }

  #file(request: tl.upload.RawGetFileRequest): tl.upload.RawFile | { _: 'mt_rpc_error'; errorCode: number; errorMessage: string } {
    const location = request.location;
    const id = location._ === 'inputDocumentFileLocation' || location._ === 'inputPhotoFileLocation' ? location.id.toString() : '';
    const bytes = this.#files.get(id);
    if (!bytes) return { _: 'mt_rpc_error', errorCode: 400, errorMessage: 'FILE_REFERENCE_EXPIRED' };
    return { _: 'upload.file', type: { _: 'storage.filePartial' }, mtime: this.#clock, bytes: bytes.slice(request.offset, request.offset + request.limit) };
  }

  #historyOf(request: tl.messages.RawGetHistoryRequest): tl.messages.RawMessages | tl.messages.RawMessagesSlice {
    const peer = request.peer;
    const key =
      peer._ === 'inputPeerUser' ? historyKey({ _: 'peerUser', userId: peer.userId })
      : peer._ === 'inputPeerChat' ? historyKey({ _: 'peerChat', chatId: peer.chatId })
      : peer._ === 'inputPeerChannel' ? historyKey({ _: 'peerChannel', channelId: peer.channelId })
      : peer._ === 'inputPeerSelf' ? historyKey({ _: 'peerUser', userId: this.self.id })
      : '';
    const all = [...(this.#history.get(key) ?? [])].reverse(); // newest first, as Telegram answers
    const page = all.filter((message) => request.offsetId === 0 || message.id < request.offsetId).slice(0, request.limit > 0 ? request.limit : 100);
    const answer = { messages: page, chats: [...this.chats.values()], users: [...this.users.values()], topics: [] };
    // Like Telegram: the whole history fits → `messages.messages`; else a slice with the total count.
    return page.length < all.length ? { _: 'messages.messagesSlice', count: all.length, ...answer } : { _: 'messages.messages', ...answer };
  }

  /** Newest top message first; `offsetDate`/`offsetId` page on as Telegram does (a slice when more remain). */
  #dialogs(request: tl.messages.RawGetDialogsRequest): tl.messages.RawDialogs | tl.messages.RawDialogsSlice {
    const all: { dialog: tl.RawDialog; top: tl.TypeMessage }[] = [];
    for (const [key, list] of this.#history) {
      const top = list.at(-1);
      if (top) all.push({ dialog: this.#dialogOf(peerOfKey(key)), top });
    }
    const date = (message: tl.TypeMessage): number => (message._ === 'messageEmpty' ? 0 : message.date);
    all.sort((a, b) => date(b.top) - date(a.top) || b.top.id - a.top.id);
    const after = request.offsetDate === 0 ? all : all.filter(({ top }) => date(top) < request.offsetDate || (date(top) === request.offsetDate && top.id < request.offsetId));
    const page = after.slice(0, request.limit > 0 ? request.limit : 100);
    const answer = { dialogs: page.map(({ dialog }) => dialog), messages: page.map(({ top }) => top), chats: [...this.chats.values()], users: [...this.users.values()] };
    return page.length < all.length ? { _: 'messages.dialogsSlice', count: all.length, ...answer } : { _: 'messages.dialogs', ...answer };
  }

  #dialogOf(peer: tl.TypePeer): tl.RawDialog {
    const list = this.#history.get(historyKey(peer)) ?? [];
    return {
      _: 'dialog',
      peer,
      topMessage: list.at(-1)?.id ?? 0,
      readInboxMaxId: 0,
      readOutboxMaxId: 0,
      unreadCount: 0,
      unreadMentionsCount: 0,
      unreadReactionsCount: 0,
      unreadPollVotesCount: 0,
      notifySettings: { _: 'peerNotifySettings' },
    };
  }

  #keepHistory(update: tl.TypeUpdate): void {
    if (update._ === 'updateDeleteMessages') {
      for (const list of this.#history.values()) for (const id of update.messages) {
        const at = list.findIndex((message) => message.id === id && message.peerId._ !== 'peerChannel');
        if (at >= 0) list.splice(at, 1);
      }
      return;
    }
    if (update._ === 'updateDeleteChannelMessages') {
      for (const id of update.messages) this.removeHistory({ _: 'peerChannel', channelId: update.channelId }, id);
      return;
    }
    if (update._ !== 'updateNewMessage' && update._ !== 'updateNewChannelMessage' && update._ !== 'updateEditMessage' && update._ !== 'updateEditChannelMessage') return;
    const message = update.message;
    if (message._ === 'messageEmpty') return;
    const key = historyKey(message.peerId);
    const list = this.#history.get(key) ?? [];
    // A new message (ids only grow) goes last without a search: logging n messages stays O(n).
    const newest = list.at(-1);
    const at = newest === undefined || newest.id < message.id ? -1 : list.findIndex((existing) => existing.id === message.id);
    if (at >= 0) list[at] = message;
    else list.push(message);
    this.#history.set(key, list);
  }
}

function historyKey(peer: tl.TypePeer): string {
  return peer._ === 'peerUser' ? `u${peer.userId}` : peer._ === 'peerChat' ? `c${peer.chatId}` : `ch${peer.channelId}`;
}

function peerOfKey(key: string): tl.TypePeer {
  if (key.startsWith('ch')) return { _: 'peerChannel', channelId: Number(key.slice(2)) };
  if (key.startsWith('c')) return { _: 'peerChat', chatId: Number(key.slice(1)) };
  return { _: 'peerUser', userId: Number(key.slice(1)) };
}

/** A stable 64-bit id for fixtures. */
export function fixtureLong(value: number): Long {
  return Long.fromNumber(value);
}
