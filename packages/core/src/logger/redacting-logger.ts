import type { LogBindings, LogFn, Logger } from './logger.ts';

/**
 * Field names whose values are replaced by `[redacted]` at any depth. Fixed in code on
 * purpose: redaction rules never come from configuration or input.
 */
export const REDACTED_FIELDS: ReadonlySet<string> = new Set([
  'text',
  'body',
  'caption',
  'content',
  'conversation',
  'message',
  'plaintext',
  'ciphertext',
  'raw',
  'bytes',
  'data',
  'payload',
  'title',
  'name',
  'secret',
  'password',
  'passphrase',
  'token',
  'privatekey',
  'signingkey',
  'seed',
  'creds',
  'credentials',
  'cookie',
  'authorization',
]);

const SECRET_SUFFIX = /(secret|password|token|privatekey|apikey|authkey)$/i;
const MAX_DEPTH = 6;

/**
 * Returns a copy of `value` that is safe to log: fields named in {@link REDACTED_FIELDS} (or
 * ending in secret/password/token/privateKey/apiKey/authKey) become `[redacted]`, byte arrays
 * become `[N bytes]`, long strings are cut, deep nesting is cut. `Error` objects keep only
 * name, code and message (offchannel error messages never contain content).
 */
export function redactForLog(value: unknown, depth = 0): unknown {
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.length > 512 ? `${value.slice(0, 512)}…[${value.length} chars]` : value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return `[${typeof value}]`;
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  if (depth >= MAX_DEPTH) return '[nested]';
  if (Array.isArray(value)) return value.slice(0, 50).map((item: unknown) => redactForLog(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    out[key] = REDACTED_FIELDS.has(key.toLowerCase()) || SECRET_SUFFIX.test(key) ? '[redacted]' : redactForLog(item, depth + 1);
  }
  return out;
}

/**
 * Wraps `inner` so every structured field passes through {@link redactForLog} first.
 * The recorder, state store and connectors log only through a redacting logger.
 */
export function redactingLogger(inner: Logger): Logger {
  const wrap =
    (method: LogFn): LogFn =>
    (first: object | string, message?: string) => {
      if (typeof first === 'string') method(first);
      else if (message === undefined) method(redactForLog(first) as object);
      else method(redactForLog(first) as object, message);
    };
  return {
    error: wrap(inner.error.bind(inner)),
    warn: wrap(inner.warn.bind(inner)),
    info: wrap(inner.info.bind(inner)),
    debug: wrap(inner.debug.bind(inner)),
    child: (bindings: LogBindings) => redactingLogger(inner.child(redactForLog(bindings) as LogBindings)),
  };
}
