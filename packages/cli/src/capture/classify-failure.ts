/**
 * Why an account stopped capturing, and whether trying again can help: the one place the
 * capture command decides, by error code, between restarting with backoff and parking the
 * account until an operator acts (relink, fix the config, stop the other process).
 * The connector runtime in `@offchannel/core` will own this table once connectors declare
 * retryability themselves; until then it lives here.
 */
import { OffchannelError } from '@offchannel/core';

/** Where one account of a capture process stands. */
export type AccountState =
  /** Claiming the stream and starting the connector. */
  | 'starting'
  /** The connector runs; its own status (connected, reconnecting…) is in `connector`. */
  | 'running'
  /** The last start or run failed; another attempt is scheduled after a backoff. */
  | 'restarting'
  /** Parked: the account has no linked session on this host (`offchannel link`, then SIGHUP). */
  | 'not-linked'
  /** Parked: the platform ended the session (device removed, banned): relink, then SIGHUP. */
  | 'logged-out'
  /** Parked: another process holds the stream's writer lock (check `--shard`). Nothing written. */
  | 'claimed-elsewhere'
  /** Parked: the entry cannot run as configured (package missing, bad setting, damaged state). */
  | 'failed'
  /** Stopped on shutdown or removed from the config. */
  | 'stopped';

/** States an account stays in until the operator acts (then SIGHUP tries it again). */
export const PARKED_STATES: ReadonlySet<AccountState> = new Set(['not-linked', 'logged-out', 'claimed-elsewhere', 'failed']);

export interface FailureVerdict {
  /** `restarting` (retry with backoff) or a parked state. */
  readonly state: AccountState;
  /** The error's code (`UNKNOWN` for an error without one). Never a message: messages may name accounts. */
  readonly code: string;
}

/** No linked session: retrying cannot help until someone links the account. */
const NOT_LINKED = new Set(['WHATSAPP_NOT_LINKED', 'SIGNAL_NOT_LINKED', 'TELEGRAM_NOT_LINKED']);

/** Another writer holds the stream (or the session): retrying would fight it. */
const CLAIMED = new Set(['SINK_CONFLICT', 'TELEGRAM_SESSION_IN_USE']);

/** The entry, its session state or its stream needs an operator: retrying cannot help. */
const BROKEN = new Set([
  'CONFIG_INVALID',
  'SIGNAL_CONFIG_INVALID',
  'STATE_CORRUPT',
  'STATE_KEY_WRONG',
  'STATE_MODE_MISMATCH',
  'STATE_INSECURE',
  'SIGNAL_STATE_CORRUPT',
  'ARCHIVE_CORRUPT',
  // The spool's pruned prefix and the archive of record differ (forward/pruned-read-through.ts).
  'PRUNED_SEAM_MISMATCH',
  'CHAT_DB_UNSUPPORTED',
  'INVALID_STREAM_NAME',
  'SINK_READ_ONLY',
  'SINK_UNSUITABLE',
]);

/** Classifies an error thrown while claiming, creating or starting an account's connector. */
export function classifyFailure(error: unknown): FailureVerdict {
  const code = OffchannelError.isInstance(error) ? error.code : 'UNKNOWN';
  if (NOT_LINKED.has(code)) return { state: 'not-linked', code };
  if (CLAIMED.has(code)) return { state: 'claimed-elsewhere', code };
  if (BROKEN.has(code)) return { state: 'failed', code };
  return { state: 'restarting', code };
}

/**
 * What a running connector's own status means for its supervisor: `logged-out` parks the
 * account; `failed`, or a stop nobody asked for, restarts it with backoff.
 */
export function classifyConnectorState(state: string): FailureVerdict | undefined {
  if (state === 'logged-out') return { state: 'logged-out', code: 'CONNECTOR_LOGGED_OUT' };
  if (state === 'failed') return { state: 'restarting', code: 'CONNECTOR_FAILED' };
  if (state === 'stopped') return { state: 'restarting', code: 'CONNECTOR_STOPPED' };
  return undefined;
}
