/**
 * Record times are ISO 8601 UTC with 0–9 fractional digits, which do not sort as strings
 * (`…07Z` > `…07.5Z`). This pads the fraction to 9 digits so string order is time order.
 */
export function sortableTime(iso: string): string {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(iso);
  if (!match) return iso;
  return `${match[1] ?? ''}.${(match[2] ?? '').padEnd(9, '0')}Z`;
}

/** Parses a `--from` / `--to` bound: a date (`2026-11-20`, whole UTC day) or an ISO date-time with offset. */
export function parseTimeBound(value: string, end: boolean): string | undefined {
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const day = new Date(`${value}T00:00:00Z`);
    if (Number.isNaN(day.getTime()) || day.toISOString().slice(0, 10) !== value) return undefined;
    if (end) day.setUTCDate(day.getUTCDate() + 1);
    return sortableTime(day.toISOString());
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/.test(value)) return undefined;
  const time = new Date(value);
  return Number.isNaN(time.getTime()) ? undefined : sortableTime(time.toISOString());
}
