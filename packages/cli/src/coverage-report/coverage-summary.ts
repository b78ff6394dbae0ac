/**
 * What the text table, the page and the exit status share: streams grouped per custodian,
 * each stream's totals, and the longest gap. Names come from the archive, so they are
 * attacker-influenced: the renderers escape them (HTML) or strip control characters (terminal).
 */
import type { CoverageReport } from './collect-coverage.ts';
import type { DailyCounts, StreamCoverageReport } from './stream-coverage.ts';

export type CountName = Exclude<keyof DailyCounts, 'day'>;
export const COUNT_NAMES: readonly CountName[] = ['messages', 'edits', 'deletes', 'excluded', 'undecryptable', 'unsupported', 'gaps', 'recovered'];

export interface CustodianCoverage {
  readonly account: string;
  readonly streams: readonly StreamCoverageReport[];
}

/** Streams grouped by custodian (account), custodians and their channels in name order. */
export function byCustodian(report: CoverageReport): CustodianCoverage[] {
  const groups = new Map<string, StreamCoverageReport[]>();
  for (const stream of report.streams) {
    const list = groups.get(stream.account) ?? [];
    list.push(stream);
    groups.set(stream.account, list);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([account, streams]) => ({ account, streams: streams.sort((a, b) => a.channel.localeCompare(b.channel) || a.stream.localeCompare(b.stream)) }));
}

/** The longest gap of a stream in ms; an unverified stream counts as one gap over the period. */
export function longestGapMs(stream: StreamCoverageReport): number {
  if (stream.state === 'unverified') return Date.parse(stream.to) - Date.parse(stream.from);
  return Math.max(0, ...stream.gaps.map((gap) => Date.parse(gap.to) - Date.parse(gap.from)));
}

/** Share of the stream's period it was live, 0..1 (1 for a zero-length period). */
export function liveShare(stream: StreamCoverageReport): number {
  const span = Date.parse(stream.to) - Date.parse(stream.from);
  return span <= 0 ? 1 : Math.min(1, stream.liveMs / span);
}

export function totals(days: readonly DailyCounts[]): Record<CountName, number> {
  const sum = Object.fromEntries(COUNT_NAMES.map((name) => [name, 0])) as Record<CountName, number>;
  for (const day of days) for (const name of COUNT_NAMES) sum[name] += day[name];
  return sum;
}

/** Per day, the counts of all `streams` added up. */
export function dailyTotals(streams: readonly StreamCoverageReport[]): DailyCounts[] {
  const days = new Map<string, DailyCounts>();
  for (const stream of streams) {
    for (const day of stream.daily) {
      const sum = days.get(day.day) ?? { day: day.day, messages: 0, edits: 0, deletes: 0, excluded: 0, undecryptable: 0, unsupported: 0, gaps: 0, recovered: 0, other: 0 };
      for (const name of [...COUNT_NAMES, 'other'] as const) sum[name] += day[name];
      days.set(day.day, sum);
    }
  }
  return [...days.values()].sort((a, b) => a.day.localeCompare(b.day));
}

/** Text from the archive, safe for a terminal: control characters (escape sequences) become `?`. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '?');
}
