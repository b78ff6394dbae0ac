const marker = Symbol.for('offchannel.error');

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
  /**
   * The message is built only from our own words, names, seqs, hashes and codes — never from
   * input or another library's message — so a redacting logger may log it. Default false:
   * such an error is logged by name and code only.
   */
  readonly logSafe: boolean;
  readonly [marker] = true;

  constructor(code: string, message: string, options?: { cause?: unknown; logSafe?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
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
