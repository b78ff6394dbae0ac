/**
 * Decryption of WhatsApp "message secret" envelopes (`secretEncryptedMessage`), which current
 * WhatsApp clients use for edits and which Baileys 7.0.0-rc14 does not decrypt.
 *
 * Scheme (the same as WhatsApp Web's and whatsmeow's `msgsecret`):
 *   key  = HKDF-SHA256(ikm = messageSecret of the ORIGINAL message, salt = empty,
 *                      info = originalId ‖ originalSenderJid ‖ editorJid ‖ useCase, 32 bytes)
 *   data = AES-256-GCM(key, iv = encIv (12 bytes), aad = empty), tag appended to encPayload
 * JIDs are user JIDs without device, in the form the chat uses (LID or phone number); the
 * connector tries every alias it knows for both parties, as WhatsApp Web does.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/** HKDF `info` suffix for message edits. */
export const MESSAGE_EDIT_USE_CASE = 'Message Edit';

const IV_BYTES = 12;
const TAG_BYTES = 16;
/** An edit is one protobuf Message: anything larger is not a genuine envelope. */
const MAX_PAYLOAD_BYTES = 1024 * 1024;

function deriveKey(secret: Uint8Array, targetId: string, targetSender: string, editor: string, useCase: string): Buffer {
  const info = Buffer.concat([targetId, targetSender, editor, useCase].map((part) => Buffer.from(part, 'utf8')));
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), info, 32));
}

/**
 * Decrypts `encPayload` trying each (original sender, editor) JID pair. Returns the plaintext
 * (a `proto.Message` encoding) or `undefined` if no pair authenticates or the input is malformed.
 */
export function openSecretMessage(input: {
  readonly encPayload: Uint8Array;
  readonly encIv: Uint8Array;
  readonly secret: Uint8Array;
  readonly targetId: string;
  readonly targetSenders: readonly string[];
  readonly editors: readonly string[];
  readonly useCase?: string;
}): Uint8Array | undefined {
  const { encPayload, encIv, secret } = input;
  if (encIv.length !== IV_BYTES || encPayload.length <= TAG_BYTES || encPayload.length > MAX_PAYLOAD_BYTES || secret.length === 0) return undefined;
  const body = encPayload.subarray(0, encPayload.length - TAG_BYTES);
  const tag = encPayload.subarray(encPayload.length - TAG_BYTES);
  for (const targetSender of new Set(input.targetSenders)) {
    for (const editor of new Set(input.editors)) {
      const decipher = createDecipheriv('aes-256-gcm', deriveKey(secret, input.targetId, targetSender, editor, input.useCase ?? MESSAGE_EDIT_USE_CASE), encIv);
      decipher.setAuthTag(tag);
      try {
        return Uint8Array.from(Buffer.concat([decipher.update(body), decipher.final()]));
      } catch {
        // wrong JID form (or tampered payload): try the next pair
      }
    }
  }
  return undefined;
}

/** The sender side of {@link openSecretMessage} (used by the offline test driver). */
export function sealSecretMessage(input: {
  readonly plaintext: Uint8Array;
  readonly secret: Uint8Array;
  readonly targetId: string;
  readonly targetSender: string;
  readonly editor: string;
  readonly useCase?: string;
}): { readonly encPayload: Uint8Array; readonly encIv: Uint8Array } {
  const encIv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', deriveKey(input.secret, input.targetId, input.targetSender, input.editor, input.useCase ?? MESSAGE_EDIT_USE_CASE), encIv);
  const encPayload = Buffer.concat([cipher.update(input.plaintext), cipher.final(), cipher.getAuthTag()]);
  return { encPayload: Uint8Array.from(encPayload), encIv: Uint8Array.from(encIv) };
}
