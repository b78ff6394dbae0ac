import { ConfigError } from '@offchannel/core';

/**
 * Small typed readers over parsed JSON that name the offending key in every error
 * (`config.connectors[1].policy.exclude.contacts[0] must be a non-empty string`) and never echo
 * the value, which may be a secret.
 */
export type Json = Record<string, unknown>;

export function object(value: unknown, key: string, known: readonly string[]): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(key, 'must be an object');
  for (const name of Object.keys(value)) {
    if (!known.includes(name)) throw new ConfigError(`${key}.${name}`, `is not a known setting; known here: ${known.join(', ')}`);
  }
  return value as Json;
}

export function optionalString(value: unknown, key: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '' || value.length > 4096) throw new ConfigError(key, 'must be a non-empty string');
  return value;
}

export function requiredString(value: unknown, key: string): string {
  const text = optionalString(value, key);
  if (text === undefined) throw new ConfigError(key, 'is required');
  return text;
}

export function optionalBoolean(value: unknown, key: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new ConfigError(key, 'must be true or false');
  return value;
}

export function optionalInteger(value: unknown, key: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) throw new ConfigError(key, `must be a whole number from ${min} to ${max}`);
  return value;
}

export function stringList(value: unknown, key: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError(key, 'must be a list of strings');
  return value.map((item, index) => requiredString(item, `${key}[${index}]`));
}

export function oneOf<T extends string>(value: unknown, key: string, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) throw new ConfigError(key, `must be one of ${allowed.join(', ')}`);
  return value as T;
}
