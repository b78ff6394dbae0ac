/**
 * Names of the Merkle logs an archive holds: one per stream (`<channel>:<account>`), and the
 * archive-level log(s) whose entries are the streams' signed checkpoints (docs/witnessing.md):
 * `archive-log` for a single capture host, `archive-log.s<k>of<n>` for shard k of n. A log name
 * names the folders `checkpoints/<log>/` and `tiles/<log>/`; an archive-log name never contains
 * `:`, so it can never be a stream's name, and it is one safe path segment.
 */
import { InvalidStreamNameError } from '../errors/record-errors.ts';
import { assertStreamName } from '../record/stream-name.ts';

/** The archive log of a capture host that is not sharded. */
export const ARCHIVE_LOG = 'archive-log';

const ARCHIVE_LOG_PATTERN = /^archive-log(?:\.s([1-9][0-9]{0,3})of([1-9][0-9]{0,3}))?$/;

/** True when `name` names an archive-level log (never a stream). */
export function isArchiveLogName(name: unknown): name is string {
  if (typeof name !== 'string') return false;
  const match = ARCHIVE_LOG_PATTERN.exec(name);
  return match !== null && (match[1] === undefined || Number(match[1]) <= Number(match[2]));
}

/** The archive log of shard `index` of `count` (1-based), or {@link ARCHIVE_LOG} without a shard. */
export function archiveLogName(shard?: { readonly index: number; readonly count: number }): string {
  if (!shard || shard.count <= 1) return ARCHIVE_LOG;
  const name = `${ARCHIVE_LOG}.s${shard.index}of${shard.count}`;
  if (!isArchiveLogName(name)) throw new InvalidStreamNameError('a shard is k of n with 1 ≤ k ≤ n ≤ 9999');
  return name;
}

/** Checks a log name: a stream name or an archive-log name. Throws {@link InvalidStreamNameError}. */
export function assertLogName(name: unknown): asserts name is string {
  if (!isArchiveLogName(name)) assertStreamName(name);
}
