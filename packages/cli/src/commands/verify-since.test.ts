/**
 * The auditor's routine with the CLI: a full `verify --key --save`, then, after more capture,
 * `verify --key --since --save` reading only what is new; a rewrite since then fails.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CaptureInput, Recorder, parseSignerKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../testing/run-cli.ts';

let work: string;
let archive: string;
let keyFile: string;
let vkey: string;

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

async function capture(from: number, to: number, account = 'alice'): Promise<void> {
  const sink = await openFsSink({ dir: archive, segmentBytes: 4_000 });
  const recorder = new Recorder({ sink, clock: () => new Date('2026-11-21T10:00:00Z'), checkpoints: { signer: parseSignerKey(await readFile(keyFile, 'utf8')), everyRecords: 50 } });
  const writer = recorder.writer({ channel: 'demo', account, source: { package: 'test', version: '0' } });
  for (let index = from; index < to; index++) await writer.capture(message(index));
  await recorder.close();
  await sink.close();
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-verify-since-'));
  archive = path.join(work, 'archive');
  keyFile = path.join(work, 'signing.key');
  const keygen = await runCli(['keygen', '--out', keyFile, '--name', 'archive.firm.example/offchannel']);
  expect(keygen.code).toBe(0);
  vkey = keygen.stdout.trim().split('\n').at(-1) as string;
  await capture(0, 120);
  await capture(0, 30, 'bob');
}, 60_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('offchannel verify --since / --save', () => {
  it('saves the state after a full audit, then verifies only what came after it', async () => {
    const state = path.join(work, 'audit-state.json');
    const full = await runCli(['verify', archive, '--key', vkey, '--save', state]);
    expect(full.code, full.stderr).toBe(0);
    const saved = JSON.parse(await readFile(state, 'utf8')) as { format: string; streams: Record<string, { size: number }> };
    expect(saved.format).toBe('offchannel-verified-state/1');
    expect(saved.streams).toMatchObject({ 'demo:alice': { size: 120 }, 'demo:bob': { size: 30 } });

    await capture(120, 200);
    const next = await runCli(['verify', archive, '--key', vkey, '--since', state, '--save', state, '--json']);
    expect(next.code, next.stdout).toBe(0);
    const report = JSON.parse(next.stdout) as { ok: boolean; streams: { stream: string; records: number; head: { seq: number } }[] };
    expect(report.streams.find((summary) => summary.stream === 'demo:alice')).toMatchObject({ records: 80, head: { seq: 200 } });
    expect(report.streams.find((summary) => summary.stream === 'demo:bob')).toMatchObject({ records: 0, head: { seq: 30 } });
    const moved = JSON.parse(await readFile(state, 'utf8')) as { streams: Record<string, { size: number }> };
    expect(moved.streams['demo:alice']?.size).toBe(200);
  }, 60_000);

  it('fails loudly when the saved state is not the archive\'s history, and saves nothing', async () => {
    const state = path.join(work, 'forged-state.json');
    const forged = { format: 'offchannel-verified-state/1', verifiedAt: '2026-11-21T10:00:00.000Z', streams: { 'demo:alice': { size: 100, root: 'ab'.repeat(32) } } };
    await writeFile(state, JSON.stringify(forged));
    const result = await runCli(['verify', archive, '--key', vkey, '--since', state, '--save', state]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/CRITICAL/);
    expect(JSON.parse(await readFile(state, 'utf8'))).toEqual(forged);
  }, 60_000);

  it('needs --key, and a readable state file', async () => {
    expect((await runCli(['verify', archive, '--since', path.join(work, 'x.json')])).code).toBe(2);
    const missing = await runCli(['verify', archive, '--key', vkey, '--since', path.join(work, 'nope.json')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/verify --save/);
  }, 60_000);
});
