/**
 * Runs the *built* CLI (dist/, as published) without the source condition, so packaging
 * mistakes — a bundler rewriting `node:sqlite`, a missing export — fail the tests.
 * `pnpm test` builds first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';

const bin = path.join(import.meta.dirname, '..', 'dist', 'bin.js');

it('the built offchannel binary runs the demo and verifies the archive', { timeout: 60_000 }, async () => {
  expect(existsSync(bin), `${bin} is missing: run "pnpm build" (pnpm test does) before the tests`).toBe(true);
  const work = await mkdtemp(path.join(tmpdir(), 'offchannel-dist-'));
  try {
    const demo = spawnSync(process.execPath, [bin, 'demo', '--archive', 'archive'], { cwd: work, encoding: 'utf8' });
    expect(demo.stderr).toBe('');
    expect(demo.status).toBe(0);
    expect(demo.stdout).toContain('verify: OK');
    const verify = spawnSync(process.execPath, [bin, 'verify', 'archive', '--json'], { cwd: work, encoding: 'utf8' });
    expect(verify.status).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
    const version = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
