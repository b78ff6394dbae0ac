/**
 * `offchannel capture` as a fleet, on the built CLI as real processes: accounts that cannot
 * run are parked while the others capture; SIGHUP adds and removes accounts; `--shard` splits
 * one config over several processes, and a second process on the same shard is refused.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ArchiveRecord, decodeRecord, generateEd25519NoteKey, generateStateKey, openStateStore, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { demoExchange } from '../demo/demo-exchange.ts';
import { shardOf } from './capture-shard.ts';

const BIN = path.join(import.meta.dirname, '..', '..', 'dist', 'bin.js');
const dirs: string[] = [];
const children: ChildProcessWithoutNullStreams[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

interface Workspace {
  readonly dir: string;
  readonly config: string;
  readonly key: ReturnType<typeof generateEd25519NoteKey>;
  write(connectors: readonly Record<string, unknown>[]): Promise<void>;
}

async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-fleet-'));
  dirs.push(dir);
  const key = generateEd25519NoteKey('fleet-test.offchannel.example');
  const stateKey = generateStateKey();
  await writeFile(path.join(dir, 'signing.key'), `${key.signerKeyText()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'state.key'), `${stateKey}\n`, { mode: 0o600 });
  // Created up front, as an operator's setup does, so that processes started together do not race to create them.
  await openStateStore({ dir: path.join(dir, 'state'), key: Buffer.from(stateKey, 'base64') });
  await (await openFsSink({ dir: path.join(dir, 'archive') })).close();
  const config = path.join(dir, 'offchannel.config.json');
  const write = async (connectors: readonly Record<string, unknown>[]): Promise<void> => {
    const body = { archive: { dir: './archive' }, state: { dir: './state', keyFile: './state.key' }, signing: { keyFile: './signing.key' }, connectors };
    await writeFile(config, JSON.stringify(body), { mode: 0o600 });
  };
  return { dir, config, key, write };
}

interface Capture {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
  stdout(): string;
  /** The JSON log lines so far. */
  logs(): { msg: string; time: number; [field: string]: unknown }[];
  stderr(): string;
}

function capture(ws: Workspace, args: readonly string[] = [], env: Record<string, string> = {}): Capture {
  const child = spawn(process.execPath, [BIN, 'capture', '--config', ws.config, '--log-level', 'info', ...args], { cwd: ws.dir, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    logs: () =>
      stderr
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { msg: string; time: number }),
  };
}

/** Waits for `check`; fails at once, with its log, if `run` exited meanwhile. */
async function until(check: () => boolean, what: string, run: Capture, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (run.child.exitCode !== null) throw new Error(`the capture process exited (${run.child.exitCode}) before ${what}:\n${run.stderr().slice(-2000)}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function streams(dir: string): Promise<Map<string, ArchiveRecord[]>> {
  const sink = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
  const out = new Map<string, ArchiveRecord[]>();
  try {
    for (const stream of await sink.streams()) {
      const records: ArchiveRecord[] = [];
      for await (const stored of sink.read(stream)) records.push(decodeRecord(stored.bytes).record);
      out.set(stream, records);
    }
  } finally {
    await sink.close();
  }
  return out;
}

/** Waits until `stream` holds `count` records (read-only, beside the running writer). */
async function untilRecords(ws: Workspace, run: Capture, stream: string, count: number): Promise<void> {
  const end = Date.now() + 60_000;
  while (((await streams(ws.dir)).get(stream)?.length ?? 0) < count) {
    if (run.child.exitCode !== null) throw new Error(`the capture process exited (${run.child.exitCode}) before ${stream} held ${count} records:\n${run.stderr().slice(-2000)}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${count} records in ${stream}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function verified(ws: Workspace): Promise<{ ok: boolean; failures: readonly unknown[] }> {
  const sink = await openFsSink({ dir: path.join(ws.dir, 'archive'), readOnly: true });
  const report = await verifyArchive(sink, { verifiers: [ws.key.verifier] }).finally(() => sink.close());
  return { ok: report.ok, failures: report.failures };
}

const events = (records: readonly ArchiveRecord[]): string[] => records.filter((record) => record.kind === 'system' && record.system?.event.startsWith('capture-')).map((record) => record.system?.event ?? '');

const ticks = (records: readonly ArchiveRecord[]): number[] => records.flatMap((record) => (record.key.startsWith('message:tick-') ? [Number(record.key.slice('message:tick-'.length))] : []));

describe('offchannel capture as a fleet (built CLI, real processes)', () => {
  it('keeps capturing a demo account while an unlinked WhatsApp and an unlinked Signal account are parked, and exits 0 on SIGINT', { timeout: 90_000 }, async () => {
    const ws = await workspace();
    await ws.write([
      { channel: 'whatsapp', account: 'bob' },
      { channel: 'demo', account: 'alice', intervalMs: 10, repeat: true },
      { channel: 'signal', account: 'carol' },
    ]);
    const run = capture(ws);
    await until(() => run.logs().some((line) => line.msg === 'capture running'), '"capture running"', run);
    const running = run.logs().find((line) => line.msg === 'capture running');
    expect(running?.accounts).toEqual([
      { stream: 'whatsapp:bob', state: 'not-linked' },
      { stream: 'demo:alice', state: 'running' },
      { stream: 'signal:carol', state: 'not-linked' },
    ]);
    // The demo account goes on capturing past its exchange while the other two stay parked.
    await untilRecords(ws, run, 'demo:alice', demoExchange().length + 10);
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.stdout()).toMatch(/stopped: whatsapp:bob not-linked \(WHATSAPP_NOT_LINKED\), 0 records captured.*; demo:alice \d+ records captured.*; signal:carol not-linked \(SIGNAL_NOT_LINKED\)/);
    const parked = run.logs().filter((line) => line.msg.startsWith('account parked'));
    expect(parked.map((line) => [line.stream, line.code])).toEqual(expect.arrayContaining([['whatsapp:bob', 'WHATSAPP_NOT_LINKED'], ['signal:carol', 'SIGNAL_NOT_LINKED']]));

    const archive = await streams(ws.dir);
    expect(events(archive.get('whatsapp:bob') ?? [])).toEqual(['capture-not-linked', 'capture-stopped']);
    expect(events(archive.get('signal:carol') ?? [])).toEqual(['capture-not-linked', 'capture-stopped']);
    // The process's first record in each stream also says the process started (no earlier attestation here).
    // (Signal runs on the connector runtime: its own `connector-stopped`, with the reason, comes first.)
    expect(archive.get('signal:carol')?.map((record) => record.system?.event)[0]).toBe('connector-stopped');
    expect(archive.get('signal:carol')?.find((record) => record.system?.event === 'capture-not-linked')?.system?.fields).toEqual({ code: 'SIGNAL_NOT_LINKED', run: running?.run, processStart: 'true', attestationHost: expect.stringMatching(/^h-[0-9a-f]{12}$/) as string });
    const alice = archive.get('demo:alice') ?? [];
    expect(events(alice)).toEqual(['capture-started', 'capture-stopped']);
    expect(ticks(alice).length).toBeGreaterThan(5);
    expect(await verified(ws)).toEqual({ ok: true, failures: [] });
    // Logs name streams, never message text.
    for (const event of demoExchange()) if (event.text) expect(run.stderr()).not.toContain(event.text);
    expect(run.stderr()).not.toContain('Desk update');
  });

  it('SIGHUP adds and removes accounts while the unchanged one keeps capturing without a gap; a broken config is not applied', { timeout: 90_000 }, async () => {
    const ws = await workspace();
    await ws.write([
      { channel: 'demo', account: 'alice', intervalMs: 10, repeat: true },
      { channel: 'demo', account: 'bob', intervalMs: 10, repeat: true },
    ]);
    const run = capture(ws);
    await until(() => run.logs().some((line) => line.msg === 'capture running'), '"capture running"', run);
    await untilRecords(ws, run, 'demo:alice', demoExchange().length + 5);

    // A config that does not parse changes nothing.
    await writeFile(ws.config, '{"connectors": [');
    run.child.kill('SIGHUP');
    await until(() => run.logs().some((line) => line.msg.startsWith('config not applied')), 'the broken config to be refused', run);
    expect(run.logs().find((line) => line.msg.startsWith('config not applied'))?.code).toBe('CONFIG_INVALID');

    await ws.write([
      { channel: 'demo', account: 'alice', intervalMs: 10, repeat: true },
      { channel: 'demo', account: 'carol', intervalMs: 10, repeat: true },
    ]);
    const hangupAt = Date.now();
    run.child.kill('SIGHUP');
    await until(() => run.logs().some((line) => line.msg === 'config reloaded'), '"config reloaded"', run);
    const reloaded = run.logs().find((line) => line.msg === 'config reloaded');
    expect(reloaded).toMatchObject({ added: ['demo:carol'], removed: ['demo:bob'], restarted: [], retried: [], unchanged: 1 });
    const atReload = (await streams(ws.dir)).get('demo:alice')?.length ?? 0;
    await untilRecords(ws, run, 'demo:alice', atReload + 10);
    await untilRecords(ws, run, 'demo:carol', demoExchange().length + 5);
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.stdout()).toMatch(/^stopped: demo:alice \d+ records captured, 0 already archived; demo:carol \d+ records captured/);

    const archive = await streams(ws.dir);
    const alice = archive.get('demo:alice') ?? [];
    // Untouched by the reload: one start, one stop, and every tick in order, before and after it.
    expect(events(alice)).toEqual(['capture-started', 'capture-stopped']);
    const aliceTicks = ticks(alice);
    expect(aliceTicks).toEqual(aliceTicks.map((_, index) => index + 1));
    const reloadAt = reloaded?.time ?? 0;
    const capturedAt = alice.filter((record) => record.kind === 'message').map((record) => Date.parse(record.capturedAt));
    expect(capturedAt.some((at) => at < hangupAt)).toBe(true);
    expect(capturedAt.some((at) => at > reloadAt)).toBe(true);
    const bob = archive.get('demo:bob') ?? [];
    expect(events(bob)).toEqual(['capture-started', 'capture-stopped']);
    expect(bob.at(-1)?.system?.fields?.reason).toBe('removed-from-config');
    expect(Date.parse(bob.at(-1)?.capturedAt ?? '')).toBeLessThanOrEqual(reloadAt);
    const carol = archive.get('demo:carol') ?? [];
    expect(events(carol)).toEqual(['capture-started', 'capture-stopped']);
    expect(Date.parse(carol[0]?.capturedAt ?? '')).toBeGreaterThanOrEqual(hangupAt);
    expect(ticks(carol).length).toBeGreaterThan(0);
    expect(await verified(ws)).toEqual({ ok: true, failures: [] });
  });

  it('--shard k/3 over 30 accounts: each captured by exactly one process; a second process on a shard is refused those accounts', { timeout: 120_000 }, async () => {
    const ws = await workspace();
    const accounts = Array.from({ length: 30 }, (_, index) => `desk-${String(index).padStart(2, '0')}`);
    await ws.write(accounts.map((account) => ({ channel: 'demo', account, intervalMs: 0 })));
    const shards = [capture(ws, ['--shard', '0/3']), capture(ws, [], { OFFCHANNEL_SHARD: '1/3' }), capture(ws, ['--shard', '2/3'])];
    for (const run of shards) await until(() => run.logs().some((line) => line.msg === 'capture running'), '"capture running" of every shard', run);
    const expected = [0, 1, 2].map((shard) => accounts.map((account) => `demo:${account}`).filter((stream) => shardOf(stream, 3) === shard));
    expect(expected.every((list) => list.length > 0)).toBe(true);
    shards.forEach((run, shard) => {
      const running = run.logs().find((line) => line.msg === 'capture running');
      expect(running?.shard).toBe(`${shard}/3`);
      expect(running?.accounts).toEqual((expected[shard] ?? []).map((stream) => ({ stream, state: 'running' })));
    });

    // A second process for shard 1: every account of it is held by the first, so it is refused each, clearly, and writes nothing.
    const second = capture(ws, ['--shard', '1/3']);
    await until(() => second.logs().some((line) => line.msg === 'capture running'), '"capture running" of the second shard-1 process', second);
    const refused = second.logs().filter((line) => typeof line.msg === 'string' && line.msg.includes('is captured by another process'));
    expect(refused.map((line) => line.stream).sort()).toEqual(expected[1]);
    expect(refused.every((line) => line.code === 'SINK_CONFLICT' && line.msg.includes('check --shard'))).toBe(true);
    expect(second.logs().find((line) => line.msg === 'capture running')?.accounts).toEqual((expected[1] ?? []).map((stream) => ({ stream, state: 'claimed-elsewhere' })));

    for (const run of [...shards, second]) run.child.kill('SIGINT');
    for (const run of [...shards, second]) expect(await run.exited).toBe(0);
    expect(second.stdout()).toMatch(/claimed-elsewhere \(SINK_CONFLICT\)/);

    const runs = shards.map((run) => run.logs().find((line) => line.msg === 'capture running')?.run);
    const secondRun = second.logs().find((line) => line.msg === 'capture running')?.run;
    const archive = await streams(ws.dir);
    expect([...archive.keys()].sort()).toEqual(accounts.map((account) => `demo:${account}`));
    for (const [stream, records] of archive) {
      const writers = new Set(records.filter((record) => record.kind === 'system' && record.system?.event.startsWith('capture-')).map((record) => record.system?.fields?.run));
      expect([...writers]).toEqual([runs[shardOf(stream, 3)]]);
      expect(records.some((record) => JSON.stringify(record).includes(String(secondRun)))).toBe(false);
      expect(events(records)).toEqual(['capture-started', 'capture-stopped']);
      expect(records.filter((record) => record.system?.event === 'capture-started')[0]?.system?.fields?.shard).toBe(`${shardOf(stream, 3)}/3`);
    }
    expect(await verified(ws)).toEqual({ ok: true, failures: [] });
  });
});
