/**
 * chat.db dates: nanoseconds since 2001-01-01T00:00:00Z (macOS 10.13 and later; seconds
 * before that), read as BigInt because they exceed 2^53. `message_summary_info` uses float
 * seconds since the same epoch. 0 and NULL both mean "not set".
 */

/** 2001-01-01T00:00:00Z in Unix seconds. */
export const APPLE_EPOCH_UNIX_SECONDS = 978_307_200n;
const NS = 1_000_000_000n;
/** Values below this are seconds (pre-High Sierra databases), not nanoseconds. */
const SECONDS_ERA_LIMIT = 100_000_000_000n;
/** 9999-12-31T23:59:59Z in Unix seconds: the last instant ISO 8601's four-digit year holds. */
const LAST_ISO_UNIX_SECONDS = 253_402_300_799n;

/**
 * ISO 8601 UTC with nanosecond digits for a chat.db date, or `undefined` when unset or past
 * the year 9999 (a hostile value must not throw: the row is still recorded, without a time).
 */
export function appleDateToIso(value: unknown): string | undefined {
  const raw = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (raw === undefined || raw <= 0n) return undefined;
  const ns = (raw < SECONDS_ERA_LIMIT ? raw * NS : raw) + APPLE_EPOCH_UNIX_SECONDS * NS;
  const seconds = ns / NS;
  if (seconds > LAST_ISO_UNIX_SECONDS) return undefined;
  const iso = new Date(Number(seconds) * 1000).toISOString();
  return `${iso.slice(0, 19)}.${(ns % NS).toString().padStart(9, '0')}Z`;
}

/** ISO 8601 UTC for float seconds since 2001 (`message_summary_info` `d`); `undefined` when unset or out of range. */
export function appleSecondsToIso(seconds: number): string | undefined {
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > Number(LAST_ISO_UNIX_SECONDS)) return undefined;
  return appleDateToIso(BigInt(Math.round(seconds * 1e6)) * 1000n);
}

/** A JS time (ms since 1970) as chat.db nanoseconds since 2001. */
export function unixMsToAppleNs(ms: number): bigint {
  return (BigInt(Math.round(ms)) - APPLE_EPOCH_UNIX_SECONDS * 1000n) * 1_000_000n;
}
