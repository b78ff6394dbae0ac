/** The capture runner with a `metrics` section: when the listener opens, what it serves, and when it does not. */
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, generateStateKey } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { parseCaptureConfig } from './capture-config.ts';
import { CaptureRunner } from './capture-runner.ts';
import { runCli } from '../testing/run-cli.ts';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const TOKEN = '5e1f0c2b9a8d7e6f5a4b3c2d1e0f9a8b';
const STREAM = 'demo:alice@firm.example';
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function workspace(listen = '127.0.0.1:0'): Promise<{ dir: string; file: string; config: ReturnType<typeof parseCaptureConfig> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-runner-metrics-'));
  dirs.push(dir);
  await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'metrics.token'), `${TOKEN}\n`, { mode: 0o600 });
  const body = {
    archive: { dir: './archive' },
    state: { dir: './state', keyFile: './state.key' },
    metrics: { listen, tokenFile: './metrics.token' },
    connectors: [{ channel: 'demo', account: 'alice@firm.example', intervalMs: 0 }],
  };
  const file = path.join(dir, 'offchannel.config.json');
  await writeFile(file, JSON.stringify(body), { mode: 0o600 });
  return { dir, file, config: parseCaptureConfig(body, file) };
}

async function scrape(address: { host: string; port: number }): Promise<string> {
  const response = await fetch(`http://${address.host}:${address.port}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(response.status).toBe(200);
  return response.text();
}

describe('capture runner metrics', () => {
  it('serves the endpoint while running, feeds the attestation hook, and closes it on stop', async () => {
    const { config } = await workspace();
    const runner = new CaptureRunner(config, createRecordingLogger());
    await runner.start();
    try {
      const address = runner.metricsAddress;
      if (!address) throw new Error('no metrics endpoint');
      expect(address.host).toBe('127.0.0.1');
      let text = await scrape(address);
      expect(text).toContain(`offchannel_seconds_since_last_attestation{stream="${STREAM}"} +Inf`);
      runner.noteAttestation(STREAM, new Date(Date.now() - 2000));
      text = await scrape(address);
      const age = Number(new RegExp(`offchannel_seconds_since_last_attestation\\{stream="${STREAM}"\\} (\\S+)`).exec(text)?.[1]);
      expect(age).toBeGreaterThanOrEqual(2);
      expect(age).toBeLessThan(60);
      await runner.stop();
      await expect(fetch(`http://${address.host}:${address.port}/metrics`)).rejects.toThrow();
      expect(runner.metricsAddress).toBeUndefined();
    } finally {
      await runner.stop();
    }
  });

  it('never opens it for one-shot commands (strict: reconcile)', async () => {
    const { config } = await workspace();
    const runner = new CaptureRunner(config, createRecordingLogger(), { strict: true });
    await runner.start();
    expect(runner.metricsAddress).toBeUndefined();
    runner.noteAttestation(STREAM, new Date());
    await runner.stop();
  });

  it('refuses to start, before opening the archive, with a token file others can read', async () => {
    const { dir, config } = await workspace();
    await chmod(path.join(dir, 'metrics.token'), 0o644);
    const error = await new CaptureRunner(config, createRecordingLogger()).start().then(() => undefined, (caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/chmod 600/);
    expect((error as Error).message).not.toContain(TOKEN);
    await expect(stat(path.join(dir, 'archive'))).rejects.toThrow(/ENOENT/);
  });

  it('fails the start with METRICS_LISTEN_FAILED when the port is taken, and leaves the archive closed', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    try {
      const port = (holder.address() as { port: number }).port;
      const { config } = await workspace(`127.0.0.1:${port}`);
      const error = await new CaptureRunner(config, createRecordingLogger()).start().then(() => undefined, (caught: unknown) => caught);
      expect((error as { code?: string }).code).toBe('METRICS_LISTEN_FAILED');
      // The stream's writer lock was released: a second runner on another port can capture.
      const { metrics: _metrics, ...withoutMetrics } = config;
      const next = new CaptureRunner(withoutMetrics, createRecordingLogger());
      await next.start();
      expect(next.snapshot().accounts.map((account) => account.state)).toEqual(['running']);
      await next.stop();
    } finally {
      await new Promise<void>((resolve) => holder.close(() => { resolve(); }));
    }
  });

  it('capture --check names the endpoint and checks the token file', async () => {
    const { dir, file } = await workspace('[::1]:9464');
    const checked = await runCli(['capture', '--check', '--config', file]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toContain(`metrics: [::1]:9464 (GET /metrics, bearer token from ${path.join(dir, 'metrics.token')})`);
    expect(checked.stdout).not.toContain(TOKEN);
    await chmod(path.join(dir, 'metrics.token'), 0o604);
    const refused = await runCli(['capture', '--check', '--config', file]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/config\.metrics\.tokenFile.*chmod 600/);
    expect(refused.stderr + refused.stdout).not.toContain(TOKEN);
  });
});
