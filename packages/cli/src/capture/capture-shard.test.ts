import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli } from '../testing/run-cli.ts';
import { inShard, parseShard, shardOf } from './capture-shard.ts';

/** The documented operator check, run by bash and coreutils' sha256sum. */
function byHand(stream: string, count: number): number {
  const script = 'echo $(( 0x$(printf %s "$1" | sha256sum | cut -c1-8) % $2 ))';
  return Number(execFileSync('bash', ['-c', script, 'shard', stream, String(count)], { encoding: 'utf8' }).trim());
}

describe('capture shards', () => {
  it('match the documented sha256sum one-liner', () => {
    const streams = ['whatsapp:alice@firm.example', 'signal:desk-42', 'telegram:+15550100', 'demo:desk-07', 'imessage:bob.chen@firm.example'];
    for (const stream of streams) for (const count of [1, 2, 3, 7, 4096]) expect(shardOf(stream, count)).toBe(byHand(stream, count));
  });

  it('put every account in exactly one shard', () => {
    const streams = Array.from({ length: 300 }, (_, index) => `demo:desk-${index}`);
    const shards = [0, 1, 2].map((index) => ({ index, count: 3 }));
    for (const stream of streams) expect(shards.filter((shard) => inShard(stream, shard))).toHaveLength(1);
    for (const shard of shards) expect(streams.filter((stream) => inShard(stream, shard)).length).toBeGreaterThan(60);
    expect(inShard('demo:x', undefined)).toBe(true);
  });

  it('accept k/n only, naming where the bad value came from', () => {
    expect(parseShard('2/3', '--shard')).toEqual({ index: 2, count: 3 });
    for (const bad of ['3/3', '1/0', '-1/3', '1', '1/3/4', 'a/b', '0/5000', ' ']) expect(() => parseShard(bad, 'OFFCHANNEL_SHARD')).toThrow(/OFFCHANNEL_SHARD must be k\/n/);
  });

  it('refuses a bad --shard before reading the config, with exit status 2', async () => {
    const result = await runCli(['capture', '--shard', '3/3', '--config', '/nonexistent/offchannel.config.json']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--shard must be k\/n with 0 <= k < n/);
  });
});
