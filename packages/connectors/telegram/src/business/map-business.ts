/**
 * The mapping from Bot API Business updates (JSON, as Telegram POSTs them to the webhook) to
 * capture inputs. This file is the whole of it, pure and readable top to bottom.
 *
 * Identities match the MTProto route: a private chat's Bot API `chat.id` is the other user's
 * id, which is also its marked MTProto peer id, so `native: { id, peer }` is the same whichever
 * route captured the message. Raw evidence is the exact request body Telegram sent.
 *
 * Direction: in a business chat `chat.id` is the customer; a message whose `from.id` is not the
 * chat's id was sent by the business account (the custodian, or a bot on their behalf).
 */
import type { AttachmentInput, CaptureInput, ConversationRef, Party } from '@offchannel/core';
import { sha256Hex } from '@offchannel/core';
import type { BusinessConnection, BusinessMessagesDeleted, Message, Update, User } from 'grammy/types';

/** `raw.format` of Bot API records: the webhook request body (one `Update` object, JSON). */
export const BOT_API_RAW_FORMAT = 'telegram.botapi-update.json';

/** MIME type of an attachment holding a non-file payload (location, contact, poll…) as JSON. */
export const BOT_API_JSON_MIME = 'application/json';

/** A downloadable file in a message. */
export interface BotFileDescriptor {
  readonly fileId: string;
  readonly uniqueId: string;
  readonly mime: string;
  readonly name?: string;
  readonly size?: number;
}

export interface BusinessMapEnv {
  /** The webhook request body, stored as the raw evidence of every record made from it. */
  readonly raw: Uint8Array;
  /** Files of the message, downloaded (or unavailable with a reason), in {@link filesOf} order. */
  readonly attachments?: readonly AttachmentInput[];
  /** Content fingerprint last recorded for the edited message, when known. */
  readonly previousFingerprint?: string;
  /** When the webhook received the update (deletes carry no time of their own). */
  readonly receivedAt: Date;
}

/** Maps one Business update. Anything else (or a shape it cannot read) becomes `unsupported`. */
export function mapBusinessUpdate(update: Update, env: BusinessMapEnv): CaptureInput[] {
  if (update.business_connection) return [mapConnection(update.business_connection, env)];
  if (update.business_message) return [mapMessage(update.business_message, env)];
  if (update.edited_business_message) {
    const message = update.edited_business_message;
    if (env.previousFingerprint === businessFingerprint(message)) return []; // reactions, previews: no content change
    return [mapEdit(message, env)];
  }
  if (update.deleted_business_messages) return mapDeleted(update.deleted_business_messages, env);
  const kinds = Object.keys(update).filter((name) => name !== 'update_id');
  return [unsupportedBotUpdate(env.raw, 'not-a-business-update', `update fields: ${kinds.join(',').slice(0, 200) || 'none'}`)];
}

/** A business account connected, changed or disconnected the capture bot. */
function mapConnection(connection: BusinessConnection, env: BusinessMapEnv): CaptureInput {
  return {
    kind: 'system',
    key: `business-connection:${connection.id}:${connection.date}:${connection.is_enabled ? 'enabled' : 'disabled'}`,
    sentAt: new Date(connection.date * 1000),
    sender: party(connection.user),
    system: {
      event: connection.is_enabled ? 'business-connected' : 'business-disconnected',
      fields: { connectionId: connection.id, userId: String(connection.user.id), enabled: String(connection.is_enabled) },
    },
    raw: rawOf(env),
  };
}

function mapMessage(message: Message, env: BusinessMapEnv): CaptureInput {
  const peer = String(message.chat.id);
  return {
    kind: 'message',
    key: `message:${peer}:${message.message_id}`,
    ...common(message, env),
    native: { id: String(message.message_id), peer },
    ...body(message, env),
  };
}

function mapEdit(message: Message, env: BusinessMapEnv): CaptureInput {
  const peer = String(message.chat.id);
  const fingerprint = businessFingerprint(message);
  return {
    kind: 'edit',
    key: `edit:${peer}:${message.message_id}:${message.edit_date ?? message.date}:${fingerprint.slice(0, 32)}`,
    ...common(message, env),
    sentAt: new Date((message.edit_date ?? message.date) * 1000),
    target: { id: String(message.message_id), peer },
    ...body(message, env),
  };
}

function mapDeleted(deleted: BusinessMessagesDeleted, env: BusinessMapEnv): CaptureInput[] {
  const peer = String(deleted.chat.id);
  return deleted.message_ids.map((id) => ({
    kind: 'delete',
    key: `delete:${peer}:${id}`,
    sentAt: env.receivedAt,
    conversation: conversation(deleted.chat),
    sender: { id: 'unknown' }, // Telegram does not say who deleted
    direction: 'inbound',
    target: { id: String(id), peer },
    deletion: { scope: 'everyone' },
    meta: { businessConnection: deleted.business_connection_id, scopeCertain: false, sentAtIsReceipt: true },
    raw: rawOf(env),
  }));
}

function common(message: Message, env: BusinessMapEnv) {
  const from = message.from;
  const outbound = from !== undefined && from.id !== message.chat.id;
  return {
    sentAt: new Date(message.date * 1000),
    conversation: conversation(message.chat),
    sender: from ? party(from) : { id: String(message.chat.id) },
    direction: outbound ? ('outbound' as const) : ('inbound' as const),
    raw: rawOf(env),
    meta: {
      ...(message.business_connection_id ? { businessConnection: message.business_connection_id } : {}),
      ...(message.sender_business_bot ? { sentByBot: String(message.sender_business_bot.id) } : {}),
      ...(message.media_group_id ? { album: message.media_group_id } : {}),
    },
  };
}

function body(message: Message, env: BusinessMapEnv): Pick<CaptureInput, 'text' | 'attachments' | 'replyTo' | 'forwarded' | 'mentions'> {
  const text = message.text ?? message.caption;
  const entities = message.entities ?? message.caption_entities ?? [];
  const mentions = [...new Set(entities.flatMap((entity) => (entity.type === 'text_mention' ? [String(entity.user.id)] : [])))];
  const inline = inlinePayloads(message);
  const attachments = [...(env.attachments ?? []), ...inline];
  return {
    ...(text ? { text } : {}),
    ...(attachments.length > 0 ? { attachments } : {}),
    ...(message.reply_to_message ? { replyTo: { id: String(message.reply_to_message.message_id), peer: String(message.chat.id) } } : {}),
    ...(message.forward_origin ? { forwarded: true } : {}),
    ...(mentions.length > 0 ? { mentions } : {}),
  };
}

/** The files of a message that can be downloaded with `getFile` (the largest photo size). */
export function filesOf(message: Message): BotFileDescriptor[] {
  const files: BotFileDescriptor[] = [];
  const add = (file: { file_id: string; file_unique_id: string; file_size?: number; mime_type?: string; file_name?: string } | undefined, mime: string): void => {
    if (!file) return;
    files.push({ fileId: file.file_id, uniqueId: file.file_unique_id, mime: file.mime_type ?? mime, ...(file.file_name ? { name: file.file_name } : {}), ...(file.file_size === undefined ? {} : { size: file.file_size }) });
  };
  if (message.photo && message.photo.length > 0) add([...message.photo].sort((a, b) => b.width * b.height - a.width * a.height)[0], 'image/jpeg');
  add(message.document, 'application/octet-stream');
  add(message.video, 'video/mp4');
  add(message.audio, 'audio/mpeg');
  add(message.voice, 'audio/ogg');
  add(message.video_note, 'video/mp4');
  add(message.animation, 'video/mp4');
  add(message.sticker, 'image/webp');
  return files;
}

/** Non-file content (location, contact, poll…) kept as its own JSON so nothing is lost. */
function inlinePayloads(message: Message): AttachmentInput[] {
  const out: AttachmentInput[] = [];
  for (const field of ['location', 'venue', 'contact', 'poll', 'dice', 'checklist', 'story', 'game', 'invoice'] as const) {
    const value: unknown = (message as unknown as Record<string, unknown>)[field];
    if (value !== undefined) out.push({ bytes: new TextEncoder().encode(JSON.stringify(value)), mime: BOT_API_JSON_MIME, name: `${field}.json` });
  }
  return out;
}

/** Content fingerprint (text, entities, file identities) used to skip non-content edits. */
export function businessFingerprint(message: Message): string {
  const entities = (message.entities ?? message.caption_entities ?? []).map((entity) => [entity.type, entity.offset, entity.length]);
  const files = filesOf(message).map((file) => file.uniqueId);
  return sha256Hex(new TextEncoder().encode(JSON.stringify([message.text ?? message.caption ?? '', entities, files])));
}

function conversation(chat: Message['chat']): ConversationRef {
  const name = 'first_name' in chat ? [chat.first_name, 'last_name' in chat ? chat.last_name : undefined].filter(Boolean).join(' ') : 'title' in chat ? chat.title : undefined;
  return { id: String(chat.id), type: chat.type === 'private' ? 'direct' : chat.type === 'channel' ? 'channel' : 'group', ...(name ? { title: name } : {}) };
}

function party(user: User): Party {
  const name = [user.first_name, user.last_name].filter(Boolean).join(' ');
  return { id: String(user.id), ...(name ? { name } : {}), ...(user.username ? { aliases: [`@${user.username}`] } : {}) };
}

/** An `unsupported` record for a webhook body that is not a Business update or cannot be read. */
export function unsupportedBotUpdate(raw: Uint8Array, reason: string, detail: string): CaptureInput {
  return { kind: 'unsupported', key: `unsupported:${sha256Hex(raw)}`, problem: { reason, detail }, raw: { bytes: raw, format: BOT_API_RAW_FORMAT } };
}

function rawOf(env: BusinessMapEnv): { bytes: Uint8Array; format: string } {
  return { bytes: env.raw, format: BOT_API_RAW_FORMAT };
}
