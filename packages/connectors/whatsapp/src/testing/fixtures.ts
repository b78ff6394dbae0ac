/**
 * Message builders for offline tests and the demo, made with Baileys' own send-side builders
 * (`generateWAMessageContent`, `generateWAMessageFromContent`) and WAProto types, so every
 * fixture is what a real WhatsApp client would put on the wire.
 */
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { generateWAMessageContent, generateWAMessageFromContent, getMediaKeys, proto, type MediaType, type WAMessage, type WAMessageKey } from '@whiskeysockets/baileys';
import { sealSecretMessage } from '../message-secret.ts';

/** Identities used by the fixtures (synthetic numbers from the 555 range). */
export const JIDS = {
  me: '15550000001@s.whatsapp.net',
  meLid: '100000000000001@lid',
  alice: '15550000002@s.whatsapp.net',
  aliceLid: '200000000000002@lid',
  bob: '15550000003@s.whatsapp.net',
  bobLid: '300000000000003@lid',
  group: '120363000000000001@g.us',
} as const;

export interface Where {
  /** Author JID (`JIDS.me` for own messages). */
  readonly from: string;
  /** Group JID for group messages; omitted for direct chats. */
  readonly group?: string;
  /** Direct-chat peer for own messages (default `JIDS.alice`). */
  readonly to?: string;
  readonly id: string;
  /** Server time, seconds. */
  readonly t: number;
  /** v7 alias fields Baileys adds to the key from stanza attributes. */
  readonly alt?: string;
  readonly pushName?: string;
}

/** Wraps message content into the `WAMessage` the receiving socket would emit (after cleanMessage). */
export function envelope(content: proto.IMessage, where: Where): WAMessage {
  const mine = where.from === JIDS.me;
  const chat = where.group ?? (mine ? (where.to ?? JIDS.alice) : where.from);
  const message = generateWAMessageFromContent(chat, content, { userJid: where.from, timestamp: new Date(where.t * 1000), messageId: where.id });
  const key: WAMessageKey = { remoteJid: chat, fromMe: mine, id: where.id };
  if (where.group) key.participant = where.from;
  if (where.alt) {
    if (where.group) key.participantAlt = where.alt;
    else key.remoteJidAlt = where.alt;
    key.addressingMode = where.alt.endsWith('@lid') ? 'pn' : 'lid';
  }
  message.key = key;
  message.messageTimestamp = where.t;
  if (where.pushName) message.pushName = where.pushName;
  return message;
}

/** Text content with a fresh messageSecret (as current clients attach to every message). */
export async function textContent(text: string, from: string, secret: Uint8Array = randomBytes(32)): Promise<proto.IMessage> {
  const content = await generateWAMessageContent({ text }, generation);
  content.messageContextInfo = { ...content.messageContextInfo, messageSecret: secret };
  return content;
}

/** Plaintext edit (protocolMessage MESSAGE_EDIT), as Baileys itself sends it. Key is the sender's view. */
export async function editContent(text: string, target: WAMessageKey): Promise<proto.IMessage> {
  return generateWAMessageContent({ text, edit: target }, generation);
}

/** Revoke ("delete for everyone"), as Baileys sends it. For an admin revoke, `target.participant` is the author. */
export async function revokeContent(target: WAMessageKey): Promise<proto.IMessage> {
  return generateWAMessageContent({ delete: target }, generation);
}

/** Reaction (empty text removes it). */
export async function reactionContent(target: WAMessageKey, emoji: string): Promise<proto.IMessage> {
  return generateWAMessageContent({ react: { key: target, text: emoji } }, generation);
}

/**
 * Encrypted edit as current WhatsApp clients send it: `secretEncryptedMessage` under the
 * original's messageSecret. `originalSender` / `editor` are the JID forms the sender used.
 */
export function secretEditContent(input: { text: string; target: WAMessageKey; secret: Uint8Array; originalSender: string; editor: string }): proto.IMessage {
  const inner = proto.Message.encode({
    protocolMessage: {
      key: input.target,
      type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT,
      editedMessage: { conversation: input.text },
      timestampMs: Date.now(),
    },
  }).finish();
  const { encPayload, encIv } = sealSecretMessage({ plaintext: inner, secret: input.secret, targetId: input.target.id ?? '', targetSender: input.originalSender, editor: input.editor });
  return {
    secretEncryptedMessage: {
      targetMessageKey: input.target,
      encPayload,
      encIv,
      secretEncType: proto.Message.SecretEncryptedMessage.SecretEncType.MESSAGE_EDIT,
    },
  };
}

/** An encrypted media file as the WhatsApp CDN stores it, and the message fields describing it. */
export interface EncryptedMedia {
  /** The CDN file: AES-256-CBC ciphertext ‖ 10-byte HMAC. */
  readonly file: Uint8Array;
  readonly mediaKey: Uint8Array;
  readonly fileSha256: Uint8Array;
  readonly fileEncSha256: Uint8Array;
  readonly fileLength: number;
}

/** Encrypts media exactly as WhatsApp clients do (keys from Baileys' getMediaKeys). */
export async function encryptMedia(plaintext: Uint8Array, kind: MediaType): Promise<EncryptedMedia> {
  const mediaKey = randomBytes(32);
  const { iv, cipherKey, macKey } = await getMediaKeys(mediaKey, kind);
  const cipher = createCipheriv('aes-256-cbc', cipherKey, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const mac = createHmac('sha256', macKey ?? Buffer.alloc(32)).update(iv).update(ciphertext).digest().subarray(0, 10);
  const file = Buffer.concat([ciphertext, mac]);
  return {
    file: Uint8Array.from(file),
    mediaKey: Uint8Array.from(mediaKey),
    fileSha256: Uint8Array.from(createHash('sha256').update(plaintext).digest()),
    fileEncSha256: Uint8Array.from(createHash('sha256').update(file).digest()),
    fileLength: plaintext.length,
  };
}

/** Media message content pointing at `url` (no directPath, so the download uses the URL). */
export function mediaContent(
  kind: 'image' | 'video' | 'audio' | 'document' | 'sticker',
  media: EncryptedMedia,
  url: string,
  extra: { mimetype?: string; fileName?: string; caption?: string; ptt?: boolean; viewOnce?: boolean } = {},
): proto.IMessage {
  const fields = {
    url,
    mediaKey: media.mediaKey,
    fileSha256: media.fileSha256,
    fileEncSha256: media.fileEncSha256,
    fileLength: media.fileLength,
    mimetype: extra.mimetype ?? defaultMime[kind],
    ...(extra.caption !== undefined && kind !== 'audio' && kind !== 'sticker' ? { caption: extra.caption } : {}),
    ...(extra.fileName && kind === 'document' ? { fileName: extra.fileName } : {}),
    ...(extra.ptt && kind === 'audio' ? { ptt: true } : {}),
  };
  const content = proto.Message.fromObject({ [`${kind}Message`]: fields });
  return extra.viewOnce ? proto.Message.create({ viewOnceMessageV2: { message: content } }) : content;
}

/** Builder options: fixtures never upload (media is built with {@link encryptMedia}). */
const generation = {
  upload: () => Promise.reject(new Error('offline fixtures do not upload media')),
};

const defaultMime = {
  image: 'image/jpeg',
  video: 'video/mp4',
  audio: 'audio/ogg; codecs=opus',
  document: 'application/pdf',
  sticker: 'image/webp',
} as const;

/** A group notification stub as Baileys builds it from a `w:gp2` notification. */
export function groupStub(stubType: proto.WebMessageInfo.StubType, params: string[], where: Omit<Where, 'group'> & { group: string }): WAMessage {
  return {
    key: { remoteJid: where.group, fromMe: where.from === JIDS.me, id: where.id, participant: where.from },
    messageTimestamp: where.t,
    messageStubType: stubType,
    messageStubParameters: params,
  };
}

/** A CIPHERTEXT stub (what Baileys upserts when decryption fails). */
export function ciphertextStub(errorText: string, where: Where, viewOnce = false): WAMessage {
  const chat = where.group ?? where.from;
  const key: WAMessageKey = { remoteJid: chat, fromMe: false, id: where.id, ...(where.group ? { participant: where.from } : {}), ...(viewOnce ? { isViewOnce: true } : {}) };
  return { key, messageTimestamp: where.t, messageStubType: proto.WebMessageInfo.StubType.CIPHERTEXT, messageStubParameters: [errorText] };
}
