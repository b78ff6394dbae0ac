import { type ErrorDisposition, OffchannelError } from '../errors/offchannel-error.ts';

/**
 * Every code a connector built on the runtime throws or reports, one meaning each:
 * - `CONNECTOR_ALREADY_STARTED` — `start()` was called twice; create a new connector to start again;
 * - `CONNECTOR_NOT_LINKED` — no session in the state store: run `offchannel link <channel>`;
 * - `CONNECTOR_CONFIG_INVALID` — a programmatic option is invalid (config files get `ConfigError`);
 * - `CONNECTOR_LOGGED_OUT` — the platform ended the session (logged out, banned, replaced): relink;
 * - `CONNECTOR_STOPPED` — the work was abandoned because the connector stopped; nothing was
 *   acknowledged, the platform redelivers it (or reconciliation finds it) on the next start;
 * - `CONNECTOR_SOURCE_FAILED` — the event source could not open, deliver or acknowledge;
 * - `CONNECTOR_ARCHIVE_FAILED` — the archive refused in a way retrying cannot fix (another writer
 *   owns the stream, the archive is closed or corrupt): capture stopped, nothing acknowledged.
 *
 * A connector MAY define its own codes for platform specifics (`SIGNAL_STATE_CORRUPT`), but uses
 * these for everything the runtime owns.
 */
export type ConnectorErrorCode =
  | 'CONNECTOR_ALREADY_STARTED'
  | 'CONNECTOR_NOT_LINKED'
  | 'CONNECTOR_CONFIG_INVALID'
  | 'CONNECTOR_LOGGED_OUT'
  | 'CONNECTOR_STOPPED'
  | 'CONNECTOR_SOURCE_FAILED'
  | 'CONNECTOR_ARCHIVE_FAILED';

const DISPOSITION: { readonly [code in ConnectorErrorCode]: ErrorDisposition } = {
  CONNECTOR_ALREADY_STARTED: 'fatal',
  CONNECTOR_NOT_LINKED: 'fatal',
  CONNECTOR_CONFIG_INVALID: 'fatal',
  CONNECTOR_LOGGED_OUT: 'fatal',
  CONNECTOR_STOPPED: 'fatal',
  CONNECTOR_SOURCE_FAILED: 'retryable',
  CONNECTOR_ARCHIVE_FAILED: 'fatal',
};

/** An error of the connector runtime. Its disposition follows from its code. */
export class ConnectorError extends OffchannelError {
  declare readonly code: ConnectorErrorCode;

  constructor(code: ConnectorErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, { ...options, disposition: DISPOSITION[code] });
  }
}

/**
 * True when retrying the same operation later may succeed and is safe. An offchannel error says
 * so itself ({@link OffchannelError.disposition}); any other error (an `EIO`, `ENOSPC` or socket
 * error from below the sink) is treated as the archive being unavailable: retryable, because
 * nothing it failed was acknowledged.
 */
export function isRetryable(error: unknown): boolean {
  return dispositionOf(error) === 'retryable';
}

/** True when the input itself is at fault and can never be recorded as given. */
export function isRejectedInput(error: unknown): boolean {
  return dispositionOf(error) === 'rejected-input';
}

/** The disposition of any thrown value (see {@link isRetryable}). */
export function dispositionOf(error: unknown): ErrorDisposition {
  if (!OffchannelError.isInstance(error)) return 'retryable';
  // An error from an older copy of core has no disposition: it was fatal unless retryable by kind.
  const disposition = (error as { disposition?: unknown }).disposition;
  return disposition === 'retryable' || disposition === 'rejected-input' ? disposition : 'fatal';
}
