import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, Recorder, createConnectorContext, decodeRecord, openStateStore } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import { DemoConnector } from './demo-connector.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('demo connector loggedOutWhile', () => {
  it.each([[''], [5], [true], ['bad\0path']])('refuses %j as a control file with a ConfigError naming the key', (value) => {
    expect(() => DemoConnector.fromConfig({ account: 'alice', loggedOutWhile: value }, 'connectors[0]')).toThrow(ConfigError);
    expect(() => DemoConnector.fromConfig({ account: 'alice', loggedOutWhile: value }, 'connectors[0]')).toThrow(/connectors\[0\]\.loggedOutWhile/);
  });

  it('logs out while the file (relative to the config directory) exists, recording connector-logged-out', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-demo-logout-'));
    dirs.push(dir);
    await writeFile(path.join(dir, 'logged-out'), '');
    const connector = DemoConnector.fromConfig({ account: 'alice', intervalMs: 1, repeat: true, loggedOutWhile: './logged-out' }, 'connectors[0]', dir);
    const sink = createMemorySink();
    const recorder = new Recorder({ sink, allowVolatileSink: true });
    const state = await openStateStore({ dir: path.join(dir, 'state'), unencrypted: true });
    const ctx = createConnectorContext({ recorder, connector, state, signal: new AbortController().signal, recordTransitions: true });
    await connector.start(ctx);
    const end = Date.now() + 30_000;
    while (connector.status().state !== 'logged-out' && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(connector.status().state).toBe('logged-out');
    await connector.stop();
    await recorder.close();
    const events: string[] = [];
    for await (const stored of sink.read('demo:alice')) events.push(decodeRecord(stored.bytes).record.system?.event ?? '');
    expect(events).toEqual(['connector-logged-out']);
  }, 60_000);
});
