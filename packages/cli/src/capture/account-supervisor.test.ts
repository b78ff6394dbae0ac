import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ArchiveRecord,
  CONNECTOR_SPEC_VERSION,
  type Connector,
  type ConnectorContext,
  type ConnectorStatus,
  OffchannelError,
  decodeRecord,
  generateStateKey,
} from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { parseCaptureConfig } from './capture-config.ts';
import { CaptureRunner } from './capture-runner.ts';
import { classifyFailure } from './classify-failure.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/**
 * A stand-in "whatsapp" package whose connectors fail as scripted: `starts[n]` is what the
 * n-th start does (an error to throw, or `run` to start and capture one message).
 */
function scriptedPackage(starts: readonly (Error | 'run')[]): { module: Record<string, unknown>; connectors: Scripted[] } {
  const connectors: Scripted[] = [];
  const module = {
    parseWhatsAppConnectorConfig: (entry: { account: string }) => ({ account: entry.account }),
    createWhatsAppConnector: (options: { account: string }) => {
      const connector = new Scripted(options.account, starts[connectors.length] ?? 'run');
      connectors.push(connector);
      return connector;
    },
  };
  return { module, connectors };
}

class Scripted implements Connector {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'whatsapp';
  readonly account: string;
  readonly source = { package: 'scripted-whatsapp', version: '0.0.0' };
  readonly #plan: Error | 'run';
  #hostile = false;
  #status: ConnectorStatus = { state: 'idle', since: '2026-11-20T09:00:00.000Z', captured: 0, duplicates: 0, errors: 0 };

  constructor(account: string, plan: Error | 'run') {
    this.account = account;
    this.#plan = plan;
  }

  async start(ctx: ConnectorContext): Promise<void> {
    if (this.#plan !== 'run') throw this.#plan;
    await ctx.capture({ kind: 'system', key: `scripted:${Math.random()}`, system: { event: 'scripted-connected' } });
    this.#status = { ...this.#status, state: 'running', captured: 1 };
  }

  /** What the platform does to a linked device that is removed: the connector reports `logged-out`. */
  logOut(): void {
    this.#status = { ...this.#status, state: 'logged-out' };
  }

  /** A broken connector: `status()` and `stop()` throw synchronously. */
  breakDown(): void {
    this.#hostile = true;
  }

  stop(): Promise<void> {
    if (this.#hostile) throw new TypeError('stop is broken');
    if (this.#status.state === 'running') this.#status = { ...this.#status, state: 'stopped' };
    return Promise.resolve();
  }

  status(): ConnectorStatus {
    if (this.#hostile) throw new TypeError('status is broken');
    return this.#status;
  }
}

async function records(dir: string, stream: string): Promise<ArchiveRecord[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  const out: ArchiveRecord[] = [];
  try {
    for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
  } finally {
    await sink.close();
  }
  return out;
}

async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('account supervision', () => {
  it('restarts a throwing connector with backoff (recorded at attempts 1, 2, 4), parks it when logged out, retries it on reload, restarts a broken one, while the other account keeps capturing', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-supervise-'));
    dirs.push(dir);
    await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
    const file = path.join(dir, 'offchannel.config.json');
    const config = parseCaptureConfig(
      {
        state: { keyFile: './state.key' },
        // 400 ms first: the check right after start() must not race the first restart (start() takes
        // ~100–250 ms on a loaded 2-core machine; 100 ms with ±20 % jitter did).
        supervision: { restartInitialMs: 400, restartMaxMs: 4000 },
        connectors: [
          { channel: 'whatsapp', account: 'bob' },
          { channel: 'demo', account: 'alice', intervalMs: 5, repeat: true },
        ],
      },
      file,
    );
    const failures = [new Error('socket closed'), new OffchannelError('SIGNAL_SERVER_REFUSED', 'refused'), new Error('x'), new Error('y'), new Error('z')];
    const scripted = scriptedPackage([...failures, 'run', 'run', 'run']);
    const logger = createRecordingLogger();
    const runner = new CaptureRunner(config, logger, { load: async () => scripted.module, watchEveryMs: 20 });
    await runner.start();
    const account = (stream: string) => runner.snapshot().accounts.find((entry) => entry.stream === stream);
    expect(account('whatsapp:bob')).toMatchObject({ state: 'restarting', attempt: 1, code: 'UNKNOWN' });
    expect(account('demo:alice')?.state).toBe('running');

    await until(() => account('whatsapp:bob')?.state === 'running', 'the sixth start');
    expect(scripted.connectors).toHaveLength(6);
    scripted.connectors[5]?.logOut();
    await until(() => account('whatsapp:bob')?.state === 'logged-out', 'the account to be parked');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(scripted.connectors).toHaveLength(6); // parked: no retry until the operator acts

    const reload = await runner.reload(config);
    expect(reload).toEqual({ added: [], removed: [], restarted: [], retried: ['whatsapp:bob'], unchanged: 1 });
    await until(() => account('whatsapp:bob')?.state === 'running', 'the retry after reload');
    // A connector whose status() and stop() throw synchronously is restarted; nothing crashes.
    scripted.connectors[6]?.breakDown();
    await until(() => account('whatsapp:bob')?.state === 'running' && scripted.connectors.length === 8, 'the restart of a broken connector');
    const capturedBefore = account('demo:alice')?.captured ?? 0;
    await until(() => (account('demo:alice')?.captured ?? 0) > capturedBefore, 'the demo account to keep capturing');
    await runner.stop();

    const bob = (await records(path.join(dir, 'archive'), 'whatsapp:bob')).filter((record) => record.system?.event.startsWith('capture-'));
    expect(bob.map((record) => [record.system?.event, record.system?.fields?.attempt ?? '', record.system?.fields?.code ?? ''])).toEqual([
      ['capture-restarting', '1', 'UNKNOWN'],
      ['capture-restarting', '2', 'SIGNAL_SERVER_REFUSED'],
      ['capture-restarting', '4', 'UNKNOWN'],
      ['capture-started', '5', ''],
      ['capture-logged-out', '', 'CONNECTOR_LOGGED_OUT'],
      ['capture-started', '0', ''],
      ['capture-restarting', '1', 'CONNECTOR_FAILED'],
      ['capture-started', '1', ''],
      ['capture-stopped', '', ''],
    ]);
    const backoff = bob.slice(0, 3).map((record) => Number(record.system?.fields?.backoffMs));
    // 400 ms doubling per attempt (attempt 4: 3,200 ms), ±20 % jitter.
    [400, 800, 3200].forEach((base, index) => {
      expect(backoff[index]).toBeGreaterThanOrEqual(base * 0.8);
      expect(backoff[index]).toBeLessThanOrEqual(base * 1.2);
    });
    const alice = await records(path.join(dir, 'archive'), 'demo:alice');
    expect(alice.filter((record) => record.system?.event.startsWith('capture-')).map((record) => record.system?.event)).toEqual(['capture-started', 'capture-stopped']);
    const ticks = alice.flatMap((record) => (record.key.startsWith('message:tick-') ? [Number(record.key.slice(13))] : []));
    expect(ticks).toEqual(ticks.map((_, index) => index + 1));
    // Logs name the stream and codes, never the thrown messages.
    expect(JSON.stringify(logger.lines)).not.toContain('socket closed');
    expect(logger.lines.some((line) => JSON.stringify(line).includes('connector stop failed'))).toBe(true);
  });

  it('reload restarts a changed entry, and refuses a config with a bad entry as a whole', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-reload-'));
    dirs.push(dir);
    const file = path.join(dir, 'offchannel.config.json');
    const config = (connectors: unknown[]) => parseCaptureConfig({ state: { unencrypted: true }, connectors }, file);
    const alice = { channel: 'demo', account: 'alice', intervalMs: 5, repeat: true };
    const bob = { channel: 'demo', account: 'bob', intervalMs: 5, repeat: true };
    const runner = new CaptureRunner(config([alice, bob]), createRecordingLogger(), { watchEveryMs: 20 });
    await runner.start();
    await expect(runner.reload(config([alice, { ...bob, intervalMs: 'fast' }]))).rejects.toThrow(/config\.connectors\[1\]\.intervalMs must be a whole number/);
    await expect(runner.reload(config([{ channel: 'whatsapp', account: 'carol', bogus: true }]))).rejects.toThrow(/config\.connectors\[0\]\.bogus is not a WhatsApp connector setting/);
    expect(runner.snapshot().accounts.map((account) => [account.stream, account.state])).toEqual([['demo:alice', 'running'], ['demo:bob', 'running']]);
    expect(await runner.reload(config([alice, { ...bob, intervalMs: 6 }]))).toEqual({ added: [], removed: [], restarted: ['demo:bob'], retried: [], unchanged: 1 });
    await runner.stop();
    // Two supervisors of one stream in one run: every state change recorded, none taken for a duplicate.
    const bobStates = (await records(path.join(dir, 'archive'), 'demo:bob')).filter((record) => record.system?.event.startsWith('capture-'));
    expect(bobStates.map((record) => [record.system?.event, record.system?.fields?.reason ?? ''])).toEqual([
      ['capture-started', ''],
      ['capture-stopped', 'config-changed'],
      ['capture-started', ''],
      ['capture-stopped', 'shutdown'],
    ]);
    expect((await records(path.join(dir, 'archive'), 'demo:alice')).filter((record) => record.system?.event === 'capture-stopped')).toHaveLength(1);
  });

  it('classifies by code: not linked and broken entries park, another writer is "claimed elsewhere", the rest retry', () => {
    expect(classifyFailure(new OffchannelError('WHATSAPP_NOT_LINKED', ''))).toEqual({ state: 'not-linked', code: 'WHATSAPP_NOT_LINKED' });
    expect(classifyFailure(new OffchannelError('TELEGRAM_NOT_LINKED', '')).state).toBe('not-linked');
    expect(classifyFailure(new OffchannelError('SINK_CONFLICT', '')).state).toBe('claimed-elsewhere');
    expect(classifyFailure(new OffchannelError('STATE_KEY_WRONG', '')).state).toBe('failed');
    expect(classifyFailure(new OffchannelError('SINK_UNAVAILABLE', '')).state).toBe('restarting');
    // A pruned spool and its archive of record that differ: like a corrupt archive, not retried.
    expect(classifyFailure(new OffchannelError('PRUNED_SEAM_MISMATCH', '')).state).toBe('failed');
    expect(classifyFailure(new OffchannelError('PRUNED_READ_UNAVAILABLE', '', { disposition: 'retryable' })).state).toBe('restarting');
    expect(classifyFailure(new TypeError('undefined is not a function'))).toEqual({ state: 'restarting', code: 'UNKNOWN' });
    expect(classifyFailure('a string')).toEqual({ state: 'restarting', code: 'UNKNOWN' });
  });
});
