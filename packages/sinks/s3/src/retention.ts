/**
 * Object Lock retention: how long each class of object stays locked (COMPLIANCE mode: nobody,
 * not even the account root, can delete it or shorten the date before it passes).
 *
 * The default is 7 years for everything. It covers the rules this project is built for:
 * SEC 17a-4(b)(4) communications (3 years), FINRA 4511(b) records without a stated period
 * (6 years), CFTC 1.31 (5 years) and MiFID II Art. 16(7) (5 years, up to 7 on request). Choose
 * a shorter period only if your rules allow it: COMPLIANCE retention can be extended later, never
 * shortened — and data kept longer than required is a liability of its own.
 */
import { parseStreamName } from '@offchannel/core';
import { S3SinkError } from './s3-errors.ts';

/** A retention period; the parts add up (years are calendar years, in UTC). */
export interface RetentionPeriod {
  readonly years?: number;
  readonly days?: number;
  /** For tests and `sink-check` scratch objects. */
  readonly seconds?: number;
}

/** How long each class of object is locked. */
export interface RetentionOptions {
  /** Record batches, unless `channels` says otherwise. Default 7 years. */
  readonly records?: RetentionPeriod;
  /** Record batches per channel (e.g. `{ signal: { years: 5 } }`). */
  readonly channels?: Readonly<Record<string, RetentionPeriod>>;
  /**
   * Blobs (attachments, raw platform bytes). Default: the longest record period. MUST NOT be
   * shorter: a blob shared by records of several streams must outlive all of them.
   */
  readonly blobs?: RetentionPeriod;
  /** Checkpoints and their timestamps. Default and minimum: the longest record period. */
  readonly checkpoints?: RetentionPeriod;
  /** Merkle tiles. Default and minimum: the longest record period. */
  readonly tiles?: RetentionPeriod;
}

export const DEFAULT_RETENTION: RetentionPeriod = { years: 7 };

export type ObjectClass = 'records' | 'blobs' | 'checkpoints' | 'tiles';

/** Parses `7y`, `2555d`, `90s` (or combinations such as `1y30d`). */
export function parseRetentionPeriod(text: string): RetentionPeriod {
  const match = /^(?:(\d+)y)?(?:(\d+)d)?(?:(\d+)s)?$/.exec(text.trim());
  if (!match || text.trim() === '') throw new S3SinkError('S3_CONFIG_INVALID', `"${text.slice(0, 40)}" is not a retention period; write e.g. 7y, 2555d or 30s.`);
  const [years, days, seconds] = match.slice(1).map((part) => (part === undefined ? undefined : Number(part)));
  return checkPeriod({ ...(years === undefined ? {} : { years }), ...(days === undefined ? {} : { days }), ...(seconds === undefined ? {} : { seconds }) }, text);
}

function checkPeriod(period: RetentionPeriod, what: string): RetentionPeriod {
  const parts = [period.years, period.days, period.seconds];
  if (parts.some((part) => part !== undefined && (!Number.isSafeInteger(part) || part < 0)) || parts.every((part) => !part)) {
    throw new S3SinkError('S3_CONFIG_INVALID', `retention ${what}: give a positive whole number of years, days or seconds.`);
  }
  if ((period.years ?? 0) > 100 || (period.days ?? 0) > 36_600) throw new S3SinkError('S3_CONFIG_INVALID', `retention ${what}: more than 100 years is not accepted by S3.`);
  return period;
}

/** The date `period` after `from`. */
export function addPeriod(from: Date, period: RetentionPeriod): Date {
  const date = new Date(from.getTime());
  if (period.years) date.setUTCFullYear(date.getUTCFullYear() + period.years);
  return new Date(date.getTime() + (period.days ?? 0) * 86_400_000 + (period.seconds ?? 0) * 1000);
}

/** Milliseconds a period lasts from `from` (for comparing periods). */
function length(period: RetentionPeriod, from: Date): number {
  return addPeriod(from, period).getTime() - from.getTime();
}

/** Validated retention settings: answers "lock this object until when?". */
export class RetentionPolicy {
  private readonly records: RetentionPeriod;
  private readonly channels: ReadonlyMap<string, RetentionPeriod>;
  private readonly others: Readonly<Record<'blobs' | 'checkpoints' | 'tiles', RetentionPeriod>>;

  constructor(options: RetentionOptions = {}) {
    this.records = checkPeriod(options.records ?? DEFAULT_RETENTION, 'records');
    this.channels = new Map(Object.entries(options.channels ?? {}).map(([channel, period]) => [channel, checkPeriod(period, `for channel ${channel}`)]));
    const now = new Date();
    const longest = [this.records, ...this.channels.values()].reduce((a, b) => (length(b, now) > length(a, now) ? b : a));
    const pick = (name: 'blobs' | 'checkpoints' | 'tiles'): RetentionPeriod => {
      const period = options[name] === undefined ? longest : checkPeriod(options[name], name);
      if (length(period, now) < length(longest, now)) {
        throw new S3SinkError('S3_CONFIG_INVALID', `retention for ${name} is shorter than the longest record retention; ${name} prove or complete records and must be kept at least as long.`);
      }
      return period;
    };
    this.others = { blobs: pick('blobs'), checkpoints: pick('checkpoints'), tiles: pick('tiles') };
  }

  /** The period for an object of `kind` (and, for records, of `stream`). */
  period(kind: ObjectClass, stream?: string): RetentionPeriod {
    if (kind !== 'records') return this.others[kind];
    if (stream !== undefined) {
      const channel = this.channels.get(parseStreamName(stream).channel);
      if (channel) return channel;
    }
    return this.records;
  }

  /**
   * The retain-until date for an object of `kind` written now. Blobs are stored just before the
   * records that name them, so they get a margin (1% of the period, at most a day) to be sure
   * they are never released before those records.
   */
  until(kind: ObjectClass, stream?: string, now = new Date()): Date {
    const until = addPeriod(now, this.period(kind, stream));
    if (kind !== 'blobs') return until;
    return new Date(until.getTime() + Math.min(86_400_000, Math.ceil((until.getTime() - now.getTime()) / 100)));
  }
}
