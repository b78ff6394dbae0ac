import { OffchannelError } from '@offchannel/core';

/**
 * Delivery refused or failed. Codes:
 * - `DELIVERY_REFUSED` — the journaling server refused a message permanently (5xx). Delivery
 *   stopped at that record (named in the message) and resumes from it once the cause is fixed;
 *   nothing is skipped. The refusal is recorded in the target's receipts stream.
 * - `DELIVERY_UNAVAILABLE` — the server kept refusing temporarily (4xx) or could not be reached
 *   for every retry of a `--once` run; run again later (nothing is lost, the cursor did not move).
 * - `DELIVERY_TLS` — the server offers no STARTTLS, its certificate does not verify, or the TLS
 *   handshake failed. Fix the server or the trust anchors (`ca`); plaintext is only allowed to
 *   a loopback address with the explicit loopback exception.
 * - `DELIVERY_AUTH` — the server refused the credentials.
 * - `DELIVERY_OPTIONS` — a target setting is missing or invalid.
 * - `DELIVERY_STATE` — the state directory is unusable, held by another deliverer, or does not
 *   match the archive's receipts (e.g. a state directory from another archive).
 * - `DELIVERY_UNVERIFIED` — the archive did not verify, so nothing was sent.
 */
export class DeliveryError extends OffchannelError {
  declare readonly code: 'DELIVERY_REFUSED' | 'DELIVERY_UNAVAILABLE' | 'DELIVERY_TLS' | 'DELIVERY_AUTH' | 'DELIVERY_OPTIONS' | 'DELIVERY_STATE' | 'DELIVERY_UNVERIFIED';
  /** The server's reply (status line), when there was one. Never message content. */
  readonly reply: string | undefined;

  constructor(code: DeliveryError['code'], message: string, options?: { readonly cause?: unknown; readonly reply?: string; readonly retryable?: boolean }) {
    super(code, message, { ...(options?.cause === undefined ? {} : { cause: options.cause }), ...(options?.retryable ? { disposition: 'retryable' as const } : {}) });
    this.reply = options?.reply;
  }
}
