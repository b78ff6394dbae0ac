import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../testing/run-cli.ts';
import { inShard, parseShard, shardOf } from './capture-shard.ts';

/** The documented operator check, run by bash and coreutils' sha256sum. */
function byHand(stream: string, count: number): number {
  const script = 'echo $(( 0x$(printf %s "$1" | sha256sum | cut -c1-8) % $2 ))';
  return Number(execFileSync('bash', ['-c', script, 'shard', stream, String(count)], { encoding: 'utf8' }).trim());
}

describe('capture shards', () => {
  it('match the documented sha256sum one-liner', { timeout: 60_000 }, () => {
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

  it('refuses a bad --shard before reading the config, with exit status 2', { timeout: 60_000 }, async () => {
    const result = await runCli(['capture', '--shard', '3/3', '--config', '/nonexistent/offchannel.config.json']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--shard must be k\/n with 0 <= k < n/);
  });

  it('--check lists the accounts of a shard and checks every entry with its package', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-shard-check-'));
    try {
      const config = path.join(dir, 'offchannel.config.json');
      const accounts = Array.from({ length: 9 }, (_, index) => `desk-${index}`);
      await writeFile(config, JSON.stringify({ state: { unencrypted: true }, connectors: accounts.map((account) => ({ channel: 'demo', account })) }), { mode: 0o600 });
      const checked = await runCli(['capture', '--check', '--shard', '1/3', '--config', config]);
      expect(checked.code).toBe(0);
      const mine = accounts.map((account) => `demo:${account}`).filter((stream) => shardOf(stream, 3) === 1);
      expect(checked.stdout).toContain(`shard 1/3: ${mine.length} of them: ${mine.join(', ')}\n`);
      // A setting only the WhatsApp package knows to refuse: --check loads it and names the key.
      await writeFile(config, JSON.stringify({ state: { unencrypted: true }, connectors: [{ channel: 'whatsapp', account: 'bob', syncFullHistory: 'yes' }] }), { mode: 0o600 });
      const bad = await runCli(['capture', '--check', '--config', config]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/config\.connectors\[0\]\.syncFullHistory must be true or false/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
