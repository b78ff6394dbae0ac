/**
 * Adapts core's redacting logger to Baileys' pino-shaped `ILogger`, passing on only what is on
 * an allowlist.
 *
 * Baileys logs whole protocol nodes and messages at debug/trace level, objects holding message
 * content at higher levels, and many of its message strings interpolate JIDs, phone numbers,
 * LIDs, key ids or server values (`Invalid LID-PN mapping: ${lid}, ${pn}`). None of that may
 * reach our logs. So:
 * - trace/debug are dropped entirely;
 * - for info/warn/error, the message string is forwarded only when it is one of
 *   {@link SAFE_MESSAGES} (fixed strings from Baileys' source that carry no value) or matches
 *   one of {@link SAFE_PATTERNS} (whose only variable parts are numbers or app-state collection
 *   names); anything else becomes `baileys log line withheld (not on the allowlist)`;
 * - of Baileys' structured fields only an error's `name` and `code` (when they look like an
 *   identifier: letters, digits, `_`, at most 40) and a numeric HTTP-style `statusCode` pass.
 *   Never an error message, a node, a key or a JID.
 */
import type { Logger } from '@offchannel/core';
import type { ILogger } from '@whiskeysockets/baileys/lib/Utils/logger.js';

/** Baileys 7 info/warn/error message strings that carry no value (copied as written). */
export const SAFE_MESSAGES: ReadonlySet<string> = new Set([
  'connected to WA',
  'opened connection to WA',
  'connection closed',
  'logging in...',
  'not logged in, attempting registration...',
  'pairing configured successfully, expect to restart the connection...',
  'error in pairing',
  'error in validating connection',
  'stream errored out',
  'error in socket end handler',
  'error in sending keep alive',
  'keep alive called when WS not open',
  'failed to decrypt message',
  'error in handling message',
  'error in handling call',
  'failed to process sender key distribution message',
  'identity changed',
  'self primary identity changed',
  'identity key changed or new contact, session will be re-established',
  'MAC error detected, forcing immediate session recreation',
  'uploading pre-keys',
  'uploaded pre-keys successfully',
  'Failed to upload pre-keys to server',
  'Failed to check/upload pre-keys during initialization',
  'sent retry receipt',
  'Failed to send retry',
  'will not send message again, as sent too many times',
  'could not send message again, as it was not found',
  'error in sending message again',
  'received error in ack',
  'Doing app state sync',
  'injecting new app state sync keys',
  'App state sync key arrived, triggering app state sync',
  'app state sync key arrived, re-syncing blocked collections',
  'failed to decode patch, skipping',
  'LTHash verification failed, skipping remaining patches',
  'LTHash verification failed on snapshot, continuing with partial state',
  'transaction failed, rolling back',
  'Connection is now AwaitingInitialSync, buffering events',
  'First connection, awaiting history sync notification with a 20s timeout.',
  'History sync is disabled by config, not waiting for notification. Transitioning to Online.',
  'History sync skipped, transitioning to Online state and flushing buffer',
  'Reconnection with existing sync data, skipping history sync wait. Transitioning to Online.',
  'Timeout in AwaitingInitialSync, forcing state to Online and flushing buffer',
  'App state sync complete, transitioning to Online state and flushing buffer',
  'Transitioned to Syncing state',
  'Buffer timeout reached, auto-flushing',
  'failed to run digest after login',
  'devices added',
  'devices removed',
  'failed to handle devices notification',
  'error 463: account restricted or missing tctoken for contact',
  'smax-invalid (479): stanza rejected by server — likely stale device session or malformed addressing',
]);

const COLLECTION = '(?:critical_block|critical_unblock_low|regular_high|regular_low|regular)';
/** Baileys 7 message templates whose variable parts are numbers or app-state collection names. */
export const SAFE_PATTERNS: readonly RegExp[] = [
  /^handled \d{1,9} offline messages\/notifications$/,
  /^\d{1,9} pre-keys found on server$/,
  /^Retrying pre-key upload in \d{1,9}ms$/,
  /^failed to commit mutations, retries left=\d{1,9}$/,
  new RegExp(`^synced ${COLLECTION} to v\\d{1,12}$`),
  new RegExp(`^resyncing ${COLLECTION} from v\\d{1,12}( \\(forcing snapshot\\))?$`),
  new RegExp(`^failed to sync ${COLLECTION} from v\\d{1,12}, (giving up|forcing snapshot retry)$`),
];

const WITHHELD = 'baileys log line withheld (not on the allowlist)';
const IDENTIFIER = /^[A-Za-z][A-Za-z0-9_]{0,39}$/;

/** The message as we may log it: itself when allowlisted, else a fixed placeholder. */
export function allowlistedMessage(message: string): string {
  return SAFE_MESSAGES.has(message) || SAFE_PATTERNS.some((pattern) => pattern.test(message)) ? message : WITHHELD;
}

export function baileysLogger(logger: Logger): ILogger {
  const forward = (level: 'info' | 'warn' | 'error') => (obj: unknown, msg?: string) => {
    const text = typeof obj === 'string' ? obj : typeof msg === 'string' ? msg : undefined;
    const err = typeof obj === 'object' && obj !== null ? (obj as { err?: unknown; error?: unknown }).err ?? (obj as { error?: unknown }).error : undefined;
    const fields: Record<string, string | number> = { component: 'baileys' };
    if (err && typeof err === 'object') {
      const e = err as { name?: unknown; code?: unknown; output?: { statusCode?: unknown } };
      if (typeof e.name === 'string' && IDENTIFIER.test(e.name)) fields['error'] = e.name;
      if ((typeof e.code === 'string' && IDENTIFIER.test(e.code)) || (typeof e.code === 'number' && Number.isSafeInteger(e.code))) fields['code'] = e.code;
      const status = e.output?.statusCode;
      if (typeof status === 'number' && Number.isSafeInteger(status) && status >= 100 && status <= 999) fields['status'] = status;
    }
    logger[level](fields, text === undefined ? 'baileys event' : allowlistedMessage(text));
  };
  const adapter: ILogger = {
    level: 'info',
    child: () => adapter,
    trace: () => undefined,
    debug: () => undefined,
    info: forward('info'),
    warn: forward('warn'),
    error: forward('error'),
  };
  return adapter;
}
