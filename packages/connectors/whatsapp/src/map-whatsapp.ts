/**
 * THE MAPPING: Baileys / WAProto objects → offchannel capture inputs.
 *
 * This file is the whole of what the WhatsApp connector decides about a message. It is written
 * to be read top to bottom by an auditor. Input is a {@link CapturedEnvelope}: the message's
 * own protobuf bytes (`proto.WebMessageInfo`), frozen at the moment Baileys emitted it, plus
 * the key fields the protobuf drops. Every record's `raw` blob is that envelope
 * (`whatsapp.wmi-ext.v1`, see raw-envelope.ts), so every decision below can be re-checked.
 *
 * Identity (`native`, `target`, `replyTo`): `{ id, chat, sender }` — WhatsApp message ids are
 * unique per chat and sender, not globally. JIDs are user JIDs without device suffix, in the
 * form the chat uses (LID `…@lid` or phone number `…@s.whatsapp.net`); the other form is kept
 * in `sender.aliases`. The custodian's own messages use the account's phone-number JID.
 *
 * Idempotency keys: `<kind>:<chat>:<sender>:<envelope id>`, so a message that arrives live,
 * again as an offline replay and again in history sync is recorded once.
 *
 * Media never holds up a message. The `message` record is written at once; its media
 * attachment is a placeholder `{status: "unavailable", reason: "download-pending", mime, name?,
 * size?, sha256?}` (the declared facts). The file follows as its own record, made by
 * {@link mapMediaOutcome} when the download ends:
 *   kind `edit`, key `attachment:<chat>:<sender>:<envelope id>` (the message key with
 *   `attachment` for `message`), `target` = the message's `native`, no text, `attachments`:
 *   exactly one — stored, or unavailable with the reason (`timeout`, `mac-mismatch`,
 *   `stopped`…) — `meta.followUp: "attachment"`, and no `raw`: the message's raw envelope holds
 *   the media key and hashes the file was checked against (keeping the bytes out of the pending
 *   download keeps a long media queue small in memory).
 * Readers attach it to its message as they do any attachment-only edit (export: `addedBy`).
 *
 * Decision table (first match wins):
 *  1. bytes do not decode, or key/id missing          → `unsupported` (malformed-protobuf / missing-key)
 *  2. stub CIPHERTEXT, key marked view-once           → `message` with an unavailable `view-once` attachment
 *  3. stub CIPHERTEXT                                 → `undecryptable` (reason from Baileys' error text)
 *  4. stub REVOKE (history shows deleted messages so) → `delete` scope everyone, target = itself
 *  5. stub GROUP_* / CHANGE_EPHEMERAL_SETTING         → `membership`
 *  6. any other stub                                  → `system` (event `whatsapp-stub`, stub name)
 *  7. protocolMessage REVOKE                          → `delete` (scope everyone; `admin` when the
 *                                                       target's author is not the revoker)
 *  8. protocolMessage MESSAGE_EDIT                    → `edit` (new text, target)
 *  9. protocolMessage EPHEMERAL_SETTING               → `membership` settings `ephemeral:<seconds>`
 * 10. other protocolMessage (sync plumbing)           → `system` WITHOUT raw: these carry the
 *                                                       account's app-state keys and history
 *                                                       media keys, which must not enter WORM storage
 * 11. secretEncryptedMessage MESSAGE_EDIT             → decrypted with the original's messageSecret
 *                                                       → as 8; secret unknown or GCM fails →
 *                                                       `undecryptable` with target
 * 12. reactionMessage                                 → `reaction` add (emoji) / remove (empty text;
 *                                                       value `*`: WhatsApp names no emoji)
 * 13. text and media (image, video, audio/voice, document, sticker, video note), location,
 *     contact cards, poll creation                    → `message`; media: a `download-pending`
 *                                                       placeholder now, the file in a follow-up
 *                                                       `edit` (above); view-once or no media key →
 *                                                       unavailable at once, no follow-up
 * 14. a group sender-key distribution alone (keys removed at the tap) → `system` key distribution
 * 15. anything else (poll votes, encrypted reactions, new types) → `unsupported` naming the field
 */
import { createHash } from 'node:crypto';
import type { AttachmentInput, CaptureInput, MembershipDetail, MetaValue, NativeRef, Party } from '@offchannel/core';
import { isJidBroadcast, isJidGroup, isJidNewsletter, jidNormalizedUser, proto, toNumber } from '@whiskeysockets/baileys';
import type { MediaKind, MediaRef } from './media-download.ts';
import { checkHistoryPayload } from './history-payload.ts';
import { openSecretMessage } from './message-secret.ts';
import { RAW_FORMAT, decodeEnvelope, encodeRawEvidence, type CapturedEnvelope } from './raw-envelope.ts';

/** The custodian's own WhatsApp identity. */
export interface WhatsAppIdentity {
  /** Phone-number JID, e.g. `15550000001@s.whatsapp.net`. */
  readonly id: string;
  /** LID, e.g. `100000000000001@lid`, when known. */
  readonly lid?: string | undefined;
}

/**
 * The context a mapping reads besides the envelope's own bytes. Every member is itself recorded,
 * so an auditor can rebuild it from the archive (see "Re-deriving a record" in the README):
 * `me` from the `whatsapp-identity` record, `aliases` and `title` from the directory records and
 * envelopes before this one, `secretOf` from the raw blob of the message an encrypted edit
 * names, `resolves` from the record named in `meta.resolvesUndecryptableKey`. The mapping does
 * no I/O: the connector looks these up before calling it.
 */
export interface MapDependencies {
  readonly me: WhatsAppIdentity;
  /** Other JIDs known for the same user (LID ↔ phone number). */
  aliases(jid: string): readonly string[];
  /** The `messageSecret` of an earlier message (for encrypted edits), if known. Synchronous: a table lookup. */
  secretOf?(chat: string, id: string): Uint8Array | undefined;
  /** The group's current subject, if known. */
  title?(chat: string): string | undefined;
  /** The archived `undecryptable` record of this same message, if any (its key is `stubKey`). */
  readonly resolves?: { readonly seq: number; readonly key: string };
}

/** A message's media, to be downloaded after the message is archived (see the header). */
export interface PendingMedia {
  /** Idempotency key of the follow-up record: `attachment:<chat>:<sender>:<envelope id>`. */
  readonly key: string;
  /** What to download. */
  readonly ref: MediaRef;
  /** The message's `native`: the follow-up's `target`. */
  readonly target: NativeRef;
  /** The message's time, conversation, sender and direction, repeated on the follow-up. */
  readonly context: Pick<CaptureInput, 'sentAt' | 'conversation' | 'sender' | 'direction'>;
  readonly origin: string;
  /** The declared facts: also on the placeholder and on an unavailable outcome. */
  readonly declared: { readonly mime: string; readonly name?: string; readonly size?: number; readonly sha256?: string };
}

/** How a download ended: the verified plaintext, or the reason it could not be archived. */
export type MediaOutcome = { readonly bytes: Uint8Array } | { readonly reason: string };

/** A capture input plus what the connector must remember about the message. */
export interface MappedEnvelope {
  readonly input: CaptureInput;
  /** `{chat, id}` of the message itself, when the envelope has a usable key. */
  readonly ref?: { readonly chat: string; readonly id: string };
  /** The message's `messageSecret`, kept so later encrypted edits can be decrypted. */
  readonly messageSecret?: Uint8Array;
  /** For a `message`: the key an earlier `undecryptable` stub of the same message would have. */
  readonly stubKey?: string;
  /** `proto.Message` bytes of the custodian's own messages (answers Baileys' `getMessage` retries). */
  readonly ownContent?: Uint8Array;
  /** LID ↔ phone-number pairs stated by the envelope's v7 key fields. */
  readonly aliasPairs?: readonly (readonly [string, string])[];
  /** Group subject announced by this envelope (create / subject change). */
  readonly newTitle?: string;
  /** Media to download once the message is durable; its outcome becomes a follow-up record. */
  readonly media?: PendingMedia;
  /** An encrypted edit whose original's secret `secretOf` did not know: look it up and map again. */
  readonly needsSecret?: { readonly chat: string; readonly id: string };
}

const Stub = proto.WebMessageInfo.StubType;
const MAX_SECONDS = 253_402_300_799;
const Protocol = proto.Message.ProtocolMessage.Type;

/** Wrapper fields that hold another `Message`; unwrapped and recorded in `meta.wrappers`. */
const WRAPPERS = [
  'ephemeralMessage',
  'viewOnceMessage',
  'viewOnceMessageV2',
  'viewOnceMessageV2Extension',
  'documentWithCaptionMessage',
  'editedMessage',
  'deviceSentMessage',
  'botInvokeMessage',
  'lottieStickerMessage',
  'groupMentionedMessage',
  'associatedChildMessage',
  'groupStatusMessage',
  'groupStatusMessageV2',
] as const;

/** Media content fields and the key family used to decrypt them. */
const MEDIA: Readonly<Record<string, MediaKind>> = {
  imageMessage: 'image',
  videoMessage: 'video',
  audioMessage: 'audio',
  documentMessage: 'document',
  stickerMessage: 'sticker',
  ptvMessage: 'ptv',
};

/** Stub types recorded as membership, with the action they mean. */
const MEMBERSHIP_STUBS: ReadonlyMap<number, MembershipDetail['action']> = new Map([
  [Stub.GROUP_CREATE, 'create'],
  [Stub.GROUP_CHANGE_SUBJECT, 'title'],
  [Stub.GROUP_CHANGE_DESCRIPTION, 'description'],
  [Stub.GROUP_PARTICIPANT_ADD, 'add'],
  [Stub.GROUP_PARTICIPANT_REMOVE, 'remove'],
  [Stub.GROUP_PARTICIPANT_PROMOTE, 'promote'],
  [Stub.GROUP_PARTICIPANT_DEMOTE, 'demote'],
  [Stub.GROUP_PARTICIPANT_LEAVE, 'leave'],
  [Stub.GROUP_PARTICIPANT_INVITE, 'join'],
  [Stub.GROUP_PARTICIPANT_ACCEPT, 'join'],
  [Stub.GROUP_PARTICIPANT_LINKED_GROUP_JOIN, 'join'],
  [Stub.GROUP_CHANGE_ANNOUNCE, 'settings'],
  [Stub.GROUP_CHANGE_RESTRICT, 'settings'],
  [Stub.GROUP_CHANGE_INVITE_LINK, 'settings'],
  [Stub.GROUP_MEMBER_ADD_MODE, 'settings'],
  [Stub.GROUP_MEMBERSHIP_JOIN_APPROVAL_MODE, 'settings'],
  [Stub.CHANGE_EPHEMERAL_SETTING, 'settings'],
  [Stub.GROUP_CHANGE_ICON, 'settings'],
  [Stub.GROUP_PARTICIPANT_CHANGE_NUMBER, 'other'],
  [Stub.GROUP_MEMBERSHIP_JOIN_APPROVAL_REQUEST_NON_ADMIN_ADD, 'other'],
]);

/** Maps one frozen message. Pure and synchronous; never throws for bad input: that becomes `unsupported`. */
export function mapEnvelope(envelope: CapturedEnvelope, deps: MapDependencies): MappedEnvelope {
  const raw = (decrypted?: Uint8Array) => ({ bytes: encodeRawEvidence(envelope, decrypted), format: RAW_FORMAT });
  let info: proto.WebMessageInfo;
  try {
    info = proto.WebMessageInfo.decode(envelope.bytes);
  } catch (error) {
    return { input: unsupported(envelope, 'malformed-protobuf', errorName(error), raw()) };
  }
  const key = info.key;
  const remoteJid = typeof key?.remoteJid === 'string' ? key.remoteJid : '';
  if (!key || !key.id || !remoteJid) return { input: unsupported(envelope, 'missing-key', undefined, raw()) };
  if (!isSaneId(key.id) || !isSaneId(remoteJid) || (key.participant && !isSaneId(key.participant))) {
    return { input: unsupported(envelope, 'malformed-key', 'message id or JID is not a short printable string', raw()) };
  }

  // ── who, where, when ────────────────────────────────────────────────────────────────────
  const { chat, fromMe, group, senderId } = identify(key, info.participant, deps.me);
  const native: NativeRef = { id: key.id, chat, sender: senderId };
  const senderAlt = fromMe ? undefined : group ? envelope.extras.participantAlt : envelope.extras.remoteJidAlt;
  const sender = party(senderId, deps, fromMe ? undefined : info.pushName, senderAlt);
  const conversationTitle = deps.title?.(chat);
  const conversation = {
    id: chat,
    type: isJidNewsletter(chat) === true || chat === 'status@broadcast' ? ('channel' as const) : group ? ('group' as const) : ('direct' as const),
    ...(conversationTitle ? { title: conversationTitle } : {}),
  };
  const stated = safeNumber(info.messageTimestamp);
  // Server seconds; absent or absurd (after 9999-12-31) → the connector's receive time, flagged.
  const seconds = stated !== undefined && stated > 0 && stated <= MAX_SECONDS ? stated : undefined;
  const sentAt = new Date(seconds !== undefined ? seconds * 1000 : envelope.receivedAt).toISOString();
  const meta: Record<string, MetaValue> = { origin: envelope.origin };
  if (seconds === undefined) meta['sentAtSource'] = 'received';
  if (envelope.extras.addressingMode) meta['addressingMode'] = envelope.extras.addressingMode;
  if (envelope.historySyncType) meta['historySyncType'] = envelope.historySyncType;
  // Returned by the phone for reconciliation (history-reconcile.ts) and sent within the gap it
  // was asked about (the window is recorded in the envelope): counted as recovered in coverage.
  // Older messages the last page reaches back to are history like any other.
  const window = envelope.historySyncType === 'ON_DEMAND' ? envelope.recovering : undefined;
  if (window && seconds !== undefined && seconds >= Math.floor(Date.parse(window.from) / 1000) && seconds <= Math.ceil(Date.parse(window.to) / 1000)) {
    meta['recoveredBy'] = 'history-on-demand';
    meta['recoveredFor'] = clip(window.gap, 400);
  }
  const base = { sentAt, conversation, sender, direction: fromMe ? ('outbound' as const) : ('inbound' as const), meta };
  const ref = { chat, id: key.id };
  const suffix = `${chat}:${senderId}:${key.id}`;
  const messageSecret = secretOf(info);
  const aliasPairs: [string, string][] = [];
  if (envelope.extras.remoteJidAlt && !group) aliasPairs.push([chat, userJid(envelope.extras.remoteJidAlt)]);
  if (envelope.extras.participantAlt && key.participant) aliasPairs.push([userJid(key.participant), userJid(envelope.extras.participantAlt)]);
  const common = { ref, ...(messageSecret ? { messageSecret } : {}), ...(aliasPairs.length > 0 ? { aliasPairs } : {}) };

  // ── stubs: messages without content ─────────────────────────────────────────────────────
  const stubType = info.messageStubType ?? 0;
  if (!info.message && stubType !== 0) {
    const stubName = Stub[stubType] ?? String(stubType);
    const params = (info.messageStubParameters ?? []).filter((p): p is string => typeof p === 'string');
    if (stubType === Stub.CIPHERTEXT && envelope.extras.isViewOnce === true) {
      return { ...common, input: { ...base, kind: 'message', key: `message:${suffix}`, native, attachments: [{ status: 'unavailable', reason: 'view-once' }], raw: raw() } };
    }
    if (stubType === Stub.CIPHERTEXT) {
      const problem = { reason: decryptFailure(params[0]), detail: `CIPHERTEXT stub: ${clip(params[0] ?? 'no detail', 200)}` };
      return { ...common, input: { ...base, kind: 'undecryptable', key: `undecryptable:${suffix}`, native, problem, raw: raw() } };
    }
    if (stubType === Stub.REVOKE) {
      return { ...common, input: { ...base, kind: 'delete', key: `delete:${suffix}`, native, target: native, deletion: { scope: 'everyone' }, raw: raw() } };
    }
    const action = MEMBERSHIP_STUBS.get(stubType);
    if (action && group) {
      const members = action === 'title' || action === 'description' || action === 'settings' ? [] : params.slice(0, 1024).map((p) => memberParty(p, deps));
      const value = action === 'title' || action === 'create' ? params[0] : action === 'settings' || action === 'other' ? `${stubName}${params[0] !== undefined && action === 'settings' ? `:${params[0]}` : ''}` : undefined;
      const membership: MembershipDetail = { action, ...(members.length > 0 ? { members } : {}), ...(value ? { value: clip(value, 1000) } : {}) };
      const newTitle = (action === 'title' || action === 'create') && params[0] ? clip(params[0], 200) : undefined;
      // Baileys v7 states each member's LID and phone number: learn the pair.
      const memberPairs = members.flatMap((m) => (m.aliases ?? []).map((alias): [string, string] => [m.id, alias]));
      const pairs = [...aliasPairs, ...memberPairs];
      return { ...common, ...(pairs.length > 0 ? { aliasPairs: pairs } : {}), ...(newTitle ? { newTitle } : {}), input: { ...base, kind: 'membership', key: `membership:${suffix}`, native, membership, raw: raw() } };
    }
    return { ...common, input: { ...base, kind: 'system', key: `system:${suffix}`, native, system: { event: 'whatsapp-stub', fields: { stubType: stubName } }, raw: raw() } };
  }
  if (!info.message) return { ...common, input: unsupported(envelope, 'empty-message', undefined, raw(), base, native, `unsupported:${suffix}`) };

  // ── unwrap wrappers (ephemeral, view-once, edited, document-with-caption…) ───────────────
  const { content, wrappers } = unwrap(info.message);
  if (wrappers.length > 0) meta['wrappers'] = wrappers.join(',');
  const type = contentType(content);

  // ── protocol messages: revoke, edit, disappearing timer, plumbing ──────────────────────
  if (type === 'protocolMessage' && content.protocolMessage) {
    const pm = content.protocolMessage;
    const target = pm.key?.id ? targetRef(pm.key, chat, senderId, fromMe, deps) : undefined;
    if ((pm.type === Protocol.REVOKE || pm.type === Protocol.MESSAGE_EDIT) && !target) {
      return { ...common, input: unsupported(envelope, 'missing-target', Protocol[pm.type], raw(), base, native, `unsupported:${suffix}`) };
    }
    if (pm.type === Protocol.REVOKE && target) {
      const admin = group && !sameUser(target['sender'], senderId, deps);
      return { ...common, input: { ...base, kind: 'delete', key: `delete:${suffix}`, native, target, deletion: { scope: 'everyone', ...(admin ? { admin: true } : {}) }, raw: raw() } };
    }
    if (pm.type === Protocol.MESSAGE_EDIT && target) {
      return { ...common, input: editInput(pm, base, native, target, `edit:${suffix}`, raw()) };
    }
    if (pm.type === Protocol.EPHEMERAL_SETTING) {
      const membership: MembershipDetail = { action: 'settings', value: `ephemeral:${pm.ephemeralExpiration ?? 0}` };
      return { ...common, input: { ...base, kind: 'membership', key: `membership:${suffix}`, native, membership, raw: raw() } };
    }
    const protocolType = pm.type !== null && pm.type !== undefined ? (Protocol[pm.type] ?? String(pm.type)) : 'UNSET';
    return { ...common, input: { ...base, kind: 'system', key: `system:${suffix}`, native, system: { event: 'whatsapp-protocol', fields: { type: protocolType, rawWithheld: 'carries-account-keys' } } } };
  }

  // ── encrypted edits (current clients): decrypt with the original's messageSecret ────────
  if (type === 'secretEncryptedMessage' && content.secretEncryptedMessage) {
    const env = content.secretEncryptedMessage;
    const target = env.targetMessageKey?.id ? targetRef(env.targetMessageKey, chat, senderId, fromMe, deps) : undefined;
    if (env.secretEncType !== proto.Message.SecretEncryptedMessage.SecretEncType.MESSAGE_EDIT || !target) {
      return { ...common, input: unsupported(envelope, 'unsupported-secret-message', `secretEncType ${env.secretEncType ?? 'unset'}`, raw(), base, native, `unsupported:${suffix}`) };
    }
    const secret = deps.secretOf?.(chat, target.id);
    const plain =
      secret && env.encPayload && env.encIv
        ? openSecretMessage({
            encPayload: env.encPayload,
            encIv: env.encIv,
            secret,
            targetId: target.id,
            targetSenders: target['sender'] ? withAliases(target['sender'], deps) : [chat],
            editors: withAliases(senderId, deps),
          })
        : undefined;
    let inner: proto.Message | undefined;
    try {
      inner = plain ? proto.Message.decode(plain) : undefined;
    } catch {
      inner = undefined;
    }
    const innerEdit = inner?.protocolMessage;
    if (!inner || !innerEdit || innerEdit.type !== Protocol.MESSAGE_EDIT) {
      const reason = !secret ? 'missing-message-secret' : !plain ? 'secret-decrypt-failed' : 'malformed-secret-payload';
      return { ...common, ...(secret ? {} : { needsSecret: { chat, id: target.id } }), input: { ...base, kind: 'undecryptable', key: `undecryptable:${suffix}`, native, target, problem: { reason, detail: 'secretEncryptedMessage MESSAGE_EDIT' }, raw: raw() } };
    }
    meta['secretEncrypted'] = true;
    return { ...common, input: editInput(innerEdit, base, native, target, `edit:${suffix}`, raw(plain)) };
  }

  // ── reactions ───────────────────────────────────────────────────────────────────────────
  if (type === 'reactionMessage' && content.reactionMessage) {
    const reaction = content.reactionMessage;
    // Baileys' cleanMessage already turned an inbound reaction's key to our perspective.
    const target = reaction.key?.id ? targetRef(reaction.key, chat, senderId, true, deps) : undefined;
    if (!target) return { ...common, input: unsupported(envelope, 'missing-target', 'reactionMessage', raw(), base, native, `unsupported:${suffix}`) };
    const emoji = typeof reaction.text === 'string' ? reaction.text : '';
    // WhatsApp allows one reaction per person per message; a removal (empty text) names no emoji,
    // so it is recorded as value "*": "whatever reaction this sender had on the target".
    const detail = emoji ? { value: clip(emoji, 64), action: 'add' as const } : { value: '*', action: 'remove' as const };
    return { ...common, input: { ...base, kind: 'reaction', key: `reaction:${suffix}`, native, target, reaction: detail, raw: raw() } };
  }

  // ── group key distribution alone (its keys were removed at the tap) ─────────────────────
  if (type === undefined && envelope.redacted?.length) {
    return { ...common, input: { ...base, kind: 'system', key: `system:${suffix}`, native, system: { event: 'whatsapp-key-distribution' }, raw: raw() } };
  }

  // ── ordinary messages: text, media, location, contacts, polls ──────────────────────────
  const body = messageBody(content, type, wrappers, meta);
  if (!body) return { ...common, input: unsupported(envelope, 'unknown-message-type', type ?? 'no content field', raw(), base, native, `unsupported:${suffix}`) };
  const context = contextOf(content, type, chat);
  if (deps.resolves?.key === `undecryptable:${suffix}`) {
    meta['resolvesUndecryptableSeq'] = deps.resolves.seq;
    meta['resolvesUndecryptableKey'] = deps.resolves.key;
  }
  const input: CaptureInput = {
    ...base,
    kind: 'message',
    key: `message:${suffix}`,
    native,
    ...(body.text !== undefined ? { text: body.text } : {}),
    ...(body.attachments ? { attachments: body.attachments } : {}),
    ...(context?.replyTo ? { replyTo: context.replyTo } : {}),
    ...(context?.forwarded ? { forwarded: true } : {}),
    ...(context?.mentions && context.mentions.length > 0 ? { mentions: context.mentions } : {}),
    raw: raw(),
  };
  return {
    ...common,
    input,
    stubKey: `undecryptable:${suffix}`,
    ...(body.media ? { media: { ...body.media, key: `attachment:${suffix}`, target: native, context: base, origin: envelope.origin } } : {}),
    ...(fromMe ? { ownContent: Uint8Array.from(proto.Message.encode(info.message).finish()) } : {}),
  };
}

/**
 * Chat and author of an envelope: the author is the custodian for own messages, the
 * participant in groups, the peer in direct chats.
 */
function identify(key: proto.IMessageKey, participant: string | null | undefined, me: WhatsAppIdentity) {
  const chat = userJid(key.remoteJid ?? '');
  const fromMe = key.fromMe === true;
  const group = isJidGroup(chat) === true || isJidBroadcast(chat) === true;
  const author = fromMe ? userJid(me.id) : group ? userJid(key.participant ?? participant ?? '') : chat;
  return { chat, fromMe, group, senderId: author || chat };
}

/**
 * The idempotency keys an envelope's records would have: its `message` record
 * (`message:<chat>:<sender>:<id>`) and, when it carries downloadable media, the follow-up
 * (`attachment:…`); `undefined` for undecodable bytes. Lets the connector skip history-sync
 * messages that are already archived, media included, before mapping them again.
 */
export function archiveKeysOf(envelope: CapturedEnvelope, me: WhatsAppIdentity): { readonly message: string; readonly attachment?: string } | undefined {
  try {
    const info = proto.WebMessageInfo.decode(envelope.bytes);
    if (!info.key?.id || !info.key.remoteJid) return undefined;
    const { chat, senderId } = identify(info.key, info.participant, me);
    const suffix = `${chat}:${senderId}:${info.key.id}`;
    const content = info.message ? unwrap(info.message).content : undefined;
    const type = content ? contentType(content) : undefined;
    const fields = content as Record<string, { mediaKey?: Uint8Array | null } | null | undefined> | undefined;
    const mediaKey = type && MEDIA[type] ? fields?.[type]?.mediaKey : undefined;
    // The same test as attachment() below: a media key means a download and a follow-up.
    const downloadable = mediaKey !== undefined && mediaKey !== null && mediaKey.length > 0;
    return { message: `message:${suffix}`, ...(downloadable ? { attachment: `attachment:${suffix}` } : {}) };
  } catch {
    return undefined;
  }
}

/**
 * The follow-up record of a message's media (see the header): an attachment-only `edit` of the
 * message, with the file or the reason it could not be archived.
 */
export function mapMediaOutcome(media: PendingMedia, outcome: MediaOutcome): CaptureInput {
  const { mime, name } = media.declared;
  const attachment: AttachmentInput = 'bytes' in outcome
    ? { bytes: outcome.bytes, mime, ...(name ? { name } : {}) }
    : { status: 'unavailable', ...media.declared, reason: clip(outcome.reason, 200) };
  return {
    ...media.context,
    kind: 'edit',
    key: media.key,
    target: media.target,
    attachments: [attachment],
    meta: { followUp: 'attachment' },
  };
}

/** A "delete for me" (app-state sync, `messages.delete`): the custodian hid a message on their devices. */
export function mapDeleteForMe(
  key: { remoteJid?: string | null; fromMe?: boolean | null; id?: string | null; participant?: string | null },
  deps: Pick<MapDependencies, 'me' | 'aliases'>,
  at: Date,
  raw?: { readonly bytes: Uint8Array; readonly format: string },
): CaptureInput | undefined {
  if (!key.id || !key.remoteJid || !isSaneId(key.id) || !isSaneId(key.remoteJid)) return undefined;
  const chat = userJid(key.remoteJid);
  const group = isJidGroup(chat) === true || isJidBroadcast(chat) === true;
  const me = userJid(deps.me.id);
  const author = key.fromMe === true ? me : group ? userJid(key.participant ?? '') : chat;
  const target: NativeRef = { id: key.id, chat, sender: author || chat };
  return {
    kind: 'delete',
    key: `delete-for-me:${chat}:${target.sender}:${key.id}`,
    sentAt: at.toISOString(),
    conversation: { id: chat, type: group ? 'group' : 'direct' },
    sender: party(me, deps),
    direction: 'outbound',
    target,
    deletion: { scope: 'me' },
    meta: { origin: 'app-state-sync' },
    ...(raw ? { raw } : {}),
  };
}

// ── events that are not messages ──────────────────────────────────────────────────────────

/** `raw.format` of the JSON evidence of every event that is not a message (see {@link WhatsAppEventEvidence}). */
export const EVENT_FORMAT = 'whatsapp.event.v1';
/** `raw.format` of a message protobuf could not encode: Baileys' object as JSON (BufferJSON). */
export const UNENCODABLE_FORMAT = 'whatsapp.WAMessage.json';
/** A history-sync notification's inline payload (zlib-deflated `HistorySync`) that could not be read, as the phone sent it. */
export const HISTORY_PAYLOAD_FORMAT = 'whatsapp.HistorySync.zlib';
/** WhatsApp logs a linked device out after about this many days without the phone online. */
export const PHONE_LOGOUT_DAYS = 14;

/** A group as `groups.upsert` states it (the fields recorded). */
export interface GroupEvidence {
  readonly id: string;
  readonly subject?: string;
  readonly owner?: string;
  readonly creation?: number;
  readonly participants: readonly { readonly id: string; readonly admin?: string }[];
}

/**
 * The evidence of a non-message event, stored as the record's raw blob (UTF-8 JSON, format
 * {@link EVENT_FORMAT}). `at` is the connector's clock when the event happened (ISO 8601).
 */
export type WhatsAppEventEvidence =
  /** The linked identity, recorded at every start: the `me` every mapping of the stream used. */
  | { readonly type: 'identity'; readonly at: string; readonly me: { readonly id: string; readonly lid?: string } }
  /** LID ↔ phone-number pairs and group subjects learned outside messages (contacts, history, groups.update). */
  | { readonly type: 'directory'; readonly at: string; readonly source: string; readonly pairs: readonly (readonly [string, string])[]; readonly titles: readonly (readonly [string, string])[] }
  | { readonly type: 'group-metadata'; readonly at: string; readonly group: GroupEvidence }
  | { readonly type: 'delete-for-me'; readonly at: string; readonly key: { readonly remoteJid?: string | null; readonly fromMe?: boolean | null; readonly id?: string | null; readonly participant?: string | null } }
  | { readonly type: 'chat-cleared'; readonly at: string; readonly jid: string }
  /** An event the tap could not serialize at all (not even as JSON). */
  | { readonly type: 'tap-failure'; readonly at: string; readonly error: string }
  /** The server announced `announced` offline messages (`offline_preview`); `arrived` came before its `offline` end marker. */
  | { readonly type: 'offline-count'; readonly at: string; readonly announced: number; readonly arrived: number; readonly total?: number; readonly from: string; readonly to: string }
  /** No sign of the phone for `days` days since `lastSeen` (WhatsApp unlinks after {@link PHONE_LOGOUT_DAYS}). */
  | { readonly type: 'phone-offline'; readonly at: string; readonly lastSeen: string; readonly days: number }
  /** No history sync arrived within `boundMs` after the device was linked. */
  | { readonly type: 'history-missing'; readonly at: string; readonly linkedAt: string; readonly boundMs: number }
  /** One reconciliation attempt of the gap record with key `gap` (history-reconcile.ts): what the phone answered and what was new. */
  | {
      readonly type: 'gap-reconciled';
      readonly at: string;
      readonly gap: string;
      readonly outcome: 'backfilled' | 'not-recovered';
      readonly reason?: string;
      readonly chats: number;
      readonly answered: number;
      readonly returned: number;
      readonly recorded: number;
      readonly attempt: number;
      /** Messages since the gap in chats left unasked by the anchor limits (absent in records before it was counted). */
      readonly notAsked?: number;
    };

/** The idempotency key of an offline-count record (the reconciler names the gap by it). */
export function offlineCountKey(evidence: { readonly from: string; readonly to: string; readonly announced: number; readonly arrived: number }): string {
  return `offline-count:${evidence.from}:${evidence.to}:${evidence.announced}:${evidence.arrived}`;
}

/** Encodes evidence for {@link EVENT_FORMAT}. */
export function encodeEventEvidence(evidence: WhatsAppEventEvidence): Uint8Array {
  return Uint8Array.from(Buffer.from(JSON.stringify(evidence), 'utf8'));
}

/** Everything one event maps to, plus what the identity book learns from it (applied in event order). */
export interface MappedEvent {
  readonly inputs: readonly CaptureInput[];
  readonly pairs?: readonly (readonly [string, string])[];
  readonly titles?: readonly (readonly [string, string])[];
  /** For a message envelope: the full result of {@link mapEnvelope}. */
  readonly message?: MappedEnvelope;
}

/**
 * THE ENTRY POINT: maps any event the connector records, from its raw bytes and format, plus
 * the recorded context in `deps`. The connector calls exactly this (or, for an envelope it holds
 * already, {@link mapEnvelope}); an auditor calls it with a record's raw blob to re-derive the
 * record. Throws on bytes that are not in their format (the runtime records them `unsupported`).
 */
export function mapWhatsAppEvent(event: { readonly raw: Uint8Array; readonly format: string }, deps: MapDependencies): MappedEvent {
  const raw = { bytes: event.raw, format: event.format };
  if (event.format === RAW_FORMAT) {
    const message = mapEnvelope(decodeEnvelope(event.raw).envelope, deps);
    const title = message.newTitle && message.ref ? [[message.ref.chat, message.newTitle] as const] : undefined;
    return { inputs: [message.input], message, ...(message.aliasPairs ? { pairs: message.aliasPairs } : {}), ...(title ? { titles: title } : {}) };
  }
  if (event.format === UNENCODABLE_FORMAT) {
    const problem = { reason: 'unencodable-message', detail: 'protobuf could not encode the object Baileys emitted' };
    return { inputs: [{ kind: 'unsupported', key: `unsupported:json:${sha256(event.raw)}`, problem, raw }] };
  }
  if (event.format === HISTORY_PAYLOAD_FORMAT) {
    const reason = checkHistoryPayload({ initialHistBootstrapInlinePayload: event.raw })?.reason ?? 'history-payload-refused';
    return { inputs: [{ kind: 'unsupported', key: `unsupported:history-payload:${sha256(event.raw)}`, problem: { reason, detail: 'inline history-sync payload from the phone' }, raw }] };
  }
  if (event.format !== EVENT_FORMAT) throw new TypeError(`not a WhatsApp evidence format: ${clip(event.format, 60)}`);
  const evidence = JSON.parse(Buffer.from(event.raw).toString('utf8')) as WhatsAppEventEvidence;
  const sentAt = new Date(evidence.at).toISOString();
  switch (evidence.type) {
    case 'identity': {
      const fields = { id: evidence.me.id, ...(evidence.me.lid ? { lid: evidence.me.lid } : {}) };
      return { inputs: [{ kind: 'system', key: `identity:${evidence.me.id}:${evidence.me.lid ?? ''}`, sentAt, system: { event: 'whatsapp-identity', fields }, raw }] };
    }
    case 'directory': {
      const fields = { source: evidence.source, pairs: String(evidence.pairs.length), titles: String(evidence.titles.length) };
      const input: CaptureInput = { kind: 'system', key: `directory:${sha256(JSON.stringify([evidence.pairs, evidence.titles]))}`, sentAt, system: { event: 'whatsapp-directory', fields }, raw };
      return { inputs: [input], pairs: evidence.pairs, titles: evidence.titles };
    }
    case 'group-metadata':
      return mapGroupMetadata(evidence.group, sentAt, raw);
    case 'delete-for-me': {
      const input = mapDeleteForMe(evidence.key, deps, new Date(sentAt), raw);
      return { inputs: input ? [input] : [] };
    }
    case 'chat-cleared': {
      const chat = userJid(evidence.jid) || clip(evidence.jid, 256);
      const conversation = { id: chat, type: chat.endsWith('@g.us') ? ('group' as const) : ('direct' as const) };
      return { inputs: [{ kind: 'system', key: `chat-cleared-for-me:${chat}:${sentAt}`, sentAt, conversation, system: { event: 'chat-cleared-for-me' }, raw }] };
    }
    case 'tap-failure':
      return { inputs: [{ kind: 'gap', key: `tap-failure:${sentAt}:${sha256(event.raw)}`, sentAt, gap: { reason: 'serialize-failed' }, meta: { error: clip(evidence.error, 100) }, raw }] };
    case 'offline-count': {
      const facts = { announced: String(evidence.announced), arrived: String(evidence.arrived), ...(evidence.total !== undefined ? { total: String(evidence.total) } : {}) };
      const key = offlineCountKey(evidence);
      if (evidence.arrived >= evidence.announced) {
        return { inputs: [{ kind: 'system', key, sentAt, system: { event: 'whatsapp-offline-complete', fields: facts }, raw }] };
      }
      const gap = { reason: 'offline-count-mismatch', from: evidence.from, to: evidence.to, missing: evidence.announced - evidence.arrived };
      return { inputs: [{ kind: 'gap', key, sentAt, gap, meta: { announced: evidence.announced, arrived: evidence.arrived, recovery: 'history-sync-or-reconcile' }, raw }] };
    }
    case 'phone-offline': {
      const fields = { lastSeen: evidence.lastSeen, days: String(evidence.days), logoutAfterDays: String(PHONE_LOGOUT_DAYS) };
      return { inputs: [{ kind: 'system', key: `phone-offline:${evidence.lastSeen}:${evidence.days}`, sentAt, system: { event: 'whatsapp-phone-offline', fields }, raw }] };
    }
    case 'history-missing': {
      const gap = { reason: 'history-sync-missing', to: evidence.linkedAt };
      return { inputs: [{ kind: 'gap', key: `history-missing:${evidence.linkedAt}`, sentAt, gap, meta: { boundMs: evidence.boundMs }, raw }] };
    }
    case 'gap-reconciled': {
      const fields: Record<string, string> = { gap: clip(evidence.gap, 400), method: 'fetchMessageHistory', attempt: String(evidence.attempt), chats: String(evidence.chats), answered: String(evidence.answered), returned: String(evidence.returned), recorded: String(evidence.recorded) };
      if (evidence.reason !== undefined) fields['reason'] = clip(evidence.reason, 100);
      // Only chats with a message since the gap began can be asked: one whose only messages were lost may exist.
      if (evidence.notAsked !== undefined) Object.assign(fields, { notAsked: String(evidence.notAsked), unaskedChats: 'possible' });
      const event = evidence.outcome === 'backfilled' ? 'gap-backfilled' : 'gap-not-recovered';
      return { inputs: [{ kind: 'system', key: `${event}:${clip(evidence.gap, 400)}:${evidence.attempt}:${sentAt}`, sentAt, system: { event, fields }, raw }] };
    }
    default:
      throw new TypeError(`unknown WhatsApp event type: ${clip(String((evidence as { type?: unknown }).type), 60)}`);
  }
}

/** A group's metadata (`groups.upsert`) as a `membership` record; its subject becomes the group's title. */
function mapGroupMetadata(group: GroupEvidence, sentAt: string, raw: { bytes: Uint8Array; format: string }): MappedEvent {
  const participants = group.participants.slice(0, 1024);
  const subject = typeof group.subject === 'string' && group.subject ? group.subject : undefined;
  const input: CaptureInput = {
    kind: 'membership',
    key: `group-metadata:${group.id}:${sha256(JSON.stringify(group))}`,
    sentAt,
    conversation: { id: group.id, type: 'group', ...(subject ? { title: clip(subject, 200) } : {}) },
    membership: { action: 'join', members: participants.map((p) => ({ id: p.id })), ...(subject ? { value: clip(subject, 1000) } : {}) },
    raw,
  };
  return { inputs: [input], ...(subject ? { titles: [[group.id, clip(subject, 200)] as const] } : {}) };
}

function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

// ── helpers (pure) ──────────────────────────────────────────────────────────────────────────

function editInput(
  pm: proto.Message.IProtocolMessage,
  base: Pick<CaptureInput, 'sentAt' | 'conversation' | 'sender' | 'direction'> & { meta: Record<string, MetaValue> },
  native: NativeRef,
  target: NativeRef,
  key: string,
  raw: { bytes: Uint8Array; format: string },
): CaptureInput {
  const editedAt = safeNumber(pm.timestampMs);
  if (editedAt !== undefined && editedAt > 0) base.meta['editedAtMs'] = editedAt;
  const edited = pm.editedMessage ? unwrap(pm.editedMessage).content : undefined;
  const found = edited ? editedText(edited) : undefined;
  const text = found !== undefined ? wellFormed(found, base.meta) : undefined;
  return { ...base, kind: 'edit', key, native, target, ...(text !== undefined ? { text } : {}), raw };
}

/** The new text of an edit: message text or a media caption (edits never replace media). */
function editedText(content: proto.IMessage): string | undefined {
  if (typeof content.conversation === 'string') return content.conversation;
  if (typeof content.extendedTextMessage?.text === 'string') return content.extendedTextMessage.text;
  for (const field of Object.keys(MEDIA)) {
    const caption = ((content as Record<string, { caption?: unknown } | null | undefined>)[field])?.caption;
    if (typeof caption === 'string') return caption;
  }
  return undefined;
}

/** Text and attachments of an ordinary message; `undefined` when the type is not one we map. */
function messageBody(
  content: proto.IMessage,
  type: string | undefined,
  wrappers: readonly string[],
  meta: Record<string, MetaValue>,
): { text?: string; attachments?: AttachmentInput[]; media?: Pick<PendingMedia, 'ref' | 'declared'> } | undefined {
  if (type === 'conversation') return { text: wellFormed(content.conversation ?? '', meta) };
  if (type === 'extendedTextMessage') return { text: wellFormed(content.extendedTextMessage?.text ?? '', meta) };
  const kind = type ? MEDIA[type] : undefined;
  if (type && kind) {
    const media = (content as Record<string, unknown>)[type] as proto.Message.IDocumentMessage & proto.Message.IAudioMessage & proto.Message.IVideoMessage;
    if (media.ptt === true) meta['voice'] = true;
    if (media.gifPlayback === true) meta['gif'] = true;
    const viewOnce = wrappers.some((w) => w.startsWith('viewOnce'));
    if (viewOnce) meta['viewOnce'] = true;
    const caption = typeof media.caption === 'string' ? media.caption : undefined;
    return { ...(caption !== undefined ? { text: wellFormed(caption, meta) } : {}), ...attachment(media, kind, viewOnce) };
  }
  if (type === 'locationMessage' || type === 'liveLocationMessage') {
    const loc = (content.locationMessage ?? content.liveLocationMessage) as proto.Message.ILocationMessage;
    meta['latitude'] = String(loc.degreesLatitude ?? '');
    meta['longitude'] = String(loc.degreesLongitude ?? '');
    const text = [loc.name, loc.address, loc.comment].filter((part): part is string => typeof part === 'string' && part.length > 0).join('\n');
    return text ? { text: wellFormed(text, meta) } : {};
  }
  if (type === 'contactMessage' || type === 'contactsArrayMessage') {
    const cards = type === 'contactMessage' ? [content.contactMessage] : (content.contactsArrayMessage?.contacts ?? []);
    const attachments: AttachmentInput[] = cards
      .filter((card): card is proto.Message.IContactMessage => !!card && typeof card.vcard === 'string')
      .map((card) => ({ bytes: Buffer.from(card.vcard ?? '', 'utf8'), mime: 'text/vcard', ...(card.displayName ? { name: clip(card.displayName, 200) } : {}) }));
    return { attachments };
  }
  const poll = content.pollCreationMessage ?? content.pollCreationMessageV2 ?? content.pollCreationMessageV3;
  if (type?.startsWith('pollCreationMessage') && poll) {
    const options = (poll.options ?? []).map((option) => option.optionName ?? '');
    meta['poll'] = true;
    return { text: wellFormed([poll.name ?? '', ...options.map((option) => `- ${option}`)].join('\n'), meta) };
  }
  return undefined;
}

/**
 * A media attachment as the message record states it: unavailable at once (view-once without
 * a key, or no media key at all), else the `download-pending` placeholder plus what to fetch.
 */
function attachment(media: proto.Message.IDocumentMessage, kind: MediaKind, viewOnce: boolean): { attachments: AttachmentInput[]; media?: Pick<PendingMedia, 'ref' | 'declared'> } {
  const mime = typeof media.mimetype === 'string' && media.mimetype ? clip(media.mimetype, 200) : 'application/octet-stream';
  const name = typeof media.fileName === 'string' && media.fileName ? clip(media.fileName, 200) : undefined;
  const size = safeNumber(media.fileLength);
  const sha256 = media.fileSha256 && media.fileSha256.length === 32 ? Buffer.from(media.fileSha256).toString('hex') : undefined;
  const declared = { mime, ...(name ? { name } : {}), ...(size !== undefined ? { size } : {}), ...(sha256 ? { sha256 } : {}) };
  const unavailable = (reason: string): AttachmentInput => ({ status: 'unavailable', reason, ...declared });
  if (!media.mediaKey || media.mediaKey.length === 0) return { attachments: [unavailable(viewOnce ? 'view-once' : 'no-media-key')] };
  const ref: MediaRef = {
    kind,
    url: typeof media.url === 'string' ? media.url : undefined,
    directPath: typeof media.directPath === 'string' ? media.directPath : undefined,
    mediaKey: Uint8Array.from(media.mediaKey),
    fileSha256: media.fileSha256 ? Uint8Array.from(media.fileSha256) : undefined,
    fileEncSha256: media.fileEncSha256 ? Uint8Array.from(media.fileEncSha256) : undefined,
    fileLength: size,
  };
  return { attachments: [unavailable('download-pending')], media: { ref, declared } };
}

/** Peels wrapper messages (at most 8 levels), recording each wrapper's name. */
function unwrap(message: proto.IMessage): { content: proto.IMessage; wrappers: string[] } {
  let content = message;
  const wrappers: string[] = [];
  for (let depth = 0; depth < 8; depth++) {
    const fields = content as Record<string, { message?: proto.IMessage | null } | null | undefined>;
    const wrapper = WRAPPERS.find((name) => fields[name]?.message);
    const inner = wrapper ? fields[wrapper]?.message : undefined;
    if (!wrapper || !inner) break;
    wrappers.push(wrapper.replace('Message', ''));
    content = inner;
  }
  return { content, wrappers };
}

/** The content field set on a Message (ignoring context and key-distribution fields). */
function contentType(content: proto.IMessage): string | undefined {
  return Object.keys(content).find(
    (name) => name !== 'messageContextInfo' && name !== 'senderKeyDistributionMessage' && (content as Record<string, unknown>)[name] !== null && (content as Record<string, unknown>)[name] !== undefined,
  );
}

/** Reply, forward and mention facts from the content's ContextInfo. */
function contextOf(content: proto.IMessage, type: string | undefined, chat: string): { forwarded: boolean; mentions: string[]; replyTo?: NativeRef } | undefined {
  if (!type) return undefined;
  const info = ((content as Record<string, { contextInfo?: proto.IContextInfo | null } | null>)[type] ?? undefined)?.contextInfo;
  if (!info) return undefined;
  const sane = (jid: string | null | undefined): jid is string => typeof jid === 'string' && isSaneId(jid);
  const mentions = (info.mentionedJid ?? []).filter(sane).map(userJid).filter(Boolean).slice(0, 256);
  const quotedId = info.stanzaId;
  const replyTo: NativeRef | undefined = sane(quotedId)
    ? { id: quotedId, chat: sane(info.remoteJid) ? userJid(info.remoteJid) : chat, ...(sane(info.participant) ? { sender: userJid(info.participant) } : {}) }
    : undefined;
  return { forwarded: info.isForwarded === true, mentions, ...(replyTo ? { replyTo } : {}) };
}

/**
 * The message an edit, revoke or reaction points at. `mine` says whose perspective the key is
 * written from: the custodian's (own sends; reactions after Baileys' cleanMessage) or the
 * remote sender's (protocol keys as the sender wrote them).
 */
function targetRef(key: proto.IMessageKey, chat: string, envelopeSender: string, mine: boolean, deps: MapDependencies): NativeRef | undefined {
  if (!key.id) return undefined;
  const me = userJid(deps.me.id);
  const group = isJidGroup(chat) === true || isJidBroadcast(chat) === true;
  let sender: string;
  if (key.participant) sender = sameUser(userJid(key.participant), me, deps) ? me : userJid(key.participant);
  else if (key.fromMe === true) sender = mine ? me : envelopeSender;
  else if (group) sender = mine ? '' : envelopeSender;
  else sender = mine ? chat : me;
  return sender ? { id: key.id, chat, sender } : { id: key.id, chat };
}

function party(id: string, deps: Pick<MapDependencies, 'me' | 'aliases'>, name?: string | null, alt?: string): Party {
  const aliases = new Set(deps.aliases(id));
  if (alt) aliases.add(userJid(alt));
  if (sameJid(id, deps.me.id) && deps.me.lid) aliases.add(userJid(deps.me.lid));
  aliases.delete(id);
  aliases.delete('');
  return { id, ...(name ? { name: clip(name, 200) } : {}), ...(aliases.size > 0 ? { aliases: [...aliases].sort() } : {}) };
}

/** A group stub parameter: a JID, or Baileys v7's JSON `{id, phoneNumber?, lid?}`. */
function memberParty(param: string, deps: MapDependencies): Party {
  if (param.startsWith('{')) {
    try {
      const parsed = JSON.parse(param) as { id?: unknown; phoneNumber?: unknown; lid?: unknown; pn?: unknown };
      const id = [parsed.id, parsed.lid, parsed.phoneNumber, parsed.pn].find((v): v is string => typeof v === 'string' && v.length > 0);
      if (id) {
        const alt = [parsed.phoneNumber, parsed.lid, parsed.pn].find((v): v is string => typeof v === 'string' && v.length > 0 && v !== id);
        return party(userJid(id), deps, undefined, alt);
      }
    } catch {
      // not JSON after all: keep it as written
    }
  }
  return party(userJid(param) || clip(param, 200), deps);
}

function withAliases(jid: string, deps: MapDependencies): string[] {
  const me = userJid(deps.me.id);
  const own = sameJid(jid, me) && deps.me.lid ? [userJid(deps.me.lid)] : [];
  return [jid, ...own, ...deps.aliases(jid)];
}

function sameUser(a: string | undefined, b: string | undefined, deps: MapDependencies): boolean {
  if (!a || !b) return false;
  return a === b || withAliases(a, deps).includes(b);
}

function sameJid(a: string, b: string): boolean {
  return userJid(a) === userJid(b);
}

/** User JID without device/agent (`123:4@s.whatsapp.net` → `123@s.whatsapp.net`). Empty for junk. */
function userJid(jid: string): string {
  if (typeof jid !== 'string' || jid.length === 0 || jid.length > 256) return '';
  try {
    return jidNormalizedUser(jid) || jid;
  } catch {
    return jid;
  }
}

function secretOf(info: proto.WebMessageInfo): Uint8Array | undefined {
  const secret = info.message?.messageContextInfo?.messageSecret ?? info.messageSecret;
  return secret && secret.length > 0 ? Uint8Array.from(secret) : undefined;
}

/** Baileys' decryption error texts → short reason codes. */
function decryptFailure(text: string | undefined): string {
  if (!text) return 'decrypt-failed';
  if (/no matching sessions|no session/i.test(text)) return 'no-session';
  if (/bad mac/i.test(text)) return 'bad-mac';
  if (/absent from node/i.test(text)) return 'message-absent';
  if (/missing keys|key used already|no senderkey/i.test(text)) return 'missing-keys';
  return 'decrypt-failed';
}

/** Cuts a string to `max` UTF-16 units without splitting a surrogate pair; repairs lone surrogates. */
function clip(value: string, max: number): string {
  const well = value.toWellFormed();
  if (well.length <= max) return well;
  const cut = well.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** Message text as the archive can hold it: lone surrogates (hostile bytes) become U+FFFD, flagged. */
function wellFormed(text: string, meta: Record<string, MetaValue>): string {
  if (text.isWellFormed()) return text;
  meta['textRepaired'] = true;
  return text.toWellFormed();
}

/** Ids and JIDs are short printable strings; anything else is not a key we can name records by. */
function isSaneId(value: string): boolean {
  if (value.length === 0 || value.length > 256 || !value.isWellFormed()) return false;
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) < 0x20) return false;
  return true;
}

function safeNumber(value: unknown): number | undefined {
  if (value === null || value === undefined) return undefined;
  try {
    const n = toNumber(value as number);
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function errorName(error: unknown): string {
  return error instanceof Error ? clip(`${error.name}: ${error.message}`, 200) : 'unknown error';
}

function unsupported(
  envelope: CapturedEnvelope,
  reason: string,
  detail: string | undefined,
  raw: { bytes: Uint8Array; format: string },
  base?: object,
  native?: NativeRef,
  key?: string,
): CaptureInput {
  return {
    ...(base ?? { meta: { origin: envelope.origin } }),
    kind: 'unsupported',
    key: key ?? `unsupported:bytes:${createHash('sha256').update(envelope.bytes).digest('hex')}`,
    ...(native ? { native } : {}),
    problem: { reason, ...(detail ? { detail: clip(detail, 200) } : {}) },
    raw,
  };
}
