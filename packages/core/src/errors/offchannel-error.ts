const marker = Symbol.for('offchannel.error');

/**
 * What a caller should do about an error, decided by the error itself (never by a list of
 * codes somewhere else):
 * - `retryable` — the operation may succeed later unchanged (the archive is unreachable, the
 *   disk is full); nothing was acknowledged, so retrying is safe;
 * - `rejected-input` — this input can never succeed as given (invalid record, too large);
 *   retrying it is pointless — record it as evidence instead;
 * - `fatal` — the caller cannot continue (another writer owns the stream, the archive is
 *   corrupt or closed, a bug); stop and report.
 */
export type ErrorDisposition = 'retryable' | 'rejected-input' | 'fatal';

/**
 * Base class of every error offchannel throws on purpose.
 *
 * Each error carries a stable, machine-readable {@link OffchannelError.code} (switch on it,
 * never on the message) and a message that says what went wrong and what to do next.
 * Messages never contain message text, key material or other secrets: they name fields,
 * streams, sequence numbers and hashes only.
 *
 * `OffchannelError.isInstance(error)` works across duplicate copies of this package in one
 * process (it checks a `Symbol.for` marker rather than the prototype chain).
 */
export class OffchannelError extends Error {
  /** Stable error code, e.g. `SINK_CONFLICT`. Part of the public API. */
  readonly code: string;
  /** What to do about it; see {@link ErrorDisposition}. Default `fatal`. */
  readonly disposition: ErrorDisposition;
  /**
   * The message is built only from our own words, names, seqs, hashes and codes — never from
   * input or another library's message — so a redacting logger may log it. Default false:
   * such an error is logged by name and code only.
   */
  readonly logSafe: boolean;
  readonly [marker] = true;

  constructor(code: string, message: string, options?: { cause?: unknown; disposition?: ErrorDisposition; logSafe?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.disposition = options?.disposition ?? 'fatal';
    this.logSafe = options?.logSafe === true;
    this.name = new.target.name;
  }

  /** True for any offchannel error, from any copy of `@offchannel/core`. */
  static isInstance(value: unknown): value is OffchannelError {
    return typeof value === 'object' && value !== null && (value as { [marker]?: unknown })[marker] === true;
  }

  /** True when `value` is an offchannel error with the given code. */
  static hasCode(value: unknown, code: string): value is OffchannelError {
    return OffchannelError.isInstance(value) && value.code === code;
  }
}
