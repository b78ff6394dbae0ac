import { chmod, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '@offchannel/core';
import { parseCaptureConfig } from './capture-config.ts';
import { isLoopback, parseMetricsConfig, readMetricsToken } from './metrics-config.ts';

const at = (relative: string): string => path.resolve('/etc/offchannel', relative);
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function refused(value: unknown): ConfigError {
  try {
    parseMetricsConfig(value, at);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('accepted');
}

describe('config.metrics', () => {
  it('is off unless configured, and opens loopback addresses with a token file', () => {
    expect(parseMetricsConfig(undefined, at)).toBeUndefined();
    expect(parseMetricsConfig({ listen: '127.0.0.1:9464', tokenFile: './metrics.token' }, at)).toEqual({ host: '127.0.0.1', port: 9464, tokenFile: '/etc/offchannel/metrics.token', allowNonLoopback: false });
    expect(parseMetricsConfig({ listen: '[::1]:0', tokenFile: 'metrics.token' }, at)).toMatchObject({ host: '::1', port: 0 });
    expect(parseMetricsConfig({ listen: '127.8.9.10:1', tokenFile: '/run/secrets/metrics-token' }, at)).toMatchObject({ host: '127.8.9.10', port: 1 });
    const config = parseCaptureConfig({ state: { unencrypted: true }, connectors: [{ channel: 'demo', account: 'alice' }] }, '/etc/offchannel/offchannel.config.json');
    expect(config.metrics).toBeUndefined();
  });

  it('refuses a non-loopback address unless allowNonLoopback is set', () => {
    for (const listen of ['0.0.0.0:9464', '10.0.0.5:9464', '[::]:9464', '[fe80::1]:9464', '[::ffff:10.0.0.1]:9464']) {
      expect(refused({ listen, tokenFile: './t' }).message).toMatch(/not a loopback address.*allowNonLoopback/);
      expect(parseMetricsConfig({ listen, tokenFile: './t', allowNonLoopback: true }, at)?.allowNonLoopback).toBe(true);
    }
    expect(isLoopback('::ffff:127.0.0.1')).toBe(true);
    expect(isLoopback('0:0:0:0:0:0:0:1')).toBe(true);
    expect(isLoopback('128.0.0.1')).toBe(false);
  });

  it('refuses host names, bad ports, missing tokens, unknown keys and a token pasted in place of its file', () => {
    for (const listen of ['localhost:9464', 'metrics.firm.example:9464', '127.0.0.1', '127.0.0.1:65536', '127.0.0.1:-1', ':9464', '::1:9464', '127.0.0.1:9464 ', '[127.0.0.1]:9464x']) {
      expect(refused({ listen, tokenFile: './t' }).message, listen).toMatch(/config\.metrics\.listen/);
    }
    expect(refused({ listen: '127.0.0.1:9464' }).message).toMatch(/tokenFile is required/);
    expect(refused({ listen: '127.0.0.1:9464', tokenFile: './t', token: 'x' }).message).toMatch(/config\.metrics\.token is not a known setting/);
    expect(refused({ listen: '127.0.0.1:9464', tokenFile: './t', allowNonLoopback: 'yes' }).message).toMatch(/true or false/);
    const pasted = 'f3a9c1d07be24e5a9d81c6b0e2f4a7c3d5e6f708192a3b4c';
    const error = refused({ listen: '127.0.0.1:9464', tokenFile: pasted });
    expect(error.message).toMatch(/must name a file/);
    expect(error.message).not.toContain(pasted);
  });

  it('reads the token from a private file (trimmed) and refuses readable, empty, short, multi-word or oversized ones without printing them', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-metrics-token-'));
    dirs.push(dir);
    const file = path.join(dir, 'metrics.token');
    const token = 'c0ffee'.repeat(8);
    await writeFile(file, `\n${token}\n`, { mode: 0o600 });
    expect(await readMetricsToken(file)).toBe(token);
    await chmod(file, 0o400);
    expect(await readMetricsToken(file)).toBe(token);
    await chmod(file, 0o640);
    await expect(readMetricsToken(file)).rejects.toThrow(/chmod 600/);
    for (const bad of ['', 'short-token', `${token} ${token}`, `${token}\u00e9`, 'x'.repeat(5000)]) {
      await writeFile(file, bad, { mode: 0o600 });
      await chmod(file, 0o600);
      const error = await readMetricsToken(file).then(() => undefined, (caught: unknown) => caught as Error);
      expect(error, JSON.stringify(bad.slice(0, 20))).toBeInstanceOf(ConfigError);
      if (bad.length > 0) expect(error?.message).not.toContain(bad.slice(0, 16));
    }
    await expect(readMetricsToken(path.join(dir, 'missing'))).rejects.toThrow(/cannot read .*openssl rand -hex 32/);
    await expect(readMetricsToken(dir)).rejects.toThrow(/not a regular file/);
    await writeFile(file, token, { mode: 0o600 });
    const link = path.join(dir, 'link.token');
    await symlink(file, link);
    expect(await readMetricsToken(link)).toBe(token);
  });
});
