import { describe, expect, it } from 'vitest';
import { ConfigError, OffchannelError } from '@offchannel/core';
import { parseCaptureConfig } from './capture-config.ts';
import { createConnector, loadConnectorPackage } from './connector-registry.ts';

const base = { state: { keyFile: 'state.key' }, connectors: [{ channel: 'demo', account: 'alice@firm.example' }] };

function problem(value: unknown): string {
  try {
    parseCaptureConfig(value, '/etc/offchannel/offchannel.config.json');
  } catch (error) {
    if (error instanceof ConfigError) return `${error.key}: ${error.message}`;
    throw error;
  }
  return 'accepted';
}

describe('capture config', () => {
  it('accepts a minimal config with defaults resolved against the config directory', () => {
    const config = parseCaptureConfig(base, '/etc/offchannel/offchannel.config.json');
    expect(config.archive).toEqual({ kind: 'dir', dir: '/etc/offchannel/archive' });
    expect(config.state).toEqual({ dir: '/etc/offchannel/state', keyFile: '/etc/offchannel/state.key', unencrypted: false });
    expect(config.log.level).toBe('info');
    expect(config.connectors[0]).toMatchObject({ channel: 'demo', account: 'alice@firm.example', key: 'config.connectors[0]', options: { account: 'alice@firm.example' }, baseDir: '/etc/offchannel' });
  });

  it("resolves a connector's relative paths against the config directory, not the working directory", async () => {
    const config = parseCaptureConfig({ ...base, connectors: [{ channel: 'imessage', account: 'alice', chatDb: './mirror/chat.db', attachmentsDir: '/srv/attachments' }] }, '/etc/offchannel/offchannel.config.json');
    const entry = config.connectors[0];
    if (!entry) throw new Error('no connector entry');
    const { options } = await loadConnectorPackage(entry, (name) => import(name));
    expect(options).toMatchObject({ chatDb: '/etc/offchannel/mirror/chat.db', attachmentsDir: '/srv/attachments' });
  });

  it('accepts an s3 archive with a spool', () => {
    const config = parseCaptureConfig({ ...base, archive: { url: 's3://bucket/comms', endpoint: 'http://127.0.0.1:7480', forcePathStyle: true, retentionYears: 7 } }, '/srv/c.json');
    expect(config.archive).toEqual({ kind: 's3', url: 's3://bucket/comms', spool: '/srv/spool', endpoint: 'http://127.0.0.1:7480', forcePathStyle: true, retentionYears: 7 });
  });

  it('names the bad key in every error and never echoes values', () => {
    expect(problem({ ...base, archiv: './a' })).toBe('config.archiv: config.archiv is not a known setting; known here: $schema, archive, state, signing, policy, log, status, supervision, connectors, delivery, coverage');
    expect(problem({ ...base, coverage: { attestEveryMs: 500 } })).toMatch(/^config\.coverage\.attestEveryMs: .*0 \(off\) or at least 1000/);
    expect(problem({ ...base, coverage: { host: 'Alice Smith' } })).toMatch(/^config\.coverage\.host: .*never a person/);
    expect(problem({ ...base, coverage: { host: 'Alice Smith' } })).not.toContain('Alice');
    expect(problem({ ...base, coverage: { host: '../x' } })).toMatch(/^config\.coverage\.host: /);
    expect(problem({ ...base, archive: { dir: './a', endpoint: 'http://x' } })).toMatch(/^config\.archive\.endpoint: .* applies only to an s3:\/\/ archive/);
    expect(problem({ ...base, archive: { url: 'https://bucket' } })).toMatch(/^config\.archive\.url: .*must be s3:\/\/bucket/);
    expect(problem({ ...base, state: {} })).toMatch(/^config\.state\.keyFile: .*is required: connector sessions are secrets/);
    expect(problem({ ...base, signing: { keyFile: 'k', everyRecords: 0 } })).toMatch(/^config\.signing\.everyRecords: .*whole number from 1/);
    expect(problem({ ...base, log: { level: 'loud' } })).toMatch(/^config\.log\.level: .*must be one of fatal/);
    expect(problem({ ...base, connectors: [] })).toMatch(/^config\.connectors: .*non-empty list/);
    expect(problem({ ...base, connectors: [{ channel: 'demo' }] })).toMatch(/^config\.connectors\[0\]\.account: .*is required/);
    expect(problem({ ...base, connectors: [{ channel: 'Demo!', account: 'a' }] })).toMatch(/^config\.connectors\[0\]\.channel: /);
    expect(problem({ ...base, connectors: [{ channel: 'demo', account: 'a' }, { channel: 'demo', account: 'a' }] })).toMatch(/^config\.connectors\[1\]: .*repeats demo:a/);
    expect(problem({ ...base, connectors: [{ channel: 'demo', account: 'a', policy: { exclude: { contacts: ['+1555'] } } }] })).toMatch(/^config\.policy\.version: .*is required when any connector excludes/);
    expect(problem({ ...base, policy: { version: 'p@1' }, connectors: [{ channel: 'demo', account: 'a', policy: { exclude: { contacts: ['+1555'] } } }] })).toMatch(/^config\.policy\.identifierKeyFile: .*is required when any connector excludes.*offchannel keygen --identifier-key/);
    expect(problem({ ...base, connectors: [{ channel: 'demo', account: 'a', policy: { exclude: { contacts: [5] } } }] })).toMatch(/^config\.connectors\[0\]\.policy\.exclude\.contacts\[0\]: /);
    expect(problem({ ...base, connectors: [{ channel: 'demo', account: 'a', policy: { only: {} } }] })).toMatch(/^config\.connectors\[0\]\.policy\.only: .*at least one/);
    expect(problem({ ...base, state: { keyFile: 'hunter2-secret-path' }, signing: { keyFile: 'k', tsaUrl: 'ftp://secret-token@tsa' } })).not.toContain('secret-token');
  });

  it('connector settings are checked by the connector: unknown channels and packages are named', async () => {
    const config = (connectors: unknown[]): ReturnType<typeof parseCaptureConfig> => parseCaptureConfig({ ...base, connectors }, '/c.json');
    const [demo] = config([{ channel: 'demo', account: 'a', intervalMs: -1 }]).connectors;
    await expect(createConnector(demo as never)).rejects.toMatchObject({ code: 'CONFIG_INVALID', key: 'config.connectors[0].intervalMs' });
    const [unknown] = config([{ channel: 'fax', account: 'a' }]).connectors;
    await expect(createConnector(unknown as never)).rejects.toMatchObject({ key: 'config.connectors[0].channel', message: expect.stringMatching(/"fax" is not a known channel/) as string });
    const [missing] = config([{ channel: 'telegram', account: 'a' }]).connectors;
    const error = await createConnector(missing as never, () => Promise.reject(new Error('Cannot find package'))).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/needs the package @offchannel\/telegram, which is not installed/);
  });

  it('resolves the identifier key against the config directory', () => {
    const config = parseCaptureConfig({ ...base, policy: { version: 'p@1', identifierKeyFile: 'keys/id.key' }, connectors: [{ channel: 'demo', account: 'a', policy: { exclude: { contacts: ['+1555'] } } }] }, '/etc/offchannel/c.json');
    expect(config.policy).toEqual({ version: 'p@1', reportEveryMs: 3_600_000, identifierKeyFile: '/etc/offchannel/keys/id.key' });
  });

  it('refuses URLs that carry credentials, never echoing them', () => {
    const tsa = problem({ ...base, signing: { keyFile: 'k', tsaUrl: 'https://user:hunter2-pass@tsa.example/ts' } });
    expect(tsa).toMatch(/^config\.signing\.tsaUrl: .*must not carry a user name or password/);
    const endpoint = problem({ ...base, archive: { url: 's3://bucket', endpoint: 'http://AKIAEXAMPLE:hunter2-pass@127.0.0.1:7480' } });
    expect(endpoint).toMatch(/^config\.archive\.endpoint: .*must not carry a user name or password/);
    expect(problem({ ...base, signing: { keyFile: 'k', tsaUrl: 'https://token-only@tsa.example' } })).toMatch(/must not carry/);
    for (const message of [tsa, endpoint]) {
      expect(message).not.toContain('hunter2');
      expect(message).not.toContain('AKIAEXAMPLE');
    }
  });
});
