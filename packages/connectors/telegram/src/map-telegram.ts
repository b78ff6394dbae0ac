/**
 * The mapping from Telegram MTProto updates (TL objects, layer {@link TL_LAYER}) to capture
 * inputs. This file is the whole of it: an auditor can read it top to bottom. It is pure — no
 * I/O, no clock. The connector resolves what needs I/O first (media bytes, the chat a
 * private-chat delete belongs to, what was recorded for a message before) and passes it in
 * {@link TelegramMapEnv}.
 *
 * Identities (all strings):
 * - a conversation id is Telegram's *marked* peer id: users `123`, basic groups `-123`,
 *   supergroups and channels `-100123…`;
 * - a message's `native` is `{ id: <message id>, peer: <conversation id> }`; edits, deletes and
 *   reactions name it as `target`;
 * - every record's `raw` is TL bytes (see `tl-evidence.ts`): a live update as an `updates`
 *   container holding that one update and the users and chats it references ({@link updateEvidence}),
 *   a message found in history as a one-message `messages.messages` ({@link historyEvidence}),
 *   a delete found by reconciliation as the history page that no longer holds the message.
 *
 * Recorded context. A decision that depends on what was recorded before names that record in
 * `meta`, so it can be re-derived from the archive alone ({@link evidenceOf}, {@link memoryFromRecords}):
 * - an `edit` names the record whose content it was compared with: `meta.comparedWith`
 *   (or says `meta.previousUnknown`);
 * - a `reaction` compared with an earlier reaction set names the record holding that set
 *   (`meta.comparedWith`);
 * - a `delete` whose chat or direction came from an earlier record names it (`meta.resolvedFrom`);
 * - `selfId` (the custodian's Telegram user id) is recorded once per stream in the `system`
 *   record `telegram-session` ({@link sessionInput}).
 */
import { hash } from 'node:crypto';
import type { AttachmentInput, CaptureInput, ConversationRef, MembershipDetail, NativeRef, Party } from '@offchannel/core';
import { sha256Hex } from '@offchannel/core';
import { getMarkedPeerId, tl } from '@mtcute/core';
import { TL_LAYER, TL_RAW_FORMAT, TelegramDecodeError, decodeTl, encodeTl, encodeUpdatesContainer } from './tl-evidence.ts';

/** MIME type of an attachment that holds a media object's TL bytes (locations, contacts, polls, link previews…). */
export const TL_MEDIA_MIME = 'application/x-telegram-tl';

/** Users and chats that came with the update (mtcute's `PeersIndex` satisfies this). */
export interface PeerLookup {
  readonly users: ReadonlyMap<number, tl.TypeUser>;
  readonly chats: ReadonlyMap<number, tl.TypeChat>;
}

/** What the connector recorded earlier for one message (kept in `ctx.state`). */
export interface MessageMemory {
  /** Marked peer id of the conversation. */
  readonly peer: string;
  /** {@link contentFingerprint} of the last recorded content. */
  readonly fingerprint: string;
  /** `<reactor>|<reaction>` pairs last seen on the message. */
  readonly reactions: readonly string[];
  readonly direction: 'inbound' | 'outbound';
  readonly type: ConversationRef['type'];
  /** Key of the record whose raw bytes hold the content last recorded (absent in indexes older than this field). */
  readonly contentKey?: string;
  /** Key of the record whose raw bytes hold the reaction set last recorded. */
  readonly reactionsKey?: string;
}

/** Everything the mapping needs besides the update itself. */
export interface TelegramMapEnv {
  /** The custodian's Telegram user id. */
  readonly selfId: number;
  readonly peers: PeerLookup;
  /** The update's TL bytes (`encodeTl(update)`), stored as the record's raw evidence. */
  readonly raw: Uint8Array;
  /** Downloaded media of the update's message, or an unavailable marker saying why not. */
  readonly attachments?: readonly AttachmentInput[];
  /** What was recorded before for the update's message(s), by message id. */
  readonly memory?: ReadonlyMap<number, MessageMemory>;
  /** `pts` of the update, when the connector knows it (used in keys of id-only deletes). */
  readonly pts?: number;
  /**
   * When the connector received the update. Telegram gives deletes and some reaction changes no
   * timestamp; their `sentAt` is this time and `meta.sentAtIsReceipt` says so.
   */
  readonly receivedAt: Date;
  /** Where the update came from when not live delivery (e.g. `messages.getHistory`); stamped as `meta.source`. */
  readonly source?: string;
}

/** How a message's media can be downloaded: handed to the download seam by the connector. */
export interface MediaDescriptor {
  readonly kind: 'photo' | 'document';
  readonly location: tl.TypeInputFileLocation;
  readonly dcId: number;
  readonly mime: string;
  readonly name?: string;
  readonly size?: number;
}

/** Updates that carry no message content and are deliberately not recorded (listed for auditors). */
export const IGNORED_UPDATES: ReadonlySet<string> = new Set([
  'mtcute.dummyUpdate', // mtcute's internal placeholder
  'updateUserStatus', 'updateUserTyping', 'updateChatUserTyping', 'updateChannelUserTyping', // presence
  'updateReadHistoryInbox', 'updateReadHistoryOutbox', 'updateReadChannelInbox', 'updateReadChannelOutbox', // read marks
  'updateReadChannelDiscussionInbox', 'updateReadChannelDiscussionOutbox', 'updateReadMessagesContents', 'updateChannelReadMessagesContents',
  'updateDraftMessage', 'updateDialogPinned', 'updatePinnedDialogs', 'updateDialogUnreadMark', 'updateFolderPeers', // client UI state
  'updateUserName', 'updateUser', 'updateUserEmojiStatus', 'updateChannel', 'updateChat', 'updatePeerSettings', // profile refreshes
  'updateNotifySettings', 'updateDcOptions', 'updateConfig', 'updatePtsChanged', 'updateMessageID', // session plumbing
  'updateChannelMessageViews', 'updateChannelMessageForwards', 'updateWebPage', 'updateChannelWebPage', // counters, previews
  'updateNewScheduledMessage', 'updateDeleteScheduledMessages', // scheduled drafts: the sent message is captured when sent
  'updatePinnedMessages', 'updatePinnedChannelMessages', // pins: the pin service message is captured
  'updateStickerSets', 'updateStickerSetsOrder', 'updateRecentStickers', 'updateSavedGifs', 'updateFavedStickers', 'updateRecentReactions',
  'updateSavedReactionTags', 'updateRecentEmojiStatuses', 'updateTheme', 'updatePrivacy', 'updateChatDefaultBannedRights',
  'updateSavedRingtones', 'updateReadFeaturedStickers', 'updateReadFeaturedEmojiStickers', 'updateAttachMenuBots', 'updateLangPack', 'updateLangPackTooLong',
  'updateChatParticipants', 'updateChatParticipantAdmin', 'updatePeerHistoryTTL', // membership/settings: the service messages are captured
  'updateContactsReset', 'updatePeerBlocked', 'updatePeerWallpaper', 'updateAutoSaveSettings', 'updateStarsBalance', // account settings
  'updateDialogFilter', 'updateDialogFilterOrder', 'updateDialogFilters', 'updateSavedDialogPinned', 'updatePinnedSavedDialogs', // folders
  'updateChannelViewForumAsMessages', 'updateChannelPinnedTopic', 'updateChannelPinnedTopics', 'updateTranscribedAudio',
  'updateStory', 'updateStoryID', 'updateReadStories', 'updateStoriesStealthMode', 'updateSentStoryReaction', 'updateNewStoryReaction', // stories: not messages
]);

/**
 * Maps one update to capture inputs (zero, one or several). Never throws for a well-formed TL
 * object: anything it cannot map becomes an `unsupported` record holding the raw bytes.
 */
export function mapTelegramUpdate(update: tl.TypeUpdate, env: TelegramMapEnv): CaptureInput[] {
  const inputs = mapLiveUpdate(update, env);
  const source = env.source;
  return source === undefined ? inputs : inputs.map((input) => ({ ...input, meta: { ...input.meta, source } }));
}

function mapLiveUpdate(update: tl.TypeUpdate, env: TelegramMapEnv): CaptureInput[] {
  switch (update._) {
    case 'updateNewMessage':
    case 'updateNewChannelMessage':
      return mapNewMessage(update.message, env);
    case 'updateEditMessage':
    case 'updateEditChannelMessage':
      return mapEditedMessage(update.message, env);
    case 'updateDeleteMessages':
      return update.messages.map((id) => mapCommonBoxDelete(id, env));
    case 'updateDeleteChannelMessages': {
      const peer = String(getMarkedPeerId(update.channelId, 'channel'));
      return update.messages.map((id) => mapDelete(id, peer, conversationOf({ _: 'peerChannel', channelId: update.channelId }, env.peers, false), env, true));
    }
    case 'updateMessageReactions':
      // Reactions on one message changed (groups and channels; private chats may also use edits).
      return reactionChanges(update.msgId, String(getMarkedPeerId(update.peer)), update.reactions, env, env.memory?.get(update.msgId)?.reactions ?? [], update.peer, env.memory?.get(update.msgId)?.reactionsKey);
    case 'updateEncryption':
      return [secretChatSeen(update.chat, update.date, env)];
    case 'updateNewEncryptedMessage':
      return [
        {
          kind: 'undecryptable',
          key: `undecryptable:secret:${update.message.chatId}:${update.qts}`,
          sentAt: new Date(update.message.date * 1000),
          problem: { reason: 'secret-chat', detail: `secret chat ${update.message.chatId}: end-to-end encrypted on another device; no route can decrypt it` },
          raw: rawOf(env),
        },
      ];
    default:
      if (IGNORED_UPDATES.has(update._)) return [];
      return [unsupportedUpdate(env.raw, 'unmapped-update', `constructor ${update._}`)];
  }
}

/**
 * Maps an update given as TL bytes (a recorded or replayed update). Bytes that do not decode —
 * truncated, malformed, a constructor this layer does not know, not an update at all — become
 * one `unsupported` record holding them, so nothing is lost and a newer schema can re-read them.
 */
export function mapTelegramRaw(bytes: Uint8Array, env: Omit<TelegramMapEnv, 'raw'>): CaptureInput[] {
  let object: tl.TlObject;
  try {
    object = decodeTl(bytes);
  } catch (error) {
    const unknown = error instanceof TelegramDecodeError && error.code === 'TELEGRAM_TL_UNKNOWN_CONSTRUCTOR';
    return [unsupportedUpdate(bytes, unknown ? 'unknown-constructor' : 'malformed-tl', unknown ? `constructor ${error.constructorId ?? '?'} is not in layer ${TL_LAYER}` : `not a valid layer ${TL_LAYER} TL object`)];
  }
  if (object._ === 'updates' && object.updates.length === 1 && object.updates[0]) {
    return mapTelegramUpdate(object.updates[0], { ...env, raw: bytes, peers: peersOf(object) });
  }
  if (!tl.isAnyUpdate(object)) return [unsupportedUpdate(bytes, 'not-an-update', `constructor ${object._}`)];
  return mapTelegramUpdate(object, { ...env, raw: bytes });
}

/** The users and chats of a TL answer (an `updates` container, a history page) as a lookup. */
export function peersOf(object: { readonly users: readonly tl.TypeUser[]; readonly chats: readonly tl.TypeChat[] }): PeerLookup {
  return { users: new Map(object.users.map((user) => [user.id, user])), chats: new Map(object.chats.map((chat) => [chat.id, chat])) };
}

/**
 * The evidence for a live update: an `updates` container holding the update and the users and
 * chats delivered with it that it references (names, titles and channel kinds in the record
 * come from them). Container `date` and `seq` are 0: not used by the mapping.
 */
export function updateEvidence(update: tl.TypeUpdate, peers: PeerLookup, selfId: number): Uint8Array {
  const { users, chats } = referencedPeers(update, peers, selfId);
  // The same bytes as encodeTl of the container; each user and chat of a batch encoded once.
  let cache = encodedPeers.get(peers);
  if (cache === undefined) {
    cache = new WeakMap();
    encodedPeers.set(peers, cache);
  }
  return encodeUpdatesContainer(update, users, chats, cache);
}

/** Per batch of peers (one RPC answer), the TL bytes of its users and chats already encoded. */
const encodedPeers = new WeakMap<PeerLookup, WeakMap<object, Uint8Array>>();

/** The evidence for a message found in history: a one-message `messages.messages` with its users and chats. */
export function historyEvidence(message: tl.TypeMessage, peers: PeerLookup, selfId: number): Uint8Array {
  const { users, chats } = referencedPeers(message, peers, selfId);
  return encodeTl({ _: 'messages.messages', messages: [message], users, chats, topics: [] });
}

/**
 * Users and chats from `peers` whose ids the object mentions anywhere, and the custodian (the
 * sender of an outgoing private message that names no sender). Over-inclusion is harmless.
 */
function referencedPeers(object: unknown, peers: PeerLookup, selfId: number): { users: tl.TypeUser[]; chats: tl.TypeChat[] } {
  const users = new Map<number, tl.TypeUser>();
  const chats = new Map<number, tl.TypeChat>();
  const self = peers.users.get(selfId);
  if (self) users.set(selfId, self);
  const note = (field: string, id: number): void => {
    if (field === 'userId' || field === 'users' || field === 'viaBotId') {
      const user = peers.users.get(id);
      if (user) users.set(id, user);
    } else if (field === 'chatId' || field === 'channelId') {
      const chat = peers.chats.get(id);
      if (chat) chats.set(id, chat);
    }
  };
  // Runs once per update in a backlog: one key list per object, no array per field.
  const visit = (value: unknown, depth: number): void => {
    if (depth > 32 || typeof value !== 'object' || value === null || value instanceof Uint8Array) return;
    if (Array.isArray(value)) {
      for (const item of value) visit(item, depth + 1);
      return;
    }
    const fields = value as Record<string, unknown>;
    for (const field of Object.keys(fields)) {
      const item = fields[field];
      if (typeof item === 'number') note(field, item);
      else if (typeof item === 'object' && item !== null) {
        if (Array.isArray(item) && item.every((id) => typeof id === 'number')) for (const id of item) note(field, id);
        visit(item, depth + 1);
      }
    }
  };
  visit(object, 0);
  return { users: [...users.values()], chats: [...chats.values()] };
}

/** A new message (`message`) or service message (`messageService`) in any kind of chat. */
function mapNewMessage(message: tl.TypeMessage, env: TelegramMapEnv): CaptureInput[] {
  if (message._ === 'messageEmpty') return [];
  if (message._ === 'messageService') return [mapServiceMessage(message, env)];
  const common = messageCommon(message, env);
  return [
    {
      kind: 'message',
      key: `message:${common.peer}:${message.id}`,
      ...common.fields,
      native: { id: String(message.id), peer: common.peer },
      ...body(message, env),
    },
    // Reactions present when we first see a message (e.g. fetched by getDifference) are recorded too.
    ...reactionChanges(message.id, common.peer, message.reactions, env, []),
  ];
}

/**
 * An edit update. Telegram sends one for content edits and also for reactions, link previews,
 * view counts and `editHide` changes. An `edit` record is written only when the content
 * fingerprint (text, entities, media identity; not previews) differs from what was recorded;
 * reaction changes become `reaction` records.
 */
function mapEditedMessage(message: tl.TypeMessage, env: TelegramMapEnv): CaptureInput[] {
  if (message._ === 'messageEmpty') return [];
  if (message._ === 'messageService') return [mapServiceMessage(message, env)];
  const common = messageCommon(message, env);
  const previous = env.memory?.get(message.id);
  const fingerprint = contentFingerprint(message);
  const out: CaptureInput[] = [];
  if (previous?.fingerprint !== fingerprint) {
    out.push({
      kind: 'edit',
      // editDate tells successive edits apart (A→B→A→B are four versions); the fingerprint keeps
      // a replayed or cosmetic re-delivery of the same version from being recorded twice.
      key: `edit:${common.peer}:${message.id}:${message.editDate ?? message.date}:${fingerprint.slice(0, 32)}`,
      ...common.fields,
      sentAt: new Date((message.editDate ?? message.date) * 1000),
      target: { id: String(message.id), peer: common.peer },
      ...body(message, env),
      meta: { ...common.fields.meta, ...(previous ? (previous.contentKey === undefined ? {} : { comparedWith: previous.contentKey }) : { previousUnknown: true }) },
    });
  }
  out.push(...reactionChanges(message.id, common.peer, message.reactions, env, previous?.reactions ?? [], undefined, previous?.reactionsKey));
  return out;
}

/** Service messages: joins, leaves, title changes, pins… become `membership` records. */
function mapServiceMessage(message: tl.RawMessageService, env: TelegramMapEnv): CaptureInput {
  const common = messageCommon(message, env);
  const action = message.action;
  const party = (userId: number): Party => partyOf({ _: 'peerUser', userId }, env.peers);
  let membership: MembershipDetail;
  switch (action._) {
    case 'messageActionChatCreate':
      membership = { action: 'create', value: action.title, members: action.users.map(party) };
      break;
    case 'messageActionChannelCreate':
      membership = { action: 'create', value: action.title };
      break;
    case 'messageActionChatEditTitle':
      membership = { action: 'title', value: action.title };
      break;
    case 'messageActionChatAddUser':
      membership = { action: 'add', members: action.users.map(party) };
      break;
    case 'messageActionChatDeleteUser':
      membership = common.fields.sender.id === String(action.userId) ? { action: 'leave' } : { action: 'remove', members: [party(action.userId)] };
      break;
    case 'messageActionChatJoinedByLink':
    case 'messageActionChatJoinedByRequest':
      membership = { action: 'join' };
      break;
    case 'messageActionChatEditPhoto':
    case 'messageActionChatDeletePhoto':
      membership = { action: 'settings', value: 'photo' };
      break;
    case 'messageActionSetMessagesTTL':
      membership = { action: 'settings', value: `auto-delete:${action.period}` };
      break;
    default:
      membership = { action: 'other', value: action._ };
  }
  return {
    kind: 'membership',
    key: `membership:${common.peer}:${message.id}`,
    ...common.fields,
    native: { id: String(message.id), peer: common.peer },
    membership,
  };
}

/** A delete that carries only a message id: resolved through the connector's own index. */
function mapCommonBoxDelete(id: number, env: TelegramMapEnv): CaptureInput {
  const known = env.memory?.get(id);
  if (known) return mapDelete(id, known.peer, { id: known.peer, type: known.type }, env, false);
  // Never recorded here (sent before capture began, or the index was lost): keep the fact.
  return {
    kind: 'system',
    key: `delete-unresolved:${id}:${env.pts ?? sha256Hex(env.raw).slice(0, 16)}`,
    system: { event: 'delete-unresolved', fields: { messageId: String(id), reason: 'message not in the local message index' } },
    raw: rawOf(env),
  };
}

function mapDelete(id: number, peer: string, conversation: ConversationRef, env: TelegramMapEnv, channel: boolean): CaptureInput {
  const resolvedFrom = env.memory?.get(id)?.contentKey;
  return {
    kind: 'delete',
    key: `delete:${peer}:${id}`,
    sentAt: env.receivedAt,
    conversation,
    // Telegram does not say who deleted a message.
    sender: { id: 'unknown' },
    direction: env.memory?.get(id)?.direction ?? 'inbound',
    target: { id: String(id), peer },
    // Channel deletes are always for everyone. In private chats and basic groups Telegram sends
    // the same update for "delete for everyone" and for the custodian deleting on another device.
    deletion: { scope: 'everyone' },
    meta: { scopeCertain: channel, sentAtIsReceipt: true, ...(resolvedFrom === undefined ? {} : { resolvedFrom }) },
    raw: rawOf(env),
  };
}

/** Reaction changes between what was seen before and now, as `reaction` records. */
function reactionChanges(
  msgId: number,
  peer: string,
  reactions: tl.TypeMessageReactions | undefined,
  env: TelegramMapEnv,
  before: readonly string[],
  peerObject?: tl.TypePeer,
  comparedWith?: string,
): CaptureInput[] {
  const now = reactionSet(reactions, env.selfId);
  const previous = new Set(before);
  const memory = env.memory?.get(msgId);
  const conversation: ConversationRef = peerObject
    ? conversationOf(peerObject, env.peers, false)
    : { id: peer, type: memory?.type ?? conversationOf(parsePeer(peer), env.peers, false).type };
  const out: CaptureInput[] = [];
  const record = (pair: string, action: 'add' | 'remove', date: number | undefined): void => {
    const [who = 'unknown', value = '?'] = pair.split('|');
    out.push({
      kind: 'reaction',
      key: `reaction:${peer}:${msgId}:${who}:${value}:${action}:${date ?? sha256Hex(env.raw).slice(0, 16)}`,
      sentAt: date === undefined ? env.receivedAt : new Date(date * 1000),
      conversation,
      sender: partyOf(parsePeer(who), env.peers),
      direction: who === String(env.selfId) ? 'outbound' : 'inbound',
      target: { id: String(msgId), peer },
      reaction: { value, action },
      raw: rawOf(env),
      ...(date === undefined || comparedWith !== undefined ? { meta: { ...(date === undefined ? { sentAtIsReceipt: true } : {}), ...(comparedWith === undefined ? {} : { comparedWith }) } } : {}),
    });
  };
  for (const [pair, date] of now) if (!previous.has(pair)) record(pair, 'add', date);
  // Only private chats list every reactor; elsewhere a reactor dropping off the "recent" list is
  // not a removal, so removals are recorded for direct chats only.
  if (conversation.type === 'direct') for (const pair of previous) if (!now.has(pair)) record(pair, 'remove', undefined);
  return out;
}

/** `<reactor marked id>|<reaction>` → reaction date (seconds), from the reactions a message shows. */
export function reactionSet(reactions: tl.TypeMessageReactions | undefined, selfId: number): Map<string, number | undefined> {
  const out = new Map<string, number | undefined>();
  if (!reactions) return out;
  for (const recent of reactions.recentReactions ?? []) out.set(`${getMarkedPeerId(recent.peerId)}|${reactionValue(recent.reaction)}`, recent.date);
  for (const count of reactions.results) {
    const pair = `${selfId}|${reactionValue(count.reaction)}`;
    if (count.chosenOrder !== undefined && !out.has(pair)) out.set(pair, undefined);
  }
  return out;
}

function reactionValue(reaction: tl.TypeReaction): string {
  switch (reaction._) {
    case 'reactionEmoji':
      return reaction.emoticon;
    case 'reactionCustomEmoji':
      return `custom:${reaction.documentId.toString()}`;
    case 'reactionPaid':
      return 'paid';
    default:
      return 'empty';
  }
}

/**
 * Fingerprint of a message's content: text, formatting entities and media identity. Link
 * previews (`messageMediaWebPage`), reactions, views and flags are excluded, so changes to
 * them never produce an `edit` record.
 */
export function contentFingerprint(message: tl.RawMessage): string {
  const entities = (message.entities ?? []).map((entity) => [entity._, entity.offset, entity.length, 'url' in entity ? entity.url : '', entity._ === 'messageEntityMentionName' ? String(entity.userId) : '']);
  // The SHA-256 of the JSON's UTF-8 bytes (hashed from the string: no byte copy per message).
  return hash('sha256', JSON.stringify([message.message, entities, mediaIdentity(message.media)]), 'hex');
}

function mediaIdentity(media: tl.TypeMessageMedia | undefined): string {
  if (!media || media._ === 'messageMediaWebPage' || media._ === 'messageMediaEmpty') return '';
  if (media._ === 'messageMediaPhoto') return `photo:${media.photo?._ === 'photo' ? media.photo.id.toString() : 'empty'}`;
  if (media._ === 'messageMediaDocument') return `document:${media.document?._ === 'document' ? media.document.id.toString() : 'empty'}`;
  if (media._ === 'messageMediaGeo' || media._ === 'messageMediaGeoLive' || media._ === 'messageMediaVenue') {
    const geo = media.geo._ === 'geoPoint' ? `${media.geo.lat},${media.geo.long}` : 'empty';
    return `${media._}:${geo}`;
  }
  if (media._ === 'messageMediaContact') return `contact:${media.phoneNumber}:${media.userId}`;
  return media._;
}

/** The downloadable file of a message, if it has one. Other media kinds are described in `meta`. */
export function mediaOf(message: tl.TypeMessage): MediaDescriptor | undefined {
  if (message._ !== 'message' || !message.media) return undefined;
  const media = message.media;
  if (media._ === 'messageMediaPhoto' && media.photo?._ === 'photo') {
    const photo = media.photo;
    let best: { type: string; area: number; size: number } | undefined;
    for (const size of photo.sizes) {
      if (size._ !== 'photoSize' && size._ !== 'photoSizeProgressive') continue;
      const bytes = size._ === 'photoSize' ? size.size : Math.max(0, ...size.sizes);
      if (!best || size.w * size.h > best.area) best = { type: size.type, area: size.w * size.h, size: bytes };
    }
    if (!best) return undefined;
    return {
      kind: 'photo',
      location: { _: 'inputPhotoFileLocation', id: photo.id, accessHash: photo.accessHash, fileReference: photo.fileReference, thumbSize: best.type },
      dcId: photo.dcId,
      mime: 'image/jpeg',
      size: best.size,
    };
  }
  if (media._ === 'messageMediaDocument' && media.document?._ === 'document') {
    const document = media.document;
    const named = document.attributes.find((attribute): attribute is tl.RawDocumentAttributeFilename => attribute._ === 'documentAttributeFilename');
    return {
      kind: 'document',
      location: { _: 'inputDocumentFileLocation', id: document.id, accessHash: document.accessHash, fileReference: document.fileReference, thumbSize: '' },
      dcId: document.dcId,
      mime: document.mimeType || 'application/octet-stream',
      ...(named ? { name: named.fileName } : {}),
      size: document.size,
    };
  }
  return undefined;
}

/** Fields shared by every record about a message: conversation, sender, direction, time. */
function messageCommon(message: tl.RawMessage | tl.RawMessageService, env: TelegramMapEnv) {
  const conversation = conversationOf(message.peerId, env.peers, message.post === true);
  const outbound = message.out === true;
  // In private chats the incoming sender is the peer itself; outgoing messages may omit fromId.
  const from = message.fromId ?? (outbound ? ({ _: 'peerUser', userId: env.selfId } as const) : message.peerId);
  const meta: Record<string, string | boolean | number> = {};
  if (message._ === 'message') {
    if (message.groupedId) meta.album = message.groupedId.toString();
    if (message.media && !mediaOf(message)) meta.media = message.media._;
    if (message.fwdFrom?.fromId) meta.forwardedFrom = String(getMarkedPeerId(message.fwdFrom.fromId));
    if (message.fwdFrom?.fromName) meta.forwardedFromName = message.fwdFrom.fromName;
    if (message.fwdFrom) meta.forwardedDate = new Date(message.fwdFrom.date * 1000).toISOString();
    if (message.viaBotId) meta.viaBot = String(message.viaBotId);
    if (message.postAuthor) meta.postAuthor = message.postAuthor;
    if (message.ttlPeriod) meta.ttlSeconds = message.ttlPeriod;
  }
  return {
    peer: conversation.id,
    fields: {
      sentAt: new Date(message.date * 1000),
      conversation,
      sender: partyOf(from, env.peers),
      direction: outbound ? ('outbound' as const) : ('inbound' as const),
      raw: rawOf(env),
      meta: { tlLayer: TL_LAYER, ...meta },
    },
  };
}

/** Text, attachments, reply and forward markers of a message. */
function body(message: tl.RawMessage, env: TelegramMapEnv): Pick<CaptureInput, 'text' | 'attachments' | 'replyTo' | 'forwarded' | 'mentions'> {
  const mentions = (message.entities ?? []).filter((entity) => entity._ === 'messageEntityMentionName').map((entity) => String(entity.userId));
  const reply = message.replyTo?._ === 'messageReplyHeader' ? message.replyTo : undefined;
  const replyTo: NativeRef | undefined =
    reply?.replyToMsgId === undefined
      ? undefined
      : { id: String(reply.replyToMsgId), peer: reply.replyToPeerId ? String(getMarkedPeerId(reply.replyToPeerId)) : String(getMarkedPeerId(message.peerId)) };
  // Media without a file (location, contact, poll, dice, link preview…) is kept as its own TL bytes.
  const inline: AttachmentInput[] = message.media && message.media._ !== 'messageMediaEmpty' && !mediaOf(message) ? [{ bytes: encodeTl(message.media), mime: TL_MEDIA_MIME, name: `${message.media._}.tl` }] : [];
  const attachments = [...(env.attachments ?? []), ...inline];
  return {
    ...(message.message ? { text: message.message } : {}),
    ...(attachments.length > 0 ? { attachments } : {}),
    ...(replyTo ? { replyTo } : {}),
    ...(message.fwdFrom ? { forwarded: true } : {}),
    ...(mentions.length > 0 ? { mentions: [...new Set(mentions)] } : {}),
  };
}

/** A conversation reference for a peer; channel type decided by the channel object or the post flag. */
export function conversationOf(peer: tl.TypePeer, peers: PeerLookup, post: boolean): ConversationRef {
  const id = String(getMarkedPeerId(peer));
  switch (peer._) {
    case 'peerUser': {
      const user = peers.users.get(peer.userId);
      const name = user?._ === 'user' ? nameOf(user) : undefined;
      return { id, type: 'direct', ...(name ? { title: name } : {}) };
    }
    case 'peerChat': {
      const chat = peers.chats.get(peer.chatId);
      return { id, type: 'group', ...(chat && 'title' in chat && chat.title ? { title: chat.title } : {}) };
    }
    default: {
      const chat = peers.chats.get(peer.channelId);
      const broadcast = chat?._ === 'channel' ? chat.broadcast === true : post;
      return { id, type: broadcast ? 'channel' : 'group', ...(chat && 'title' in chat && chat.title ? { title: chat.title } : {}) };
    }
  }
}

/** A party for a peer: marked id, and the display name the update carried. */
export function partyOf(peer: tl.TypePeer, peers: PeerLookup): Party {
  const id = String(getMarkedPeerId(peer));
  if (peer._ === 'peerUser') {
    const user = peers.users.get(peer.userId);
    const name = user?._ === 'user' ? nameOf(user) : undefined;
    const username = user?._ === 'user' ? user.username : undefined;
    return { id, ...(name ? { name } : {}), ...(username ? { aliases: [`@${username}`] } : {}) };
  }
  const chat = peers.chats.get(peer._ === 'peerChat' ? peer.chatId : peer.channelId);
  return { id, ...(chat && 'title' in chat && chat.title ? { name: chat.title } : {}) };
}

function nameOf(user: tl.RawUser): string | undefined {
  const name = [user.firstName, user.lastName].filter(Boolean).join(' ');
  return name || undefined;
}

/** A marked peer id string back to a TL peer (for reactors and memory entries). */
function parsePeer(marked: string): tl.TypePeer {
  const id = Number(marked);
  if (!Number.isSafeInteger(id)) return { _: 'peerUser', userId: 0 };
  if (id > 0) return { _: 'peerUser', userId: id };
  if (id > -1_000_000_000_000) return { _: 'peerChat', chatId: -id };
  return { _: 'peerChannel', channelId: -id - 1_000_000_000_000 };
}

/** A secret chat was created, accepted or closed on the account: record that it exists. */
function secretChatSeen(chat: tl.TypeEncryptedChat, date: number, env: TelegramMapEnv): CaptureInput {
  return {
    kind: 'system',
    key: `secret-chat:${chat.id}:${chat._}:${date}`,
    sentAt: new Date(date * 1000),
    system: { event: 'secret-chat-seen', fields: { chatId: String(chat.id), state: chat._, captured: 'no: secret chats are end-to-end encrypted per device' } },
    raw: rawOf(env),
  };
}

/** An `unsupported` record for an update (or bytes) the mapping cannot turn into a message event. */
export function unsupportedUpdate(raw: Uint8Array, reason: string, detail: string): CaptureInput {
  return { kind: 'unsupported', key: `unsupported:${sha256Hex(raw)}`, problem: { reason, detail }, raw: { bytes: raw, format: TL_RAW_FORMAT } };
}

/** A `gap` record: updates between `from` and `to` (pts positions) may be missing. */
export function gapInput(scope: string, reason: string, from: number | undefined, to: number | undefined, detail?: { readonly conversation?: ConversationRef }): CaptureInput {
  return {
    kind: 'gap',
    key: `gap:${scope}:${reason}:${from ?? '?'}:${to ?? '?'}`,
    gap: { reason, ...(from === undefined ? {} : { from: String(from) }), ...(to === undefined ? {} : { to: String(to) }), ...(from !== undefined && to !== undefined && to > from ? { missing: to - from } : {}) },
    ...(detail?.conversation ? { conversation: detail.conversation } : {}),
    meta: { scope },
  };
}

function rawOf(env: TelegramMapEnv): { bytes: Uint8Array; format: string } {
  return { bytes: env.raw, format: TL_RAW_FORMAT };
}

/** The `system` record naming the custodian's Telegram user id: the `selfId` of every mapping in the stream. */
export function sessionInput(selfId: number): CaptureInput {
  return { kind: 'system', key: `telegram-session:${selfId}`, system: { event: 'telegram-session', fields: { userId: String(selfId) } } };
}

/** The message an update carries, if it is a message update. */
function messageOf(update: tl.TypeUpdate): tl.TypeMessage | undefined {
  return update._ === 'updateNewMessage' || update._ === 'updateNewChannelMessage' || update._ === 'updateEditMessage' || update._ === 'updateEditChannelMessage' ? update.message : undefined;
}

/**
 * What the message index remembers after an update was mapped to `inputs`: always exactly what
 * the raw bytes of the records named by `contentKey` / `reactionsKey` say (see
 * {@link memoryFromRecords}), so a later decision can name them. An update that produced no
 * record changes nothing but where the message is.
 */
export function memoryAfter(update: tl.TypeUpdate, env: Pick<TelegramMapEnv, 'selfId' | 'peers' | 'memory'>, inputs: readonly CaptureInput[]): [number, MessageMemory][] {
  const message = messageOf(update);
  if (message && message._ !== 'messageEmpty') {
    const previous = env.memory?.get(message.id);
    const conversation = conversationOf(message.peerId, env.peers, message.post === true);
    const content = inputs.find((input) => input.kind === 'message' || input.kind === 'edit' || input.kind === 'membership');
    const holder = content ?? inputs.find((input) => input.kind === 'reaction');
    const contentKey = content?.key ?? previous?.contentKey;
    const reactionsKey = holder?.key ?? previous?.reactionsKey;
    const fresh = previous === undefined;
    return [
      [
        message.id,
        {
          peer: conversation.id,
          type: conversation.type,
          direction: message.out === true ? 'outbound' : 'inbound',
          fingerprint: content || fresh ? (message._ === 'message' ? contentFingerprint(message) : 'service') : previous.fingerprint,
          reactions: holder || fresh ? [...reactionSet(message.reactions, env.selfId).keys()] : previous.reactions,
          ...(contentKey === undefined ? {} : { contentKey }),
          ...(reactionsKey === undefined ? {} : { reactionsKey }),
        },
      ],
    ];
  }
  if (update._ === 'updateMessageReactions') {
    const known = env.memory?.get(update.msgId);
    const reaction = inputs.find((input) => input.kind === 'reaction');
    if (known && reaction?.key !== undefined) return [[update.msgId, { ...known, reactions: [...reactionSet(update.reactions, env.selfId).keys()], reactionsKey: reaction.key }]];
  }
  return [];
}

/** A record an auditor holds: the fields the re-derivation reads, and its raw bytes. */
export interface RecordedEvidence {
  readonly record: { readonly key: string; readonly kind: string; readonly direction?: 'inbound' | 'outbound'; readonly conversation?: ConversationRef };
  readonly raw: Uint8Array;
}

/**
 * What the index knew about message `id` when a record named `named` (its `meta.comparedWith`
 * or `meta.resolvedFrom`): re-derived from that record alone.
 */
export function memoryFromRecords(id: number, named: RecordedEvidence, selfId: number): MessageMemory {
  const object: tl.TlObject = decodeTl(named.raw);
  const inner = singleUpdate(object);
  let message: tl.TypeMessage | undefined;
  let reactions: tl.TypeMessageReactions | undefined;
  if (inner !== undefined) {
    if (inner._ === 'updateMessageReactions') reactions = inner.reactions;
    else message = messageOf(inner);
  } else if (object._ === 'messages.messages') {
    message = (object).messages.find((candidate) => candidate.id === id);
  }
  if (message && message._ !== 'messageEmpty') reactions = message.reactions;
  const conversation = named.record.conversation;
  return {
    peer: conversation?.id ?? '',
    type: conversation?.type ?? 'direct',
    direction: named.record.direction ?? 'inbound',
    fingerprint: message?._ === 'message' ? contentFingerprint(message) : 'service',
    reactions: [...reactionSet(reactions, selfId).keys()],
    contentKey: named.record.key,
    reactionsKey: named.record.key,
  };
}

/**
 * The update and peers a record was mapped from, read back from its raw bytes: a live update's
 * `updates` container (or, in records older than it, the bare update); a history message
 * wrapped as reconciliation wrapped it (new, or an edit when the record is one or names what it
 * compared with); a reconciliation delete as the delete of the record's target, whose evidence
 * is the history page that no longer holds it.
 */
export function evidenceOf(raw: Uint8Array, record: { readonly kind: string; readonly target?: NativeRef; readonly meta?: { readonly [name: string]: unknown } }): { update: tl.TypeUpdate; peers: PeerLookup } | undefined {
  const object = decodeTl(raw);
  if (object._ === 'updates' && object.updates.length === 1 && object.updates[0]) return { update: object.updates[0], peers: peersOf(object) };
  if (tl.isAnyUpdate(object)) return { update: object, peers: { users: new Map(), chats: new Map() } };
  if (object._ !== 'messages.messages' && object._ !== 'messages.messagesSlice' && object._ !== 'messages.channelMessages') return undefined;
  const peers = peersOf(object);
  if (record.kind === 'delete' && record.meta?.['source'] === 'reconcile' && record.target) {
    const id = Number(record.target.id);
    const peer = parsePeer(record.target.peer ?? '');
    return peer._ === 'peerChannel'
      ? { update: { _: 'updateDeleteChannelMessages', channelId: peer.channelId, messages: [id], pts: 0, ptsCount: 0 }, peers }
      : { update: { _: 'updateDeleteMessages', messages: [id], pts: 0, ptsCount: 0 }, peers };
  }
  const message = object.messages[0];
  if (!message || message._ === 'messageEmpty' || object.messages.length !== 1) return undefined;
  const channel = message.peerId._ === 'peerChannel';
  const edit = record.kind === 'edit' || record.meta?.['comparedWith'] !== undefined;
  const update: tl.TypeUpdate = edit
    ? channel ? { _: 'updateEditChannelMessage', message, pts: 0, ptsCount: 0 } : { _: 'updateEditMessage', message, pts: 0, ptsCount: 0 }
    : channel ? { _: 'updateNewChannelMessage', message, pts: 0, ptsCount: 0 } : { _: 'updateNewMessage', message, pts: 0, ptsCount: 0 };
  return { update, peers };
}

/** `pts` of an update as the connector passes it to the mapping (keys of id-only deletes). */
export function ptsOf(update: tl.TypeUpdate): number | undefined {
  return 'pts' in update && typeof update.pts === 'number' && update.pts > 0 ? update.pts : undefined;
}

/** The update in an `updates` container of one, or a bare update. */
function singleUpdate(object: tl.TlObject): tl.TypeUpdate | undefined {
  if (object._ === 'updates') {
    const { updates } = object;
    return updates.length === 1 ? updates[0] : undefined;
  }
  return tl.isAnyUpdate(object) ? object : undefined;
}

/*
 * Completeness signals: `system` records about the update stream itself (see
 * docs/record-schema.md, "Telegram completeness signals"). Their fields are their evidence.
 */

/** Why mtcute fetched a difference: the start-up catch-up, a gap or keepalive while running, or our liveness probe. */
export type DifferenceTrigger = 'start' | 'running' | 'probe';

/** What `updates.getDifference` brought back: recovered updates, from one pts to another. */
export function differenceInput(trigger: DifferenceTrigger, fromPts: number, toPts: number, messages: number, otherUpdates: number, at: Date): CaptureInput {
  return {
    kind: 'system',
    key: `difference:${trigger}:${fromPts}:${toPts}:${at.toISOString()}`,
    sentAt: at,
    system: { event: 'difference-fetched', fields: { trigger, fromPts: String(fromPts), toPts: String(toPts), messages: String(messages), otherUpdates: String(otherUpdates) } },
  };
}

/** Telegram ended the session (`code`: its RPC error, e.g. `AUTH_KEY_UNREGISTERED`, `SESSION_REVOKED`). */
export function sessionEndedInput(code: string, at: Date): CaptureInput {
  return { kind: 'system', key: `session-ended:${code}:${at.getTime()}`, sentAt: at, system: { event: 'logged-out', fields: { code } } };
}

/** Telegram answered with a `FROZEN_*` error: the account is frozen (read-only, scheduled for review or deletion). */
export function accountFrozenInput(code: string, method: string, at: Date): CaptureInput {
  return { kind: 'system', key: `account-frozen:${code}:${at.toISOString()}`, sentAt: at, system: { event: 'account-frozen', fields: { code, method } } };
}

/**
 * The liveness probe after a quiet period: the server's pts was ahead of what the updates
 * engine had processed (updates stopped arriving; a getDifference was forced), or the probe
 * itself failed (`code`).
 */
export function updatesStalledInput(detail: { readonly localPts?: number; readonly serverPts?: number; readonly code?: string; readonly quietMs: number }, at: Date): CaptureInput {
  const fields: Record<string, string> = { quietMs: String(detail.quietMs) };
  if (detail.localPts !== undefined) fields['localPts'] = String(detail.localPts);
  if (detail.serverPts !== undefined) fields['serverPts'] = String(detail.serverPts);
  if (detail.code !== undefined) fields['code'] = detail.code;
  return { kind: 'system', key: `updates-stalled:${at.toISOString()}`, sentAt: at, system: { event: detail.code === undefined ? 'updates-behind' : 'updates-probe-failed', fields } };
}

/** What reconciliation recovered after the gap record with key `gapKey`. */
export function gapBackfilledInput(gapKey: string, recorded: number, at: Date): CaptureInput {
  return { kind: 'system', key: `gap-backfilled:${gapKey}:${at.toISOString()}`, sentAt: at, system: { event: 'gap-backfilled', fields: { gap: gapKey, recorded: String(recorded), method: 'messages.getHistory' } } };
}
