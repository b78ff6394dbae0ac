import { OffchannelError } from '../errors/offchannel-error.ts';
import { type LogBindings, type LogFn, type Logger, noopLogger } from './logger.ts';

/**
 * The only field names whose values are logged, at any depth: stream names, seqs, hashes,
 * sizes and counts, codes and states, durations and times, opaque protocol ids (an iMessage
 * guid, a Signal server GUID — never a phone number, JID, user id or name). Every other field
 * becomes `[redacted]`, so a field added tomorrow (`subject`, `fileName`, `pushName`, `url`,
 * `vcard`…) is redacted until someone decides it is safe. Fixed in code on purpose: redaction
 * rules never come from configuration or input.
 */
export const SAFE_LOG_FIELDS: ReadonlySet<string> = new Set([
  // where in the archive
  'archive', 'blob', 'bucket', 'component', 'field', 'fields', 'firstSeq', 'format', 'hash', 'head', 'lastSeq', 'note', 'objects',
  'offset', 'root', 'segment', 'seq', 'size', 'stream', 'streams', 'versionId', 'versions',
  // what happened
  'code', 'connectors', 'forwarded', 'kind', 'method', 'on', 'policy', 'reason', 'state', 'status', 'step', 'update',
  // capture supervision and delivery (stream names, states, codes, counts; never an address)
  'accounts', 'added', 'attempt', 'backlog', 'connector', 'delivered', 'deliveries', 'event', 'inDoubt', 'noEmail', 'notDue',
  'deliveryTarget', 'host', 'problem', 'removed', 'restarted', 'retried', 'run', 'sent', 'settings', 'shard', 'unchanged',
  // where an operator-configured listener is bound (an IP literal and port, never a client's address)
  'listen',
  // independent witnesses: the witness key's name (a host name the operator configured)
  'witness',
  // how many, how long
  'bytes', 'captured', 'count', 'cursor', 'duplicates', 'errors', 'excluded', 'excluding', 'indexed', 'offlineDays',
  'pending', 'pqCount', 'recorded', 'records', 'seconds', 'skipped', 'watch',
  // opaque protocol identifiers (not people, not conversations)
  'cdn', 'connection', 'deviceId', 'encrypted', 'envelopeType', 'guid', 'identity', 'keyId', 'provisioningVersion', 'remote', 'rowid',
  'serverGuid',
  // errors (reduced to name and code, see below)
  'cause', 'err', 'error',
]);

/**
 * Also safe, when the value is a number or an ISO 8601 time: names ending in one of these
 * (`retryInMs`, `lastEventAt`, `fromSeq`, `blobCount`). Case-sensitive, so `chat` is not `…At`.
 * Not `…Hash` or `…Code`: Telegram's `phoneCodeHash` and a `loginCode` are secrets.
 */
const SAFE_SUFFIX = /(?:Seq|Count|Ms|At)$/;
/** Safe fields that are counts: a string or list under them (base64 bytes?) is redacted. */
const NUMBER_ONLY = /^(?:bytes|size|count|offset|records|seconds)$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})$/;
const ERROR_FIELDS = new Set(['cause', 'err', 'error']);
/** A string an error field may hold as is: an error name or code, not a sentence. */
const ERROR_NAME = /^[A-Za-z_][\w.:-]{0,63}$/;
const MAX_DEPTH = 6;

/** True when values of the field `key` may be logged. */
export function isSafeLogField(key: string): boolean {
  return SAFE_LOG_FIELDS.has(key) || SAFE_SUFFIX.test(key);
}

/**
 * Returns a copy of `value` that is safe to log: only {@link SAFE_LOG_FIELDS} keep their values,
 * byte arrays become `[N bytes]`, long strings are cut, deep nesting is cut. An `Error` keeps
 * only its name and code — its message too only when it is an offchannel error marked
 * `logSafe` (its message was written by us from ids, seqs and codes, never from input).
 */
export function redactForLog(value: unknown, depth = 0): unknown {
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.length > 512 ? `${value.slice(0, 512)}…[${value.length} chars]` : value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return `[${typeof value}]`;
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (value instanceof Error) return redactError(value);
  if (depth >= MAX_DEPTH) return '[nested]';
  if (Array.isArray(value)) return value.slice(0, 50).map((item: unknown) => redactForLog(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (!isSafeLogField(key)) out[key] = '[redacted]';
    else if (!SAFE_LOG_FIELDS.has(key) && !isNumberOrTime(item)) out[key] = '[redacted]';
    else if (NUMBER_ONLY.test(key) && typeof item !== 'number' && typeof item !== 'bigint' && !(item instanceof Uint8Array)) out[key] = '[redacted]';
    else if (ERROR_FIELDS.has(key) && typeof item === 'string') out[key] = ERROR_NAME.test(item) ? item : '[redacted]';
    else out[key] = redactForLog(item, depth + 1);
  }
  return out;
}

function isNumberOrTime(value: unknown): boolean {
  return typeof value === 'number' || typeof value === 'bigint' || value === null || (typeof value === 'string' && ISO_TIME.test(value));
}

function redactError(error: Error): Record<string, string> {
  const code = (error as { code?: unknown }).code;
  const name = ERROR_NAME.test(error.name) ? error.name : 'Error';
  const safe = OffchannelError.isInstance(error) && error.logSafe;
  return { name, ...(typeof code === 'string' && ERROR_NAME.test(code) ? { code } : {}), ...(safe ? { message: error.message } : {}) };
}

/** A logger that can say whether it writes a level (pino's `isLevelEnabled`). */
type LevelAware = Logger & { isLevelEnabled?: (level: string) => boolean };

/**
 * Wraps `inner` so every structured field passes through {@link redactForLog} first.
 * The recorder, state store and connectors log only through a redacting logger. A line the
 * inner logger would drop costs nothing: the {@link noopLogger} is returned as it is, and a
 * line below a pino logger's level (its `isLevelEnabled`, asked per line) is neither redacted
 * nor passed on. The wrapper answers `isLevelEnabled` for its inner logger, so a redacting
 * logger wrapped again (the CLI's logger inside the recorder's) skips dropped lines too. The
 * inner logger's method is looked up per line: pino replaces them when its level changes.
 */
export function redactingLogger(inner: Logger): Logger {
  if (inner === noopLogger) return noopLogger;
  const aware = inner as LevelAware;
  const levelAware = typeof aware.isLevelEnabled === 'function';
  const wrap =
    (level: 'error' | 'warn' | 'info' | 'debug'): LogFn =>
    (first: object | string, message?: string) => {
      if (levelAware && aware.isLevelEnabled?.(level) === false) return;
      if (typeof first === 'string') inner[level](first);
      else if (message === undefined) inner[level](redactForLog(first) as object);
      else inner[level](redactForLog(first) as object, message);
    };
  const logger: LevelAware = {
    error: wrap('error'),
    warn: wrap('warn'),
    info: wrap('info'),
    debug: wrap('debug'),
    child: (bindings: LogBindings) => redactingLogger(inner.child(redactForLog(bindings) as LogBindings)),
  };
  if (levelAware) logger.isLevelEnabled = (level: string) => aware.isLevelEnabled?.(level) !== false;
  return logger;
}
