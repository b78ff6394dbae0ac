/**
 * The evidence format of a WhatsApp record's `raw` blob, and the frozen copy of a Baileys
 * message the connector takes at the earliest point (the emitter tap).
 *
 * Format `whatsapp.wmi-ext.v1` — every byte is explained here so an auditor can decode a blob
 * with a few lines of any language:
 *
 * ```
 * offset 0   4 bytes   ASCII "WAX1"
 * offset 4   4 bytes   N = length of the sidecar, unsigned big-endian
 * offset 8   N bytes   sidecar: UTF-8 JSON object (see RawSidecar), keys sorted
 * offset 8+N rest      the message's own protobuf bytes: proto.WebMessageInfo.encode(msg)
 *                      (WAProto as bundled in @whiskeysockets/baileys; `protoc --decode`
 *                      with WAProto.proto reads it)
 * ```
 *
 * One redaction: `message.senderKeyDistributionMessage` and
 * `message.fastRatchetKeySenderKeyDistributionMessage` (group sender-key material that rides
 * along with group messages) are removed before encoding, because a WORM archive must not hold
 * the keys that decrypt a group's traffic; the sidecar's `redacted` lists what was removed.
 *
 * The sidecar holds what the protobuf encoding drops: Baileys v7 adds `remoteJidAlt`,
 * `participantAlt`, `addressingMode`, usernames, `server_id` and `isViewOnce` to the message
 * key from stanza attributes, and they are not protobuf fields. It also says how the message
 * arrived (`origin`), when the connector saw it (`receivedAt`, ms) and, for encrypted edits, the decrypted inner `proto.Message` bytes
 * (base64) so the edit's text can be re-derived from the blob alone.
 */
import { proto, type WAMessage } from '@whiskeysockets/baileys';

/** Format name stored in `raw.format`. */
export const RAW_FORMAT = 'whatsapp.wmi-ext.v1';

const MAGIC = Buffer.from('WAX1', 'latin1');
/** Sidecars are small (a few JIDs); anything bigger is not one of ours. */
const MAX_SIDECAR_BYTES = 64 * 1024;

/** How a message reached the connector. */
export type EnvelopeOrigin =
  /** `messages.upsert` type `notify`: live delivery. */
  | 'notify'
  /** `messages.upsert` type `append`: offline replay, own sends, notification stubs. */
  | 'append'
  /** `messaging-history.set`: history sync from the phone. */
  | 'history';

/** Message-key fields that Baileys v7 keeps outside the protobuf. Strings only. */
export interface KeyExtras {
  readonly remoteJidAlt?: string;
  readonly participantAlt?: string;
  readonly addressingMode?: string;
  readonly remoteJidUsername?: string;
  readonly participantUsername?: string;
  readonly serverId?: string;
  readonly isViewOnce?: boolean;
}

/** A gap being reconciled: its record's key and its span (ISO times, as in the gap record). */
export interface RecoveryWindow {
  readonly gap: string;
  readonly from: string;
  readonly to: string;
}

/** The sidecar JSON (all members optional except `origin`). */
export interface RawSidecar {
  readonly origin: EnvelopeOrigin;
  readonly key?: KeyExtras;
  /** `requestId` of a placeholder resend, when Baileys gave one. */
  readonly requestId?: string;
  /** History sync type name (`INITIAL_BOOTSTRAP`, `RECENT`, `FULL`, `ON_DEMAND`…). */
  readonly historySyncType?: string;
  /** The gap reconciliation was asking the phone about when this ON_DEMAND message arrived. */
  readonly recovering?: RecoveryWindow;
  /** Base64 of the decrypted inner `proto.Message` of a `secretEncryptedMessage`. */
  readonly decrypted?: string;
  /** Fields removed before encoding (key material), e.g. `message.senderKeyDistributionMessage`. */
  readonly redacted?: readonly string[];
  /** When the connector saw the message, ms since epoch: its `sentAt` if the message states no time. */
  readonly receivedAt?: number;
}

/**
 * A message frozen at the tap: its protobuf bytes and alias fields, taken synchronously before
 * Baileys' event buffer can merge later updates into the live object.
 */
export interface CapturedEnvelope {
  /** `proto.WebMessageInfo.encode(msg)`. */
  readonly bytes: Uint8Array;
  readonly extras: KeyExtras;
  readonly origin: EnvelopeOrigin;
  readonly requestId?: string;
  readonly historySyncType?: string;
  readonly recovering?: RecoveryWindow;
  /** Connector clock when the tap saw it (ms since epoch); used only if the message has no timestamp. */
  readonly receivedAt: number;
  /** Key-material fields removed before encoding. */
  readonly redacted?: readonly string[];
}

/** Top-level Message fields that carry group sender keys; never archived. */
const KEY_MATERIAL = ['senderKeyDistributionMessage', 'fastRatchetKeySenderKeyDistributionMessage'] as const;

/**
 * Freezes a Baileys message. Synchronous on purpose: it runs inside the emitter tap, before
 * any other listener or the event buffer sees the object. Throws only if protobufjs cannot
 * encode the object (then the caller records it as `unsupported`).
 */
export function freezeMessage(
  message: WAMessage,
  origin: EnvelopeOrigin,
  extra: { readonly requestId?: string | undefined; readonly historySyncType?: string | undefined; readonly recovering?: RecoveryWindow | undefined; readonly receivedAt?: number } = {},
): CapturedEnvelope {
  const content = message.message as Record<string, unknown> | null | undefined;
  const redacted = content ? KEY_MATERIAL.filter((field) => content[field] !== null && content[field] !== undefined) : [];
  let toEncode: WAMessage = message;
  if (content && redacted.length > 0) {
    // A copy without the key material: the live object is Baileys' and must not change.
    const stripped = Object.fromEntries(Object.entries(content).filter(([field]) => !(KEY_MATERIAL as readonly string[]).includes(field)));
    toEncode = { ...message, message: stripped };
  }
  const bytes = proto.WebMessageInfo.encode(toEncode).finish();
  return {
    bytes: Uint8Array.from(bytes),
    extras: keyExtras(message.key),
    origin,
    ...(redacted.length > 0 ? { redacted: redacted.map((field) => `message.${field}`) } : {}),
    ...(extra.requestId ? { requestId: extra.requestId } : {}),
    ...(extra.historySyncType ? { historySyncType: extra.historySyncType } : {}),
    ...(extra.recovering ? { recovering: extra.recovering } : {}),
    receivedAt: extra.receivedAt ?? Date.now(),
  };
}

/** The v7 key fields the protobuf drops, copied as plain strings. */
export function keyExtras(key: WAMessage['key'] | null | undefined): KeyExtras {
  if (!key || typeof key !== 'object') return {};
  const k = key as Record<string, unknown>;
  const text = (name: string): string | undefined => {
    const value = k[name];
    return typeof value === 'string' && value.length > 0 && value.length <= 256 ? value : undefined;
  };
  const out: { -readonly [P in keyof KeyExtras]: KeyExtras[P] } = {};
  const remoteJidAlt = text('remoteJidAlt');
  const participantAlt = text('participantAlt');
  const addressingMode = text('addressingMode');
  const remoteJidUsername = text('remoteJidUsername');
  const participantUsername = text('participantUsername');
  const serverId = text('server_id');
  if (remoteJidAlt) out.remoteJidAlt = remoteJidAlt;
  if (participantAlt) out.participantAlt = participantAlt;
  if (addressingMode) out.addressingMode = addressingMode;
  if (remoteJidUsername) out.remoteJidUsername = remoteJidUsername;
  if (participantUsername) out.participantUsername = participantUsername;
  if (serverId) out.serverId = serverId;
  if (k['isViewOnce'] === true) out.isViewOnce = true;
  return out;
}

/** Builds the `whatsapp.wmi-ext.v1` blob for an envelope (plus the decrypted payload of an encrypted edit). */
export function encodeRawEvidence(envelope: CapturedEnvelope, decrypted?: Uint8Array): Uint8Array {
  const sidecar: RawSidecar = {
    origin: envelope.origin,
    ...(Object.keys(envelope.extras).length > 0 ? { key: envelope.extras } : {}),
    ...(envelope.requestId ? { requestId: envelope.requestId } : {}),
    ...(envelope.historySyncType ? { historySyncType: envelope.historySyncType } : {}),
    ...(envelope.recovering ? { recovering: envelope.recovering } : {}),
    ...(decrypted ? { decrypted: Buffer.from(decrypted).toString('base64') } : {}),
    ...(envelope.redacted && envelope.redacted.length > 0 ? { redacted: envelope.redacted } : {}),
    receivedAt: envelope.receivedAt,
  };
  const json = Buffer.from(JSON.stringify(sortKeys(sidecar)), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length);
  return Uint8Array.from(Buffer.concat([MAGIC, length, json, envelope.bytes]));
}

/** Splits a `whatsapp.wmi-ext.v1` blob. Throws `TypeError` on anything else. */
export function decodeRawEvidence(blob: Uint8Array): { readonly sidecar: RawSidecar; readonly webMessageInfo: Uint8Array } {
  const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (bytes.length < 8 || !bytes.subarray(0, 4).equals(MAGIC)) throw new TypeError(`not a ${RAW_FORMAT} blob`);
  const length = bytes.readUInt32BE(4);
  if (length > MAX_SIDECAR_BYTES || 8 + length > bytes.length) throw new TypeError(`${RAW_FORMAT}: sidecar length out of range`);
  let sidecar: RawSidecar;
  try {
    sidecar = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as RawSidecar;
  } catch {
    throw new TypeError(`${RAW_FORMAT}: sidecar is not JSON`);
  }
  if (typeof sidecar !== 'object' || sidecar === null || typeof sidecar.origin !== 'string') throw new TypeError(`${RAW_FORMAT}: bad sidecar`);
  return { sidecar, webMessageInfo: Uint8Array.from(bytes.subarray(8 + length)) };
}

/**
 * The envelope a `whatsapp.wmi-ext.v1` blob was made from (what the mapping read), and the
 * decrypted inner message of an encrypted edit when the blob carries one. Throws `TypeError`
 * on anything else. `encodeRawEvidence(decodeEnvelope(blob).envelope, decrypted)` is `blob`.
 */
export function decodeEnvelope(blob: Uint8Array): { readonly envelope: CapturedEnvelope; readonly decrypted?: Uint8Array } {
  const { sidecar, webMessageInfo } = decodeRawEvidence(blob);
  const envelope: CapturedEnvelope = {
    bytes: webMessageInfo,
    extras: sidecar.key ?? {},
    origin: sidecar.origin,
    ...(sidecar.requestId ? { requestId: sidecar.requestId } : {}),
    ...(sidecar.historySyncType ? { historySyncType: sidecar.historySyncType } : {}),
    ...(isRecoveryWindow(sidecar.recovering) ? { recovering: sidecar.recovering } : {}),
    ...(sidecar.redacted && sidecar.redacted.length > 0 ? { redacted: sidecar.redacted } : {}),
    receivedAt: typeof sidecar.receivedAt === 'number' ? sidecar.receivedAt : 0,
  };
  return { envelope, ...(sidecar.decrypted ? { decrypted: Uint8Array.from(Buffer.from(sidecar.decrypted, 'base64')) } : {}) };
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}

function isRecoveryWindow(value: unknown): value is RecoveryWindow {
  const w = value as Partial<RecoveryWindow> | null | undefined;
  return typeof w === 'object' && w !== null && typeof w.gap === 'string' && typeof w.from === 'string' && typeof w.to === 'string';
}
