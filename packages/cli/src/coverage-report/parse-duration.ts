import { UsageError } from '../usage-error.ts';

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** The longest duration accepted: ten years, far beyond any retention period. */
const MAX_MS = 3650 * UNIT_MS.d;

/**
 * Parses a duration written as a whole number and one unit: `90s`, `15m`, `2h`, `7d`.
 * Nothing else is accepted (no spaces, signs, fractions, combined units or bare numbers), so a
 * typo in a cron line fails loudly with exit 2 instead of alerting on the wrong threshold.
 */
export function parseDuration(text: string, option: string): number {
  const match = /^([0-9]{1,7})([smhd])$/.exec(text);
  if (!match) throw new UsageError(`${option} "${clip(text)}" is not a duration: write a whole number and one unit, e.g. 90s, 15m, 2h, 7d`);
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  if (ms === 0) throw new UsageError(`${option} must be longer than 0`);
  if (ms > MAX_MS) throw new UsageError(`${option} must be at most 3650d`);
  return ms;
}

/** A duration for people: `45s`, `12m 5s`, `3h 2m`, `2d 4h`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 ? `${m}m` : `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 === 0 ? `${h}h` : `${h}h ${m % 60}m`;
  const d = Math.floor(h / 24);
  return h % 24 === 0 ? `${d}d` : `${d}d ${h % 24}h`;
}

/** Parses `--from` / `--to`: an ISO 8601 date (`2026-11-01`, midnight UTC) or date-time with zone. */
export function parseInstant(text: string, option: string): number {
  const date = /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : text;
  const ok = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(date);
  const ms = ok ? Date.parse(date) : Number.NaN;
  if (Number.isNaN(ms)) throw new UsageError(`${option} "${clip(text)}" is not a date: write 2026-11-01 (midnight UTC) or 2026-11-01T09:30:00Z`);
  return ms;
}

function clip(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 40 ? `${printable.slice(0, 40)}…` : printable;
}
