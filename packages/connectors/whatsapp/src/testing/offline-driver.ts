/**
 * The offline driver: the real WhatsApp connector, wired to an offline socket that runs
 * Baileys' own receive path, a loopback media CDN, and simulated contacts with real Signal
 * sessions. Tests and `offchannel demo` use it to exercise the whole capture path with no
 * WhatsApp server.
 *
 * ```ts
 * const driver = await createWhatsAppTestDriver({ account: 'demo' });
 * await driver.connector.start(ctx);               // ctx from createConnectorContext(...)
 * const m = await driver.incomingText('Buy 100 ACME');
 * await driver.edit(m, 'Buy 50 ACME', { encrypted: true });
 * await driver.react(m, '👍', { from: driver.me.id });
 * await driver.attachment({ kind: 'document', bytes, name: 'terms.pdf' });
 * await driver.revoke(m);
 * await driver.groupMembers('add', { members: [JIDS.bob] });
 * await driver.whenCaptured();                     // everything above is durable
 * await driver.close();                            // stops the connector and the media server
 * ```
 */
import { randomBytes } from 'node:crypto';
import type { ConnectorContext, StateStore } from '@offchannel/core';
import { BufferJSON, initAuthCreds, jidNormalizedUser, proto, type WAMessage, type WAMessageKey } from '@whiskeysockets/baileys';
import { createWhatsAppConnector, type WhatsAppConnector, type WhatsAppConnectorOptions } from '../whatsapp-connector.ts';
import { JIDS, editContent, encryptMedia, envelope, groupStub, mediaContent, reactionContent, revokeContent, secretEditContent, textContent } from './fixtures.ts';
import { startMediaServer, type MediaServer } from './media-server.ts';
import { createOfflineSocketFactory, type HistoryRequest, type OfflineSocket, type OfflineSocketFactory } from './offline-socket.ts';
import { createSignalPeer, type SignalPeer } from './signal-peer.ts';

export interface WhatsAppTestDriverOptions extends Partial<Omit<WhatsAppConnectorOptions, 'socketFactory'>> {
  /** First timestamp (seconds) for injected messages; each injection adds one second. Default 2026-11-21T09:00:00Z. */
  readonly startTime?: number;
}

/**
 * The custodian's phone, as far as reconciliation needs it: it keeps every message of every
 * chat (including those the linked device never received) and answers history requests.
 */
export interface TestPhone {
  /** An offline phone never answers (the default is online). */
  online: boolean;
  /** Replaces the inline payload of the next answers (hostile or broken phones); `undefined` sends the real one. */
  payload: ((request: HistoryRequest) => Uint8Array | undefined) | undefined;
  /** What the answers carry as `peerDataRequestSessionId`: the request's id (default), nothing, or an id of its own. */
  sessionIds: 'request' | 'none' | 'unrelated';
  /** Every request the phone received, and how many it answered. */
  readonly requests: HistoryRequest[];
  /** The phone's copy of every chat (normalized chat JID → messages, oldest first). */
  readonly history: Map<string, proto.IWebMessageInfo[]>;
  answered: number;
}

export interface WhatsAppTestDriver {
  /** The real connector (start it with a ConnectorContext). */
  readonly connector: WhatsAppConnector;
  readonly sockets: OfflineSocketFactory;
  readonly media: MediaServer;
  /** The custodian's identity; `JIDS` has the contacts (`alice`, `bob`, `group`). */
  readonly me: { readonly id: string; readonly lid: string };
  /** The socket the connector is using now. */
  socket(): OfflineSocket;
  /** The phone: its history and whether it answers history requests. */
  readonly phone: TestPhone;
  /**
   * A text message the phone has but that is not delivered to the connector (yet): hand it to
   * `socket().offlineDelivery(...)` or leave it out to simulate a message lost while disconnected.
   */
  offlineText(text: string, options?: { from?: string; to?: string; group?: string }): Promise<WAMessage>;
  /** A message from a contact, through real Signal encryption (pairwise, or sender keys in groups) unless `encrypted: false`. */
  incomingText(text: string, options?: { from?: string; group?: string; encrypted?: boolean; id?: string }): Promise<WAMessageKey>;
  /** A message the custodian sent from their phone (arrives as `append`, like Baileys' own-send echo). */
  outgoingText(text: string, options?: { to?: string; group?: string }): Promise<WAMessageKey>;
  /** Edits `target` (its author edits it). `encrypted` uses the current secretEncryptedMessage form. */
  edit(target: WAMessageKey, text: string, options?: { encrypted?: boolean }): Promise<WAMessageKey>;
  /** Revokes `target` ("delete for everyone"); `by` another group member makes it an admin revoke. */
  revoke(target: WAMessageKey, options?: { by?: string }): Promise<WAMessageKey>;
  /** Reacts to `target` (empty emoji removes the reaction). Default reactor: Alice. */
  react(target: WAMessageKey, emoji: string, options?: { from?: string }): Promise<WAMessageKey>;
  /** A media message whose file is served by the loopback CDN. `tamper` corrupts the served file. */
  attachment(options: { kind: 'image' | 'video' | 'audio' | 'document' | 'sticker'; bytes: Uint8Array; mime?: string; name?: string; caption?: string; from?: string; tamper?: boolean }): Promise<WAMessageKey>;
  /** A group membership change as Baileys upserts it (a stub message, `append`). Default: Alice adds Bob. */
  groupMembers(action: 'add' | 'remove' | 'promote' | 'demote', options?: { members?: string[]; by?: string; group?: string }): Promise<WAMessageKey>;
  /** Resolves when the connector has archived everything injected so far. */
  whenCaptured(): Promise<void>;
  /** Stops the connector (if started) and the media server. */
  close(): Promise<void>;
}

/** Writes linked-device credentials for the offline identity into a connector's state (only if none exist). */
export async function seedOfflineLink(state: StateStore, me: { id: string; lid: string } = { id: JIDS.me, lid: JIDS.meLid }): Promise<void> {
  const auth = state.scope('auth');
  if ((await auth.get('creds')) !== undefined) return;
  const creds = initAuthCreds();
  creds.me = { id: me.id, lid: me.lid, name: 'Custodian' };
  creds.registered = true;
  await auth.set('creds', Buffer.from(JSON.stringify(creds, BufferJSON.replacer), 'utf8'));
}

export async function createWhatsAppTestDriver(options: WhatsAppTestDriverOptions = {}): Promise<WhatsAppTestDriver> {
  const media = await startMediaServer();
  /** The phone's copy of every chat, oldest first (what an ON_DEMAND answer is cut from). */
  const history = new Map<string, proto.IWebMessageInfo[]>();
  const phone: TestPhone = { online: true, payload: undefined, sessionIds: 'request', requests: [], answered: 0, history };
  const keep = (message: proto.IWebMessageInfo) => {
    const chat = jidNormalizedUser(message.key?.remoteJid ?? '');
    const copy = proto.WebMessageInfo.decode(proto.WebMessageInfo.encode(message).finish());
    history.set(chat, [...(history.get(chat) ?? []), copy]);
  };
  // The phone answers like WhatsApp's: the `count` messages of the chat before the anchor.
  const answer = (socket: OfflineSocket, request: HistoryRequest) => {
    phone.requests.push(request);
    if (!phone.online) return;
    const chat = jidNormalizedUser(request.oldestKey.remoteJid ?? '');
    const all = history.get(chat) ?? [];
    const at = all.findIndex((m) => m.key?.id === request.oldestKey.id);
    const before = at >= 0 ? all.slice(0, at) : all.filter((m) => Number(m.messageTimestamp) * 1000 < request.oldestTimestampMs);
    const page = before.slice(-request.count);
    const sync: proto.IHistorySync = {
      syncType: proto.HistorySync.HistorySyncType.ON_DEMAND,
      conversations: [{ id: chat, messages: page.map((message, i) => ({ message, msgOrderId: i + 1 })) }],
      chunkOrder: 0,
      progress: 100,
    };
    phone.answered++;
    const payload = phone.payload?.(request);
    const sessionId = phone.sessionIds === 'request' ? request.id : phone.sessionIds === 'unrelated' ? `${request.id}-other` : undefined;
    void socket.historyNotification(sync, { ...(sessionId ? { sessionId } : {}), ...(payload ? { payload } : {}) }).catch(() => undefined);
  };
  const sockets = createOfflineSocketFactory({ onHistoryRequest: answer });
  const inner = createWhatsAppConnector({
    account: options.account ?? 'demo',
    ...options,
    media: { ...media.downloaderOptions, timeoutMs: 5000, ...options.media },
    reconnect: { initialDelayMs: 10, maxDelayMs: 100, ...options.reconnect },
    socketFactory: sockets.factory,
  });
  // The real connector; start() first seeds offline linked-device credentials into its state.
  const connector: WhatsAppConnector = {
    specVersion: inner.specVersion,
    channel: inner.channel,
    account: inner.account,
    source: inner.source,
    start: async (ctx: ConnectorContext) => {
      await seedOfflineLink(ctx.state);
      await inner.start(ctx);
    },
    stop: () => inner.stop(),
    status: () => inner.status(),
    whenIdle: () => inner.whenIdle(),
    checkCompleteness: () => { inner.checkCompleteness(); },
    reconcile: (o) => inner.reconcile(o),
  };
  const me = { id: JIDS.me, lid: JIDS.meLid };
  let clock = options.startTime ?? Date.UTC(2026, 10, 21, 9, 0, 0) / 1000;
  let sequence = 0;
  const nextId = () => `3EB0${Date.now().toString(16).toUpperCase()}${(++sequence).toString(16).toUpperCase().padStart(6, '0')}`;
  const peers = new Map<string, SignalPeer>();
  const secrets = new Map<string, Uint8Array>();
  let preKeyId = 1000;

  const socket = () => sockets.current();
  const peer = async (jid: string): Promise<SignalPeer> => {
    let existing = peers.get(jid);
    if (!existing) {
      const current = socket();
      const auth = current.config.auth;
      if (!auth) throw new Error('socket has no auth state');
      existing = await createSignalPeer(jid, { creds: auth.creds, keys: current.keys }, ++preKeyId);
      peers.set(jid, existing);
    }
    return existing;
  };
  /** The key as its author wrote it (the sender's perspective). */
  const authorView = (target: WAMessageKey): WAMessageKey => (target.fromMe === true || target.participant ? { ...target } : { remoteJid: me.id, fromMe: true, id: target.id ?? null });
  const authorOf = (target: WAMessageKey): string => (target.fromMe === true ? me.id : (target.participant || target.remoteJid || JIDS.alice));

  const inject = async (content: proto.IMessage, where: { from: string; group?: string; to?: string; id?: string }, encrypted: boolean): Promise<WAMessageKey> => {
    const id = where.id ?? nextId();
    const t = ++clock;
    const mine = where.from === me.id;
    keep(envelope(content, { ...where, id, t }));
    if (encrypted && !mine) {
      const sender = await peer(where.from);
      const stanza = where.group ? await sender.groupStanza(where.group, content, { id, t }) : await sender.stanza(content, { id, t });
      const message = await socket().deliverStanza(stanza, 'notify');
      return { ...message.key };
    }
    const message = envelope(content, { ...where, id, t });
    await socket().deliver(message, mine ? 'append' : 'notify');
    return { ...message.key };
  };

  return {
    connector,
    sockets,
    media,
    me,
    socket,
    phone,
    async offlineText(text, opts = {}) {
      const from = opts.from ?? JIDS.alice;
      const where = { from, id: nextId(), t: ++clock, ...(opts.group ? { group: opts.group } : {}), ...(opts.to ? { to: opts.to } : {}) };
      const message = envelope(await textContent(text, from), where);
      keep(message);
      return message;
    },
    async incomingText(text, opts = {}) {
      const from = opts.from ?? JIDS.alice;
      const secret = randomBytes(32);
      const key = await inject(await textContent(text, from, secret), { from, ...(opts.group ? { group: opts.group } : {}), ...(opts.id ? { id: opts.id } : {}) }, opts.encrypted !== false);
      secrets.set(key.id ?? '', secret);
      return key;
    },
    async outgoingText(text, opts = {}) {
      const secret = randomBytes(32);
      const key = await inject(await textContent(text, me.id, secret), { from: me.id, ...(opts.group ? { group: opts.group } : { to: opts.to ?? JIDS.alice }) }, false);
      secrets.set(key.id ?? '', secret);
      return key;
    },
    async edit(target, text, opts = {}) {
      const author = authorOf(target);
      const group = target.remoteJid?.endsWith('@g.us') ? target.remoteJid : undefined;
      const secret = secrets.get(target.id ?? '');
      const content =
        opts.encrypted === true && secret
          ? secretEditContent({ text, target: authorView(target), secret, originalSender: author, editor: author })
          : await editContent(text, authorView(target));
      return inject(content, { from: author, ...(group ? { group } : { to: target.remoteJid ?? JIDS.alice }) }, true);
    },
    async revoke(target, opts = {}) {
      const author = opts.by ?? authorOf(target);
      const group = target.remoteJid?.endsWith('@g.us') ? target.remoteJid : undefined;
      const key = opts.by && group ? { remoteJid: group, fromMe: false, id: target.id ?? null, participant: authorOf(target) } : authorView(target);
      return inject(await revokeContent(key), { from: author, ...(group ? { group } : { to: target.remoteJid ?? JIDS.alice }) }, true);
    },
    async react(target, emoji, opts = {}) {
      const from = opts.from ?? JIDS.alice;
      const group = target.remoteJid?.endsWith('@g.us') ? target.remoteJid : undefined;
      // As the reactor wrote it: "fromMe" means the reactor's own message.
      const key: WAMessageKey = { remoteJid: group ?? (from === me.id ? (target.remoteJid ?? JIDS.alice) : me.id), fromMe: authorOf(target) === from, id: target.id ?? null, ...(group ? { participant: authorOf(target) } : {}) };
      return inject(await reactionContent(key, emoji), { from, ...(group ? { group } : { to: target.remoteJid ?? JIDS.alice }) }, true);
    },
    async attachment(opts) {
      const from = opts.from ?? JIDS.alice;
      const encryptedFile = await encryptMedia(opts.bytes, opts.kind);
      const name = `media-${++sequence}`;
      const file = Uint8Array.from(encryptedFile.file);
      if (opts.tamper) file[Math.floor(file.length / 2)] = (file[Math.floor(file.length / 2)] ?? 0) ^ 0xff;
      const url = media.put(name, file);
      const content = mediaContent(opts.kind, encryptedFile, url, {
        ...(opts.mime ? { mimetype: opts.mime } : {}),
        ...(opts.name ? { fileName: opts.name } : {}),
        ...(opts.caption ? { caption: opts.caption } : {}),
      });
      return inject(content, { from, ...(from === me.id ? { to: JIDS.alice } : {}) }, true);
    },
    async groupMembers(action, opts = {}) {
      const stubs = {
        add: proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_ADD,
        remove: proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_REMOVE,
        promote: proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_PROMOTE,
        demote: proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_DEMOTE,
      } as const;
      const params = (opts.members ?? [JIDS.bob]).map((id) => JSON.stringify({ id }));
      const stub = groupStub(stubs[action], params, { from: opts.by ?? JIDS.alice, group: opts.group ?? JIDS.group, id: nextId(), t: ++clock });
      await socket().deliver(stub, 'append');
      return { ...stub.key };
    },
    whenCaptured: () => inner.whenIdle(),
    async close() {
      await inner.stop();
      await media.close();
    },
  };
}
