/**
 * An offline stand-in for `makeWASocket` that runs Baileys' own receive-side code with no
 * network: the real event buffer (`makeEventBuffer`), the real Signal repository built from the
 * connector's auth state (`DEFAULT_CONNECTION_CONFIG.makeSignalRepository` over
 * `addTransactionCapability`, exactly as `makeWASocket` builds it), `decryptMessageNode` for
 * encrypted stanzas, `cleanMessage`, and `processMessage` inside `createBufferedFunction` — the
 * same sequence as Baileys' `handleMessage` → `upsertMessage` (Socket/messages-recv.js and
 * Socket/chats.js of 7.0.0-rc14). What it does NOT run is the WebSocket/Noise transport and
 * the receipts/retries that need a server.
 */
import {
  DEFAULT_CONNECTION_CONFIG,
  PROCESSABLE_HISTORY_TYPES,
  addTransactionCapability,
  cleanMessage,
  decodeBinaryNode,
  decryptMessageNode,
  encodeBinaryNode,
  generateMessageIDV2,
  getHistoryMsg,
  makeEventBuffer,
  processHistoryMessage,
  proto,
  jidNormalizedUser,
  type BinaryNode,
  type MessageUpsertType,
  type SignalKeyStoreWithTransaction,
  type SignalRepositoryWithLIDStore,
  type UserFacingSocketConfig,
  type WAMessage,
  type WAMessageKey,
} from '@whiskeysockets/baileys';
import { EventEmitter } from 'node:events';
import { deflateSync } from 'node:zlib';
import processMessage from '@whiskeysockets/baileys/lib/Utils/process-message.js';
import type { ILogger } from '@whiskeysockets/baileys/lib/Utils/logger.js';
import type { WhatsAppSocket, WhatsAppSocketFactory } from '../whatsapp-connector.ts';

const silent: ILogger = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/** What `fetchMessageHistory` sent the phone (a `HISTORY_SYNC_ON_DEMAND` peer-data operation). */
export interface HistoryRequest {
  /** The request message's id: the phone's answer carries it as `peerDataRequestSessionId`. */
  readonly id: string;
  readonly count: number;
  readonly oldestKey: WAMessageKey;
  readonly oldestTimestampMs: number;
}

/** A socket the test (or demo) drives by hand. */
export interface OfflineSocket extends WhatsAppSocket {
  readonly ended: boolean;
  /** The socket's Signal repository (decrypts with the connector's own stored keys). */
  readonly signal: SignalRepositoryWithLIDStore;
  readonly keys: SignalKeyStoreWithTransaction;
  readonly config: UserFacingSocketConfig;
  /** Emits `connection.update` open. */
  open(): void;
  /** Emits `connection.update` close with this status code (Baileys' DisconnectReason). */
  close(code: number): void;
  /** What Baileys' upsertMessage does with a decrypted message. */
  deliver(message: WAMessage, type?: MessageUpsertType): Promise<void>;
  /** What Baileys' handleMessage does with an encrypted `<message>` stanza (after a binary-codec round trip). */
  deliverStanza(node: BinaryNode, type?: MessageUpsertType): Promise<WAMessage>;
  /** Runs `work` inside one event-buffer window, as during reconnect catch-up, then flushes. */
  catchUp(work: () => Promise<void>): Promise<void>;
  /** A history-sync chunk, through a real HistorySync protobuf round trip and `processHistoryMessage`. */
  history(sync: proto.IHistorySync): void;
  /**
   * What the phone's answer to a history request looks like: a `HISTORY_SYNC_NOTIFICATION`
   * protocol message from the custodian's own device carrying the `HistorySync` zlib-deflated
   * inline (`payload` replaces those bytes, e.g. with hostile ones), through Baileys'
   * `processMessage` history path. `from` sends it from that contact instead (a spoofed one).
   */
  historyNotification(sync: proto.IHistorySync, options?: { readonly sessionId?: string; readonly payload?: Uint8Array; readonly from?: string }): Promise<void>;
  /** Every history request the connector sent on this socket. */
  readonly historyRequests: readonly HistoryRequest[];
  /** An app-state "delete for me". */
  deleteForMe(keys: proto.IMessageKey[]): void;
  /**
   * What a reconnect after downtime looks like: the server's `<ib><offline_preview>` announcing
   * `announced` messages (default: as many as given), each message as an offline `append`
   * upsert, then the `<ib><offline>` end marker — the frames Baileys' socket emits on `ws` —
   * and `late` messages after the marker (still being decrypted when it arrived).
   */
  offlineDelivery(messages: WAMessage[], options?: { announced?: number; late?: WAMessage[] }): Promise<void>;
}

/** Factory plus a handle on every socket it made (the connector makes a new one per reconnect). */
export interface OfflineSocketFactory {
  readonly factory: WhatsAppSocketFactory;
  readonly sockets: readonly OfflineSocket[];
  /** The most recent socket. Throws if none was made yet. */
  current(): OfflineSocket;
  /** Resolves with the next socket the connector makes. */
  next(): Promise<OfflineSocket>;
}

export function createOfflineSocketFactory(options: { readonly autoOpen?: boolean; readonly onHistoryRequest?: (socket: OfflineSocket, request: HistoryRequest) => void } = {}): OfflineSocketFactory {
  const sockets: OfflineSocket[] = [];
  const waiters: ((socket: OfflineSocket) => void)[] = [];
  const factory: WhatsAppSocketFactory = (config) => {
    const socket = makeOfflineSocket(config, options.onHistoryRequest);
    sockets.push(socket);
    for (const waiter of waiters.splice(0)) waiter(socket);
    if (options.autoOpen !== false) queueMicrotask(() => { socket.open(); });
    return socket;
  };
  return {
    factory,
    sockets,
    current() {
      const socket = sockets.at(-1);
      if (!socket) throw new Error('no socket was made yet');
      return socket;
    },
    next: () => new Promise((resolve) => waiters.push(resolve)),
  };
}

function makeOfflineSocket(config: UserFacingSocketConfig, onHistoryRequest?: (socket: OfflineSocket, request: HistoryRequest) => void): OfflineSocket {
  const auth = config.auth;
  if (!auth) throw new Error('offline socket needs config.auth');
  const creds = auth.creds;
  const me = creds.me;
  if (!me?.id) throw new Error('offline socket needs linked credentials (creds.me)');
  const ev = makeEventBuffer(silent);
  const keys = addTransactionCapability(auth.keys, silent, { maxCommitRetries: 3, delayBetweenTriesMs: 10 });
  const signal = (config.makeSignalRepository ?? DEFAULT_CONNECTION_CONFIG.makeSignalRepository)({ creds, keys }, silent, async () => []);
  let ended = false;
  const ws = new EventEmitter();
  const historyRequests: HistoryRequest[] = [];
  const shouldSync = config.shouldSyncHistoryMessage ?? (() => true);

  const upsert = ev.createBufferedFunction(async (message: WAMessage, type: MessageUpsertType) => {
    ev.emit('messages.upsert', { messages: [message], type });
    // As Baileys' upsertMessage decides (Socket/chats.js, with our patch passing the message).
    const historyMsg = message.message ? getHistoryMsg(message.message) : undefined;
    const shouldProcessHistoryMsg = historyMsg ? shouldSync(historyMsg, message) && historyMsg.syncType !== null && historyMsg.syncType !== undefined && (PROCESSABLE_HISTORY_TYPES as readonly number[]).includes(historyMsg.syncType) : false;
    await processMessage(message, {
      shouldProcessHistoryMsg,
      ev,
      creds,
      keyStore: keys,
      signalRepository: signal,
      logger: silent,
      options: {},
      getMessage: config.getMessage ?? (async () => undefined),
    });
  });

  const socket: OfflineSocket = {
    ev,
    ws,
    signal,
    keys,
    config,
    get ended() {
      return ended;
    },
    end() {
      ended = true;
    },
    open() {
      if (ended) return;
      ev.emit('connection.update', { connection: 'connecting' });
      ev.emit('connection.update', { connection: 'open', receivedPendingNotifications: true });
    },
    close(code) {
      const error = Object.assign(new Error(`offline socket closed (${code})`), { isBoom: true, output: { statusCode: code, payload: {} } });
      ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } });
    },
    async deliver(message, type = 'notify') {
      cleanMessage(message, me.id, me.lid ?? '');
      await upsert(message, type);
    },
    async deliverStanza(node, type = 'notify') {
      const stanza = await decodeBinaryNode(encodeBinaryNode(node));
      const decoded = decryptMessageNode(stanza, me.id, me.lid ?? '', signal, silent);
      await decoded.decrypt();
      cleanMessage(decoded.fullMessage, me.id, me.lid ?? '');
      await upsert(decoded.fullMessage, type);
      return decoded.fullMessage;
    },
    async catchUp(work) {
      ev.buffer();
      try {
        await work();
      } finally {
        ev.flush();
      }
    },
    history(sync) {
      const decoded = proto.HistorySync.decode(proto.HistorySync.encode(sync).finish());
      const data = processHistoryMessage(decoded, silent);
      ev.emit('messaging-history.set', {
        chats: data.chats,
        contacts: data.contacts,
        messages: data.messages,
        lidPnMappings: data.lidPnMappings,
        syncType: data.syncType ?? null,
        progress: data.progress ?? null,
        isLatest: true,
      });
    },
    historyRequests,
    // As Baileys' messages-recv.js builds the request; the "phone" (onHistoryRequest) answers or not.
    fetchMessageHistory(count, oldestKey, oldestTimestampMs) {
      const request: HistoryRequest = { id: generateMessageIDV2(me.id), count, oldestKey: { ...oldestKey }, oldestTimestampMs };
      historyRequests.push(request);
      if (onHistoryRequest) setImmediate(() => { onHistoryRequest(socket, request); });
      return Promise.resolve(request.id);
    },
    async historyNotification(sync, options = {}) {
      const payload = options.payload ?? Uint8Array.from(deflateSync(proto.HistorySync.encode(sync).finish()));
      const self = jidNormalizedUser(me.id);
      const message = proto.WebMessageInfo.fromObject({
        key: options.from ? { remoteJid: options.from, fromMe: false, id: generateMessageIDV2() } : { remoteJid: self, fromMe: true, id: generateMessageIDV2(me.id) },
        messageTimestamp: sync.conversations?.[0]?.messages?.[0]?.message?.messageTimestamp ?? 0,
        message: {
          protocolMessage: {
            type: proto.Message.ProtocolMessage.Type.HISTORY_SYNC_NOTIFICATION,
            historySyncNotification: {
              syncType: sync.syncType ?? proto.HistorySync.HistorySyncType.ON_DEMAND,
              chunkOrder: sync.chunkOrder ?? 0,
              progress: sync.progress ?? 100,
              initialHistBootstrapInlinePayload: payload,
              ...(options.sessionId ? { peerDataRequestSessionId: options.sessionId } : {}),
            },
          },
        },
      }) as WAMessage;
      await socket.deliver(message, 'notify');
    },
    deleteForMe(deleted) {
      ev.emit('messages.delete', { keys: deleted });
    },
    async offlineDelivery(messages, options = {}) {
      const announced = options.announced ?? messages.length;
      const frame = (tag: string, attrs: Record<string, string>): Promise<BinaryNode> => decodeBinaryNode(encodeBinaryNode({ tag: 'ib', attrs: {}, content: [{ tag, attrs }] }));
      ws.emit('CB:ib,,offline_preview', await frame('offline_preview', { count: String(announced + 3), message: String(announced), receipt: '3', notification: '0' }));
      for (const message of messages) await socket.deliver(message, 'append');
      ws.emit('CB:ib,,offline', await frame('offline', { count: String(messages.length + 3) }));
      ev.emit('connection.update', { receivedPendingNotifications: true });
      // Messages Baileys was still decrypting when the end marker arrived.
      for (const message of options.late ?? []) await socket.deliver(message, 'append');
    },
  };
  return socket;
}
