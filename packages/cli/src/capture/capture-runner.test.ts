import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type ArchiveRecord, decodeRecord, generateEd25519NoteKey, generateStateKey, verifyArchive } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { demoExchange } from '../demo/demo-exchange.ts';
import { parseCaptureConfig } from './capture-config.ts';
import { sha256Text } from './capture-policy.ts';
import { CaptureRunner } from './capture-runner.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function workspace(): Promise<{ dir: string; config: string; key: ReturnType<typeof generateEd25519NoteKey> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-capture-'));
  dirs.push(dir);
  const key = generateEd25519NoteKey('capture-test.offchannel.example');
  await writeFile(path.join(dir, 'signing.key'), `${key.signerKeyText()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
  const config = path.join(dir, 'offchannel.config.json');
  await writeFile(
    config,
    JSON.stringify({
      archive: { dir: './archive' },
      state: { dir: './state', keyFile: './state.key' },
      signing: { keyFile: './signing.key', everyRecords: 10 },
      policy: { version: 'test-policy@1' },
      connectors: [{ channel: 'demo', account: 'alice@firm.example', intervalMs: 0, policy: { exclude: { contacts: ['+15550199'] } } }],
    }),
  );
  return { dir, config, key };
}

async function records(dir: string): Promise<ArchiveRecord[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  const out: ArchiveRecord[] = [];
  try {
    for (const stream of await sink.streams()) for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
  } finally {
    await sink.close();
  }
  return out;
}

async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('capture runner', () => {
  it('records every in-scope event with the policy version, counts excluded ones without content, and restarts without duplicates', async () => {
    const { dir, config: file, key } = await workspace();
    const config = parseCaptureConfig(JSON.parse(await readFile(file, 'utf8')), file);
    const logger = createRecordingLogger();
    const runner = new CaptureRunner(config, logger);
    await runner.start();
    await until(() => runner.snapshot().connectors[0]?.status.detail === 'all demo events replayed; idle');
    const snapshot = runner.snapshot().connectors[0];
    await runner.stop();

    const personal = demoExchange().filter((event) => event.conversation?.id === 'dm:+15550199');
    expect(personal).toHaveLength(3);
    expect(snapshot?.excluded).toBe(3);
    const archived = await records(path.join(dir, 'archive'));
    expect(archived.filter((record) => record.conversation?.id === 'dm:+15550199')).toEqual([]);
    expect(archived.every((record) => record.source.policy === 'test-policy@1')).toBe(true);
    const policy = archived.filter((record) => record.kind === 'policy' && record.system?.event !== 'retention');
    expect(policy.map((record) => record.system)).toEqual([
      { event: 'capture-policy', fields: { version: 'test-policy@1', 'exclude.contacts.sha256': sha256Text('+15550199') } },
      { event: 'conversation-excluded', fields: { 'conversation.sha256': sha256Text('dm:+15550199'), count: '3', from: expect.any(String) as string, to: expect.any(String) as string, version: 'test-policy@1' } },
    ]);
    expect(JSON.stringify(policy)).not.toContain('Frank');
    const inScope = demoExchange().length - personal.length;
    expect(archived).toHaveLength(inScope + 2);

    const text = JSON.stringify(logger.lines);
    for (const event of demoExchange()) if (event.text) expect(text).not.toContain(event.text);

    // A restart replays the same events: all duplicates; the same policy is not recorded twice.
    const again = new CaptureRunner(config, createRecordingLogger());
    await again.start();
    await until(() => again.snapshot().connectors[0]?.status.detail === 'all demo events replayed; idle');
    expect(again.snapshot().connectors[0]?.status).toMatchObject({ captured: 0, duplicates: inScope });
    await again.stop();
    const after = await records(path.join(dir, 'archive'));
    expect(after.filter((record) => record.system?.event === 'conversation-excluded')).toHaveLength(2); // the second run's own count
    expect(after.filter((record) => record.system?.event === 'capture-policy')).toHaveLength(1);

    const sink = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
    const report = await verifyArchive(sink, { verifiers: [key.verifier] }).finally(() => sink.close());
    expect(report.failures).toEqual([]);
    expect(report.streams[0]?.checkpoints?.at(-1)?.size).toBe(after.length);
  });

  it('the built binary stops cleanly on SIGINT and signs a final checkpoint', { timeout: 60_000 }, async () => {
    const { dir, config, key } = await workspace();
    const bin = path.join(import.meta.dirname, '..', '..', 'dist', 'bin.js');
    const child = spawn(process.execPath, [bin, 'capture', '--config', config, '--log-level', 'info'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await until(() => stderr.includes('"capture running"'), 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stdout).toMatch(/stopped: demo:alice@firm\.example \d+ records? captured/);
    const sink = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
    const report = await verifyArchive(sink, { verifiers: [key.verifier] }).finally(() => sink.close());
    expect(report.ok).toBe(true);
    expect(report.streams[0]?.checkpoints?.at(-1)?.size).toBe(report.streams[0]?.records);
  });

  it('refuses to start on a bad config, naming the key, with exit status 2', async () => {
    const { dir, config } = await workspace();
    await writeFile(config, JSON.stringify({ state: { keyFile: './state.key' }, connectors: [{ channel: 'demo', account: 'a', intervalMs: 'fast' }] }));
    const { runCli } = await import('../testing/run-cli.ts');
    const result = await runCli(['capture', '--config', config], dir);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/config\.connectors\[0\]\.intervalMs must be a whole number/);
  });
});
