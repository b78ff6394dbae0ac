/**
 * Envelopes, in batches. For each envelope, in order ({@link EnvelopeProcessor.prepare}):
 *
 *   parse envelope → already processed? → decrypt (staged state) → strip padding → parse
 *   Content → download attachments → map → the capture inputs.
 *
 * Then, for the whole batch: the connector runtime captures every input (one group commit),
 * and once all are durable {@link EnvelopeProcessor.commit} commits the staged state once
 * (with the batch's envelope ids in the processed list); only then does the connector
 * acknowledge the batch with 200s. If the batch is not durable, {@link EnvelopeProcessor.discard}
 * forgets its staged state: the envelopes are redelivered and decrypt again.
 *
 * Anything that goes wrong with an envelope itself becomes a record (`undecryptable`,
 * `unsupported`) and the envelope is acknowledged; its staged writes, if any, are rolled back
 * without touching the rest of the batch.
 */
import { createHash } from 'node:crypto';
import type { CaptureInput, CaptureResult, Logger } from '@offchannel/core';
import { ProtocolAddress, type PublicKey, SenderKeyDistributionMessage, processSenderKeyDistributionMessage } from '@signalapp/libsignal-client';
import { type AttachmentFetcher, fetchAttachments } from './attachments.ts';
import { type DecryptContext, UndecryptableError, decryptEnvelope } from './decrypt-envelope.ts';
import {
  envelopeHeader,
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
/** Most envelopes in one batch (one state commit). */
export const MAX_BATCH_ENVELOPES = 256;
/** How many recently committed envelope ids are remembered (covers a crash between commit and acknowledgement of a batch). */
const PROCESSED_MEMORY = 4 * MAX_BATCH_ENVELOPES;
const PROCESSED = 'processed';

/** One envelope made ready: what to capture before its batch commits. */
export type Prepared =
  | { readonly status: 'prepared'; readonly id: string; readonly inputs: readonly CaptureInput[] }
  | { readonly status: 'already-processed'; readonly id: string };

export type ProcessOutcome =
  | { readonly status: 'recorded'; readonly records: number; readonly duplicates: number; readonly sentAt?: string }
  | { readonly status: 'already-processed' };

export interface EnvelopeProcessorOptions {
  readonly state: StagedState;
  readonly decrypt: DecryptContext;
  /** Used by {@link EnvelopeProcessor.process} only; the connector captures through its runtime. */
  readonly capture: (input: CaptureInput) => Promise<CaptureResult>;
  readonly logger: Logger;
  readonly fetcher: AttachmentFetcher;
  readonly cdnUrls: Readonly<Record<number, string>>;
  readonly maxAttachmentBytes: number;
  /** Identity changes reported by the identity store while decrypting the current envelope. */
  readonly identityChanges: { serviceId: string; key: PublicKey }[];
  readonly signal?: AbortSignal;
  /** Test seam (crash injection): called after decrypting, and after capturing before the commit (by the caller of {@link EnvelopeProcessor.commit}). */
  readonly fault?: (point: 'after-decrypt' | 'after-capture', envelopeId: string) => void;
}

export class EnvelopeProcessor {
  readonly #o: EnvelopeProcessorOptions;
  #processed: string[] | undefined;
  /** Ids of the envelopes prepared since the last commit or discard: the open batch. */
  #batch: string[] | undefined;

  constructor(options: EnvelopeProcessorOptions) {
    this.#o = options;
  }

  /** Envelopes in the open batch. */
  get batchSize(): number {
    return this.#batch?.length ?? 0;
  }

  /**
   * Decrypts and maps one envelope into the open batch (its state stays staged). Throws only
   * when the caller must stop (state store failure, abort, injected crash); then the
   * envelope's own staged writes are already rolled back.
   * `deliveredAt`: the server's delivery timestamp from the websocket request (ms), if known.
   */
  async prepare(bytes: Uint8Array, deliveredAt?: number): Promise<Prepared> {
    const o = this.#o;
    if (this.#batch === undefined) {
      await o.state.ensureCommitted();
      o.state.discard();
      this.#batch = [];
    }
    const batch = this.#batch;
    o.state.begin();
    try {
      const prepared = await this.#prepare(bytes, batch, deliveredAt);
      if (prepared.status === 'prepared') batch.push(prepared.id);
      return prepared;
    } catch (error) {
      o.state.rollback();
      throw error;
    }
  }

  /** Commits the open batch's staged state and envelope ids, all or nothing. Call once its records are durable. */
  async commit(): Promise<void> {
    const o = this.#o;
    const batch = this.#batch ?? [];
    this.#batch = undefined;
    const processed = [...(this.#processed ?? []), ...batch].slice(-PROCESSED_MEMORY);
    if (batch.length > 0) o.state.setJson(PROCESSED, processed);
    try {
      await o.state.commit();
    } catch (error) {
      o.state.discard();
      throw error;
    }
    this.#processed = processed;
  }

  /** Forgets the open batch: its envelopes were not acknowledged and will be redelivered. */
  discard(): void {
    this.#batch = undefined;
    this.#o.state.discard();
  }

  /** One envelope on its own: prepare, capture each input (durable), commit. Tests and tools. */
  async process(bytes: Uint8Array, deliveredAt?: number): Promise<ProcessOutcome> {
    const o = this.#o;
    const prepared = await this.prepare(bytes, deliveredAt);
    if (prepared.status === 'already-processed') {
      this.discard();
      return { status: 'already-processed' };
    }
    let records = 0;
    let duplicates = 0;
    let sentAt: string | undefined;
    try {
      for (const input of prepared.inputs) {
        const result = await o.capture(input);
        if (result.status === 'duplicate') duplicates++;
        else records++;
        if (typeof input.sentAt === 'string') sentAt = input.sentAt;
      }
      o.fault?.('after-capture', prepared.id);
    } catch (error) {
      this.discard();
      throw error;
    }
    await this.commit();
    return { status: 'recorded', records, duplicates, ...(sentAt === undefined ? {} : { sentAt }) };
  }

  async #prepare(bytes: Uint8Array, batch: readonly string[], deliveredAt?: number): Promise<Prepared> {
    const o = this.#o;
    o.identityChanges.length = 0;
    const processed = (this.#processed ??= (await o.state.getJson<string[]>(PROCESSED)) ?? []);
    const fallbackId = `sha256-${createHash('sha256').update(bytes).digest('hex')}`;
    const done = (inputs: readonly CaptureInput[], id: string, keepDecryption: boolean): Prepared => {
      if (!keepDecryption) o.state.rollback();
      return { status: 'prepared', id, inputs };
    };

    if (bytes.length > MAX_ENVELOPE_BYTES) {
      return done([mapUndecryptable({ id: fallbackId }, bytes, 'envelope-too-large', `${bytes.length} bytes`)], fallbackId, false);
    }
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(bytes);
    } catch (error) {
      return done([mapUndecryptable({ id: fallbackId }, bytes, 'malformed-envelope', (error as Error).message)], fallbackId, false);
    }
    const header = envelopeHeader(envelope, fallbackId);
    if (processed.includes(header.id) || batch.includes(header.id)) return { status: 'already-processed', id: header.id };
    if (envelope.type === EnvelopeType.ServerDeliveryReceipt) return done([mapContentless(header, bytes)], header.id, false);

    let decrypted;
    try {
      decrypted = await decryptEnvelope(envelope, o.decrypt, deliveredAt);
    } catch (error) {
      const e = error instanceof UndecryptableError ? error : new UndecryptableError('decrypt-failed', 'unexpected error');
      o.logger.warn({ reason: e.reason, envelopeType: envelope.type, serverGuid: envelope.serverGuid }, 'envelope not decryptable; recording its bytes');
      return done([mapUndecryptable(header, bytes, e.reason, e.message)], header.id, false);
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
      return done([...identityRecords, input], header.id, true);
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
    return done([...identityRecords, ...inputs], header.id, true);
  }
}

/** Retry requests (plaintext content) may or may not be padded. */
function stripOptional(plaintext: Uint8Array): Uint8Array {
  try {
    return stripPadding(plaintext);
  } catch {
    return plaintext;
  }
}
