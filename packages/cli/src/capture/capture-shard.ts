/**
 * Sharding accounts over several capture processes that share one config (`--shard k/n`, or
 * `OFFCHANNEL_SHARD=k/n` for orchestrators): a process captures only the accounts whose stream
 * hashes into its shard. The function is fixed and documented so an operator can check it by
 * hand:
 *
 *   shard(stream, n) = (first 4 bytes of SHA-256(stream), big-endian) mod n
 *
 * ```sh
 * echo $(( 0x$(printf %s 'whatsapp:alice@firm.example' | sha256sum | cut -c1-8) % 3 ))
 * ```
 *
 * Sharding only decides who tries; the stream's writer lock (and compare-and-append) decides
 * who may write, so two processes that claim one account never both capture it.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../usage-error.ts';

/** Shard `index` of `count` (0 ≤ index < count). */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** Most shards accepted: far more hosts than any firm runs, few enough to catch a typo. */
export const MAX_SHARDS = 4096;

/** The shard `stream` (`<channel>:<account>`) belongs to, of `count`. */
export function shardOf(stream: string, count: number): number {
  const digest = createHash('sha256').update(stream, 'utf8').digest();
  return digest.readUInt32BE(0) % count;
}

/** True when `stream` is captured by `shard` (always, without sharding). */
export function inShard(stream: string, shard: Shard | undefined): boolean {
  return shard === undefined || shardOf(stream, shard.count) === shard.index;
}

/** Parses `k/n` (from `where`: `--shard` or `OFFCHANNEL_SHARD`); anything else is a `UsageError`. */
export function parseShard(text: string, where: string): Shard {
  const match = /^(\d{1,4})\/(\d{1,4})$/.exec(text.trim());
  const index = match ? Number(match[1]) : Number.NaN;
  const count = match ? Number(match[2]) : Number.NaN;
  if (!match || count < 1 || count > MAX_SHARDS || index >= count) {
    throw new UsageError(`${where} must be k/n with 0 <= k < n <= ${MAX_SHARDS}, e.g. 0/3 (this process captures the accounts of shard k of n)`);
  }
  return { index, count };
}

/** `k/n`, as accepted by {@link parseShard}. */
export function shardText(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}
