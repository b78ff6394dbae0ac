/**
 * `offchannel export` runs again in a child process with a bounded young generation
 * (young-generation.ts): the rule, and the built binary doing it end to end — arguments,
 * output and exit status pass through, and an operator's own setting is kept.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { EXPORT_V8_FLAG, needsBoundedYoung } from './young-generation.ts';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const bin = path.join(import.meta.dirname, '..', 'dist', 'bin.js');

describe('needsBoundedYoung', () => {
  it('is true for export only, and only when the semi-space size is not set already', () => {
    expect(needsBoundedYoung(['export', 'a'], [], {})).toBe(true);
    for (const command of ['capture', 'verify', 'demo', '', 'exports']) expect(needsBoundedYoung([command], [], {})).toBe(false);
    expect(needsBoundedYoung([], [], {})).toBe(false);
    expect(needsBoundedYoung(['export'], [EXPORT_V8_FLAG], {})).toBe(false);
    expect(needsBoundedYoung(['export'], ['--max-semi-space-size=64'], {})).toBe(false);
    expect(needsBoundedYoung(['export'], [], { NODE_OPTIONS: '--enable-source-maps --max-semi-space-size=8' })).toBe(false);
    expect(needsBoundedYoung(['export'], [], { NODE_OPTIONS: '--enable-source-maps' })).toBe(true);
  });
});

describe('the built binary', () => {
  it('runs export in a child with the flag; output and exit status pass through; a set flag is kept', async () => {
    expect(existsSync(bin), `${bin} is missing: run "pnpm build" (pnpm test does) before the tests`).toBe(true);
    const work = await mkdtemp(path.join(tmpdir(), 'offchannel-young-'));
    try {
      // Every process prints the V8 flags it was started with (a preload, inherited by children).
      const probe = path.join(work, 'probe.mjs');
      await writeFile(probe, "process.stderr.write(`probe:${JSON.stringify(process.execArgv.filter((f) => f.startsWith('--max-semi')))}\\n`);\n");
      const env = { ...process.env, NODE_OPTIONS: `--import=${probe}` };
      const demo = spawnSync(process.execPath, [bin, 'demo', '--archive', 'archive'], { cwd: work, encoding: 'utf8', env: process.env });
      expect(demo.status).toBe(0);
      const probes = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('probe:'));

      const exported = spawnSync(process.execPath, [bin, 'export', 'archive', '--format', 'jsonl', '--out', 'out'], { cwd: work, encoding: 'utf8', env });
      expect(exported.status).toBe(0);
      expect(probes(exported.stderr)).toEqual(['probe:[]', `probe:${JSON.stringify([EXPORT_V8_FLAG])}`]);
      expect(exported.stdout).toMatch(/jsonl/i);
      expect((await readdir(path.join(work, 'out'))).length).toBeGreaterThan(0);

      // A usage error's status passes through the child.
      const usage = spawnSync(process.execPath, [bin, 'export', 'archive'], { cwd: work, encoding: 'utf8', env });
      expect(usage.status).toBe(2);
      expect(usage.stderr).toContain('Usage: offchannel export');

      // The operator's own setting: no second process.
      const own = spawnSync(process.execPath, [bin, 'export', 'archive', '--format', 'jsonl', '--out', 'out2'], { cwd: work, encoding: 'utf8', env: { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS} --max-semi-space-size=8` } });
      expect(own.status).toBe(0);
      expect(probes(own.stderr)).toHaveLength(1);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
