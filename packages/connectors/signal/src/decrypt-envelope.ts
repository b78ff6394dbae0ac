/**
 * Decrypts one envelope with libsignal: PreKey and Whisper (double ratchet) messages,
 * plaintext content (retry requests), and sealed sender, whose sender certificate is
 * validated against every configured trust root at the envelope's server timestamp (not the
 * wall clock, so a backlog delivered late still validates). All state changes go to the
 * staged stores; nothing here commits.
 */
import {
  CiphertextMessageType,
  ErrorCode,
  LibSignalErrorBase,
  PlaintextContent,
  PreKeySignalMessage,
  ProtocolAddress,
  type PublicKey,
  SignalMessage,
  groupDecrypt,
  sealedSenderDecryptToUsmc,
  signalDecrypt,
  signalDecryptPreKey,
} from '@signalapp/libsignal-client';
import { type Envelope, EnvelopeType } from './proto/signal-content.ts';
import type { ProtocolStores, StateSenderKeyStore } from './protocol-stores.ts';
import { SignalError } from './signal-error.ts';

/** Why an envelope could not be decrypted: `reason` is the record's `problem.reason`. */
export class UndecryptableError extends SignalError {
  readonly reason: string;

  constructor(reason: string, detail: string, options?: { cause?: unknown }) {
    super('SIGNAL_UNDECRYPTABLE', `${reason}: ${detail}`, options);
    this.reason = reason;
  }
}

export interface DecryptContext {
  readonly selfAci: string;
  readonly selfPni: string;
  readonly deviceId: number;
  readonly aci: ProtocolStores;
  readonly pni: ProtocolStores;
  readonly senderKeys: StateSenderKeyStore;
  readonly trustRoots: readonly PublicKey[];
}

export interface Decrypted {
  /** Padded plaintext (`Content || 0x80 || 0x00…`). */
  readonly plaintext: Uint8Array;
  readonly senderAci: string;
  readonly senderDevice: number;
  readonly sealedSender: boolean;
}

/**
 * Decrypts `envelope`; throws {@link UndecryptableError} with a reason code on any failure.
 * `deliveredAt` (the websocket's `x-signal-timestamp`, ms) is the certificate validation time
 * when the envelope carries no server timestamp; without either, the current time is used —
 * never zero, which would accept any certificate however long expired.
 */
export async function decryptEnvelope(envelope: Envelope, dc: DecryptContext, deliveredAt?: number): Promise<Decrypted> {
  const content = envelope.content;
  if (content === undefined || content.length === 0) throw new UndecryptableError('no-content', `envelope type ${envelope.type} has no content`);
  const toPni = envelope.destinationServiceId !== undefined && envelope.destinationServiceId.startsWith('PNI:');
  if (toPni && envelope.destinationServiceId !== dc.selfPni) throw new UndecryptableError('wrong-destination', 'addressed to another PNI');
  const stores = toPni ? dc.pni : dc.aci;
  const local = ProtocolAddress.new(toPni ? dc.selfPni : dc.selfAci, dc.deviceId);
  try {
    if (envelope.type === EnvelopeType.SealedSender) {
      if (toPni) throw new UndecryptableError('sealed-sender-to-pni', 'sealed sender is not valid for a PNI destination');
      const usmc = await sealedSenderDecryptToUsmc(Uint8Array.from(content), stores.identities);
      const cert = usmc.senderCertificate();
      const validationTime = envelope.serverTimestamp !== undefined && envelope.serverTimestamp > 0 ? envelope.serverTimestamp : deliveredAt !== undefined && deliveredAt > 0 ? deliveredAt : Date.now();
      if (!cert.validateWithTrustRoots([...dc.trustRoots], validationTime)) {
        throw new UndecryptableError('sealed-sender-certificate-invalid', 'sender certificate does not chain to a configured trust root or had expired at the server timestamp');
      }
      const senderAci = cert.senderAci()?.getServiceIdString() ?? cert.senderUuid();
      const senderDevice = cert.senderDeviceId();
      if (senderAci === dc.selfAci && senderDevice === dc.deviceId) throw new UndecryptableError('sealed-sender-self-send', 'sealed message from this device');
      const from = ProtocolAddress.new(senderAci, senderDevice);
      const inner = usmc.contents();
      let plaintext: Uint8Array;
      switch (usmc.msgType()) {
        case CiphertextMessageType.PreKey as number:
          plaintext = await signalDecryptPreKey(PreKeySignalMessage.deserialize(inner), from, local, stores.sessions, stores.identities, stores.preKeys, stores.signedPreKeys, stores.kyberPreKeys);
          break;
        case CiphertextMessageType.Whisper as number:
          plaintext = await signalDecrypt(SignalMessage.deserialize(inner), from, local, stores.sessions, stores.identities);
          break;
        case CiphertextMessageType.SenderKey as number:
          plaintext = await groupDecrypt(from, dc.senderKeys, inner);
          break;
        case CiphertextMessageType.Plaintext as number:
          plaintext = PlaintextContent.deserialize(inner).body();
          break;
        default:
          throw new UndecryptableError('unknown-message-type', `sealed inner type ${String(usmc.msgType())}`);
      }
      return { plaintext, senderAci, senderDevice, sealedSender: true };
    }

    const senderAci = envelope.sourceServiceId;
    const senderDevice = envelope.sourceDevice;
    if (senderAci === undefined || senderDevice === undefined || senderDevice < 1 || senderDevice > 127) {
      throw new UndecryptableError('no-source', `envelope type ${envelope.type} without a valid source`);
    }
    if (senderAci.startsWith('PNI:')) throw new UndecryptableError('source-is-pni', 'only server receipts may come from a PNI');
    const from = ProtocolAddress.new(senderAci, senderDevice);
    const bytes = Uint8Array.from(content);
    switch (envelope.type) {
      case EnvelopeType.PreKey:
        return {
          plaintext: await signalDecryptPreKey(PreKeySignalMessage.deserialize(bytes), from, local, stores.sessions, stores.identities, stores.preKeys, stores.signedPreKeys, stores.kyberPreKeys),
          senderAci,
          senderDevice,
          sealedSender: false,
        };
      case EnvelopeType.DoubleRatchet:
        return { plaintext: await signalDecrypt(SignalMessage.deserialize(bytes), from, local, stores.sessions, stores.identities), senderAci, senderDevice, sealedSender: false };
      case EnvelopeType.PlaintextContent:
        return { plaintext: PlaintextContent.deserialize(bytes).body(), senderAci, senderDevice, sealedSender: false };
      default:
        throw new UndecryptableError('unknown-envelope-type', `envelope type ${envelope.type}`);
    }
  } catch (error) {
    throw asUndecryptable(error);
  }
}

/** Maps libsignal and store errors to a reason code. Library messages name no plaintext. */
function asUndecryptable(error: unknown): UndecryptableError {
  if (error instanceof UndecryptableError) return error;
  if (error instanceof LibSignalErrorBase) {
    const reason =
      error.code === ErrorCode.DuplicatedMessage
        ? 'duplicate'
        : error.code === ErrorCode.InvalidSession
          ? 'no-session'
          : error.code === ErrorCode.UntrustedIdentity
            ? 'untrusted-identity'
            : error.code === ErrorCode.SealedSenderSelfSend
              ? 'sealed-sender-self-send'
              : error.code === ErrorCode.InvalidSenderKeySession
                ? 'no-sender-key'
                : 'decrypt-failed';
    return new UndecryptableError(reason, `libsignal ${ErrorCode[error.code]}: ${error.message}`, { cause: error });
  }
  if (SignalError.isInstance(error)) {
    const reason = error.code === 'SIGNAL_KEY_MISSING' ? 'missing-key' : error.code === 'SIGNAL_PREKEY_REUSED' ? 'prekey-reused' : 'decrypt-failed';
    return new UndecryptableError(reason, error.message, { cause: error });
  }
  return new UndecryptableError('decrypt-failed', error instanceof Error ? error.name : 'unknown error', { cause: error });
}
