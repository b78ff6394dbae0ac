/**
 * One envelope, start to finish, in this order:
 *
 *   parse envelope → already processed? → decrypt (staged state) → strip padding → parse
 *   Content → download attachments → map → capture every record (durable) → commit state
 *   (with the envelope id in the processed list) → return; the caller acknowledges with 200.
 *
 * Anything that goes wrong with the envelope itself becomes a record (`undecryptable`,
 * `unsupported`) and the envelope is acknowledged. Only a failing archive makes `process`
 * reject: then nothing is committed and the envelope must not be acknowledged.
 */
import { createHash } from 'node:crypto';
import type { CaptureInput, CaptureResult, Logger } from '@offchannel/core';
import { ProtocolAddress, type PublicKey, SenderKeyDistributionMessage, processSenderKeyDistributionMessage } from '@signalapp/libsignal-client';
import { type AttachmentFetcher, fetchAttachments } from './attachments.ts';
import { type DecryptContext, UndecryptableError, decryptEnvelope } from './decrypt-envelope.ts';
import {
  type EnvelopeHeader,
  RAW_CONTENT_FORMAT,
  RAW_PADDED_PLAINTEXT_FORMAT,
  attachmentPointersOf,
  mapContentless,
  mapIdentityChange,
  mapSignalContent,
  mapUndecryptable,
  mapUnreadable,
} from './map-signal-content.ts';
import { stripPadding } from './proto/padding.ts';
import { type Content, type Envelope, EnvelopeType, decodeContent, decodeEnvelope } from './proto/signal-content.ts';
import type { StagedState } from './staged-state.ts';

/** Envelopes larger than this are not parsed; they are recorded as `undecryptable` with their bytes. */
export const MAX_ENVELOPE_BYTES = 2 * 1024 * 1024;
/** How many recently committed envelope ids are remembered (covers a crash between commit and acknowledgement). */
const PROCESSED_MEMORY = 256;
const PROCESSED = 'processed';

export type ProcessOutcome =
  | { readonly status: 'recorded'; readonly records: number; readonly duplicates: number; readonly sentAt?: string }
  | { readonly status: 'already-processed' };

export interface EnvelopeProcessorOptions {
  readonly state: StagedState;
  readonly decrypt: DecryptContext;
  readonly capture: (input: CaptureInput) => Promise<CaptureResult>;
  readonly logger: Logger;
  readonly fetcher: AttachmentFetcher;
  readonly cdnUrls: Readonly<Record<number, string>>;
  readonly maxAttachmentBytes: number;
  /** Identity changes reported by the identity store while decrypting the current envelope. */
  readonly identityChanges: { serviceId: string; key: PublicKey }[];
  readonly signal?: AbortSignal;
  /** Test seam (crash injection): called after decrypting, and after capturing before the commit. */
  readonly fault?: (point: 'after-decrypt' | 'after-capture', envelopeId: string) => void;
}

export class EnvelopeProcessor {
  readonly #o: EnvelopeProcessorOptions;
  #processed: string[] | undefined;

  constructor(options: EnvelopeProcessorOptions) {
    this.#o = options;
  }

  /** `deliveredAt`: the server's delivery timestamp from the websocket request (ms), if known. */
  async process(bytes: Uint8Array, deliveredAt?: number): Promise<ProcessOutcome> {
    const o = this.#o;
    await o.state.ensureCommitted();
    o.state.discard();
    o.identityChanges.length = 0;
    const processed = (this.#processed ??= (await o.state.getJson<string[]>(PROCESSED)) ?? []);
    const fallbackId = `sha256-${createHash('sha256').update(bytes).digest('hex')}`;

    if (bytes.length > MAX_ENVELOPE_BYTES) {
      return this.#finish([mapUndecryptable({ id: fallbackId }, bytes, 'envelope-too-large', `${bytes.length} bytes`)], fallbackId, false);
    }
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(bytes);
    } catch (error) {
      return this.#finish([mapUndecryptable({ id: fallbackId }, bytes, 'malformed-envelope', (error as Error).message)], fallbackId, false);
    }
    const header = headerOf(envelope, fallbackId);
    if (processed.includes(header.id)) return { status: 'already-processed' };
    if (envelope.type === EnvelopeType.ServerDeliveryReceipt) return this.#finish([mapContentless(header, bytes)], header.id, false);

    let decrypted;
    try {
      decrypted = await decryptEnvelope(envelope, o.decrypt, deliveredAt);
    } catch (error) {
      o.state.discard();
      const e = error instanceof UndecryptableError ? error : new UndecryptableError('decrypt-failed', 'unexpected error');
      o.logger.warn({ reason: e.reason, envelopeType: envelope.type, serverGuid: envelope.serverGuid }, 'envelope not decryptable; recording its bytes');
      return this.#finish([mapUndecryptable(header, bytes, e.reason, e.message)], header.id, false);
    }
    o.fault?.('after-decrypt', header.id);

    const identityRecords = o.identityChanges.map((c) => mapIdentityChange(envelope, c.serviceId, createHash('sha256').update(c.key.serialize()).digest('hex')));
    let contentBytes: Uint8Array;
    let content: Content;
    try {
      contentBytes = envelope.type === EnvelopeType.PlaintextContent || decrypted.plaintext.length === 0 ? stripOptional(decrypted.plaintext) : stripPadding(decrypted.plaintext);
      content = decodeContent(contentBytes);
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'UNEXPECTED';
      const input = mapUnreadable(header, decrypted.senderAci, decrypted.plaintext, RAW_PADDED_PLAINTEXT_FORMAT, code === 'SIGNAL_PADDING_INVALID' ? 'bad-padding' : 'malformed-content', (error as Error).message);
      return this.#finish([...identityRecords, input], header.id, true);
    }

    if (content.senderKeyDistributionMessage !== undefined) {
      try {
        const skdm = SenderKeyDistributionMessage.deserialize(Uint8Array.from(content.senderKeyDistributionMessage));
        await processSenderKeyDistributionMessage(ProtocolAddress.new(decrypted.senderAci, decrypted.senderDevice), skdm, o.decrypt.senderKeys);
      } catch {
        o.logger.warn({ serverGuid: envelope.serverGuid }, 'sender key distribution message rejected; later group messages from this sender may be undecryptable');
      }
    }

    const facts = {
      selfAci: o.decrypt.selfAci,
      senderAci: decrypted.senderAci,
      senderDevice: decrypted.senderDevice,
      sealedSender: decrypted.sealedSender,
      envelopeType: envelope.type,
      ...(envelope.serverGuid === undefined ? {} : { serverGuid: envelope.serverGuid }),
      ...(envelope.serverTimestamp === undefined ? {} : { serverTimestamp: envelope.serverTimestamp }),
      ...(envelope.clientTimestamp === undefined ? {} : { clientTimestamp: envelope.clientTimestamp }),
      ...(envelope.destinationServiceId === undefined ? {} : { destinationServiceId: envelope.destinationServiceId }),
    };
    let inputs: CaptureInput[];
    try {
      const attachments = await fetchAttachments(attachmentPointersOf(content), {
        fetcher: o.fetcher,
        cdnUrls: o.cdnUrls,
        maxBytes: o.maxAttachmentBytes,
        logger: o.logger,
        ...(o.signal === undefined ? {} : { signal: o.signal }),
      });
      inputs = mapSignalContent(facts, content, contentBytes, attachments);
    } catch (error) {
      if (o.signal?.aborted === true) throw error;
      o.logger.warn({ code: (error as { code?: string }).code, serverGuid: envelope.serverGuid }, 'content could not be mapped; recording it as unsupported');
      inputs = [mapUnreadable(header, decrypted.senderAci, contentBytes, RAW_CONTENT_FORMAT, 'mapping-failed', (error as Error).name)];
    }
    if (inputs.length === 0) o.logger.debug({ fields: content.fields.join(','), serverGuid: envelope.serverGuid }, 'content not archived by policy (typing, null or key-only message)');
    return this.#finish([...identityRecords, ...inputs], header.id, true);
  }

  /** Captures each input (durable), then commits state and the processed id together. */
  async #finish(inputs: readonly CaptureInput[], id: string, commitDecryption: boolean): Promise<ProcessOutcome> {
    const o = this.#o;
    let records = 0;
    let duplicates = 0;
    let sentAt: string | undefined;
    try {
      for (const input of inputs) {
        const result = await o.capture(input);
        if (result.status === 'duplicate') duplicates++;
        else records++;
        if (typeof input.sentAt === 'string') sentAt = input.sentAt;
      }
      o.fault?.('after-capture', id);
    } catch (error) {
      o.state.discard();
      throw error;
    }
    if (!commitDecryption) o.state.discard();
    const processed = [...(this.#processed ?? []), id].slice(-PROCESSED_MEMORY);
    o.state.setJson(PROCESSED, processed);
    await o.state.commit();
    this.#processed = processed;
    return { status: 'recorded', records, duplicates, ...(sentAt === undefined ? {} : { sentAt }) };
  }
}

function headerOf(envelope: Envelope, fallbackId: string): EnvelopeHeader {
  return {
    id: envelope.serverGuid ?? fallbackId,
    type: envelope.type,
    ...(envelope.sourceServiceId === undefined ? {} : { sourceServiceId: envelope.sourceServiceId }),
    ...(envelope.sourceDevice === undefined ? {} : { sourceDevice: envelope.sourceDevice }),
    ...(envelope.clientTimestamp === undefined ? {} : { clientTimestamp: envelope.clientTimestamp }),
    ...(envelope.serverTimestamp === undefined ? {} : { serverTimestamp: envelope.serverTimestamp }),
    ...(envelope.serverGuid === undefined ? {} : { serverGuid: envelope.serverGuid }),
  };
}

/** Retry requests (plaintext content) may or may not be padded. */
function stripOptional(plaintext: Uint8Array): Uint8Array {
  try {
    return stripPadding(plaintext);
  } catch {
    return plaintext;
  }
}
