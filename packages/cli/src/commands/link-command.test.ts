import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONNECTOR_SPEC_VERSION, type ConnectorContext, type StateStore, generateStateKey, loadStateKey, openStateStore } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { parseCaptureConfig } from '../capture/capture-config.ts';
import { CaptureRunner, readConfigJson } from '../capture/capture-runner.ts';
import { runCli } from '../testing/run-cli.ts';
import { linkCommand } from './link-command.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function workspace(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-link-'));
  dirs.push(dir);
  await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'offchannel.config.json'), JSON.stringify({ state: { keyFile: './state.key' }, connectors: [{ channel: 'whatsapp', account: 'alice' }] }), { mode: 0o600 });
  return dir;
}

describe('offchannel link', () => {
  it('usage and config errors name what is wrong', async () => {
    const dir = await workspace();
    expect((await runCli(['link'], dir)).stderr).toMatch(/link needs one channel/);
    expect((await runCli(['link', 'fax', '--account', 'a'], dir)).code).toBe(2);
    expect((await runCli(['link', 'whatsapp'], dir)).stderr).toMatch(/--account <name> is required/);
    expect((await runCli(['link', 'signal', '--account', 'alice', '--phone', '123'], dir)).stderr).toMatch(/--phone applies to whatsapp only/);
    const missing = await runCli(['link', 'signal', '--account', 'alice'], dir);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/config\.connectors has no signal connector for account "alice"/);
  });

  it('hands the connector the same encrypted state scope that capture gives it, and shows the QR code', async () => {
    const dir = await workspace();
    let stdout = '';
    const seen: { state?: StateStore; phone?: unknown } = {};
    const fakeWhatsApp = {
      parseWhatsAppConnectorConfig: (entry: { account: string }) => ({ account: entry.account }),
      linkWhatsApp: async (options: { state: StateStore; io: { showQr(text: string, art: string): void }; phoneNumber?: string }) => {
        seen.state = options.state;
        seen.phone = options.phoneNumber;
        options.io.showQr('2@payload', '▀▄ QR ▄▀');
        await options.state.set('creds', new TextEncoder().encode('linked'));
      },
    };
    const code = await linkCommand(['whatsapp', '--account', 'alice', '--phone', '+1 555 0100'], { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: () => true }, env: {}, cwd: dir, signal: new AbortController().signal }, async (name) => {
      expect(name).toBe('@offchannel/whatsapp');
      return fakeWhatsApp;
    });
    expect(code).toBe(0);
    expect(stdout).toContain('▀▄ QR ▄▀');
    expect(stdout).toMatch(/linked: whatsapp:alice/);
    expect(seen.phone).toBe('+1 555 0100');
    const root = await openStateStore({ dir: path.join(dir, 'state'), key: (await loadStateKey({ file: path.join(dir, 'state.key') })) as Uint8Array });
    expect(new TextDecoder().decode(await root.scope('whatsapp:alice').get('creds'))).toBe('linked');
  });

  it('stores the session where offchannel capture hands it to the connector', async () => {
    const dir = await workspace();
    await writeFile(path.join(dir, 'offchannel.config.json'), JSON.stringify({ archive: { dir: './archive' }, state: { keyFile: './state.key' }, connectors: [{ channel: 'whatsapp', account: 'alice' }] }));
    let seen: string | undefined;
    const fakeWhatsApp = {
      parseWhatsAppConnectorConfig: (entry: { account: string }) => ({ account: entry.account }),
      linkWhatsApp: async (options: { state: StateStore }) => {
        await options.state.set('creds', new TextEncoder().encode('linked'));
      },
      createWhatsAppConnector: (options: { account: string }) => ({
        specVersion: CONNECTOR_SPEC_VERSION,
        channel: 'whatsapp',
        account: options.account,
        source: { package: 'fake-whatsapp', version: '0.0.0' },
        status: () => ({ state: 'running', since: new Date().toISOString(), captured: 0, duplicates: 0, errors: 0 }),
        start: async (ctx: ConnectorContext) => {
          const creds = await ctx.state.get('creds');
          seen = creds && new TextDecoder().decode(creds);
        },
        stop: async () => undefined,
      }),
    };
    const io = { stdout: { write: () => true }, stderr: { write: () => true }, env: {}, cwd: dir, signal: new AbortController().signal };
    expect(await linkCommand(['whatsapp', '--account', 'alice'], io, async () => fakeWhatsApp)).toBe(0);
    const file = path.join(dir, 'offchannel.config.json');
    const runner = new CaptureRunner(parseCaptureConfig(await readConfigJson(file), file), createRecordingLogger(), { load: async () => fakeWhatsApp });
    await runner.start();
    await runner.stop();
    expect(seen).toBe('linked');
  });

  it('refuses a config file that group or others can access, whatever it holds', async () => {
    const dir = await workspace();
    const file = path.join(dir, 'offchannel.config.json');
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o620]) {
      await chmod(file, mode);
      const shared = await runCli(['link', 'whatsapp', '--account', 'alice'], dir);
      expect(shared.code).toBe(2);
      expect(shared.stderr).toMatch(/offchannel\.config\.json can be read or changed by group or others .*run chmod 600 on it/);
      await expect(readConfigJson(file)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    }
    await chmod(file, 0o600);
    await expect(readConfigJson(file)).resolves.toMatchObject({ connectors: [{ channel: 'whatsapp' }] });
    await chmod(file, 0o400);
    await expect(readConfigJson(file)).resolves.toMatchObject({ connectors: [{ channel: 'whatsapp' }] });
  });

  it('refuses a literal Telegram secret or a shared secret file before linking, never echoing the secret', async () => {
    const dir = await workspace();
    const file = path.join(dir, 'offchannel.config.json');
    const hash = '5f3c0ffee5f3c0ffee5f3c0ffee5f3c0';
    const entry = { channel: 'telegram', account: 'desk-42', apiId: 123 };
    await writeFile(file, JSON.stringify({ state: { keyFile: './state.key' }, connectors: [{ ...entry, apiHash: hash }] }));
    const literal = await runCli(['link', 'telegram', '--account', 'desk-42'], dir);
    expect(literal.code).toBe(2);
    expect(literal.stderr).toContain('config.connectors[0].apiHash is a secret and is not accepted in a config file');
    expect(literal.stderr).toContain('"apiHashFile": "<path>"');
    expect(literal.stdout + literal.stderr).not.toContain(hash);

    await writeFile(path.join(dir, 'api-hash'), hash, { mode: 0o644 });
    await chmod(path.join(dir, 'api-hash'), 0o644);
    await writeFile(file, JSON.stringify({ state: { keyFile: './state.key' }, connectors: [{ ...entry, apiHashFile: './api-hash' }] }));
    const shared = await runCli(['link', 'telegram', '--account', 'desk-42'], dir);
    expect(shared.code).toBe(2);
    expect(shared.stderr).toMatch(/config\.connectors\[0\]\.apiHashFile names a file that group or others can access; run chmod 600/);
    expect(shared.stdout + shared.stderr).not.toContain(hash);
  });
});
