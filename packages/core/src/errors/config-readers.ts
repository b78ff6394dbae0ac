import { ConfigError } from './config-error.ts';

/**
 * Readers for a connector's plain-JSON settings (`parse<Channel>ConnectorConfig`): each names
 * the offending key in its `ConfigError` and never echoes the value, which may be a secret.
 */

/**
 * `value` as an object whose keys are all in `allowed`. `setting` names what a key should have
 * been, for the message: `connectors[0].phone is not a WhatsApp connector setting (allowed: …).`
 */
export function configObject(value: unknown, key: string, allowed: readonly string[], setting: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(key, 'must be an object.');
  for (const name of Object.keys(value)) {
    if (!allowed.includes(name)) throw new ConfigError(`${key}.${name}`, `is not ${setting} (allowed: ${allowed.join(', ')}).`);
  }
  return value as Record<string, unknown>;
}

/** `{ [name]: n }` when `fields[name]` is an integer from `min` to `max`, `{}` when absent: spread it into the options. */
export function optionalConfigInteger<N extends string>(fields: Record<string, unknown>, name: N, key: string, min: number, max: number): { [P in N]?: number } {
  const value = fields[name];
  if (value === undefined) return {};
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new ConfigError(key, `must be an integer from ${min} to ${max}.`);
  return { [name]: value } as { [P in N]?: number };
}
