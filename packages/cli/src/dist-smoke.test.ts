/**
 * Runs the *built* CLI (dist/, as published) without the source condition, so packaging
 * mistakes — a bundler rewriting `node:sqlite`, a missing export — fail the tests.
 * `pnpm test` builds first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, parseSignerKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { expect, it, vi } from 'vitest';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

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
    // Signed checkpoints, proofs, and verification on worker threads (dist/verify-worker.js).
    expect(spawnSync(process.execPath, [bin, 'keygen', '--out', 'k', '--name', 'smoke.example'], { cwd: work }).status).toBe(0);
    const big = await openFsSink({ dir: path.join(work, 'big'), segmentBytes: 4096 });
    const recorder = new Recorder({ sink: big, checkpoints: { signer: parseSignerKey(await readFile(path.join(work, 'k'), 'utf8')), everyRecords: 50 } });
    const writer = recorder.writer({ channel: 'demo', account: 'smoke', source: { package: 'smoke', version: '0' } });
    for (let index = 0; index < 120; index++) await writer.capture({ kind: 'system', key: `k${index}`, system: { event: 'smoke', fields: { n: `${index}`.repeat(40) } } });
    await recorder.close();
    await big.close();
    const checked = spawnSync(process.execPath, [bin, 'verify', 'big', '--key', 'k.pub', '--json'], { cwd: work, encoding: 'utf8' });
    expect(checked.status, checked.stderr).toBe(0);
    const report = JSON.parse(checked.stdout) as { streams: { workers?: number; checkpoints: unknown[] }[] };
    expect(report.streams[0]?.checkpoints).toHaveLength(3);
    if (availableParallelism() > 1) expect(report.streams[0]?.workers).toBeGreaterThan(1);
    const proof = spawnSync(process.execPath, [bin, 'prove', 'big', 'demo:smoke', '77', '--out', 'p.json'], { cwd: work, encoding: 'utf8' });
    expect(proof.status, proof.stderr).toBe(0);
    expect(spawnSync(process.execPath, [bin, 'verify-proof', 'p.json', '--key', 'k.pub'], { cwd: work }).status).toBe(0);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

it('the built binary runs the full demo of the README (pnpm demo): every connector, the Signal simulator peer, export', { timeout: 90_000 }, async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'offchannel-dist-demo-'));
  try {
    const peer = path.resolve(import.meta.dirname, '../../connectors/signal-mock-tests/src/demo-peer.ts');
    const started = Date.now();
    const demo = spawnSync(process.execPath, [bin, 'demo', '--signing-key', 'k', '--create-key', '--peer', peer], { cwd: work, encoding: 'utf8', timeout: 80_000 });
    expect(demo.status, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/imessage: played 13 scripted steps through the real connector/);
    expect(demo.stdout).toMatch(/signal: played 7 scripted steps through the real connector/);
    expect(demo.stdout).toMatch(/whatsapp: played 7 scripted steps through the real connector/);
    expect(demo.stdout).toMatch(/telegram: played 9 scripted steps through the real connector/);
    expect(demo.stdout).toMatch(/verify: OK — 5 streams/);
    // Account-level records (Signal's linked-device, WhatsApp's identity, Telegram's session and
    // catch-up) have no conversation: each of those streams adds an account-events transcript.
    expect(demo.stdout).toMatch(/export: 13 RSMF files \(Relativity\) and 13 HTML transcripts/);
    expect(Date.now() - started).toBeLessThan(60_000);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
