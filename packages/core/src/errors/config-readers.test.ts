import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from './config-error.ts';
import { MAX_SECRET_FILE_BYTES, configObject, configSecret, optionalConfigInteger } from './config-readers.ts';

function failure(read: () => unknown): ConfigError {
  try {
    read();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('connector config readers', () => {
  it('accept what is allowed and spread optional integers', () => {
    const fields = configObject({ a: 1, b: 2 }, 'connectors[0]', ['a', 'b', 'c'], 'an Acme setting');
    expect({ ...optionalConfigInteger(fields, 'a', 'connectors[0].a', 0, 5), ...optionalConfigInteger(fields, 'c', 'connectors[0].c', 0, 5) }).toEqual({ a: 1 });
  });

  it('name the offending key and never echo the value', () => {
    expect(failure(() => configObject(['x'], 'connectors[0]', [], 'an Acme setting')).message).toBe('connectors[0] must be an object.');
    const unknown = failure(() => configObject({ token: 'secret-value' }, 'connectors[0]', ['a'], 'an Acme setting'));
    expect(unknown.key).toBe('connectors[0].token');
    expect(unknown.message).toBe('connectors[0].token is not an Acme setting (allowed: a).');
    const bad = failure(() => optionalConfigInteger({ n: 'secret-value' }, 'n', 'connectors[0].n', 1, 9));
    expect(bad.message).toBe('connectors[0].n must be an integer from 1 to 9.');
    expect(failure(() => optionalConfigInteger({ n: 10 }, 'n', 'connectors[0].n', 1, 9)).key).toBe('connectors[0].n');
    expect(failure(() => optionalConfigInteger({ n: 1.5 }, 'n', 'connectors[0].n', 1, 9)).key).toBe('connectors[0].n');
  });
});

const SECRET = 'tok-0123456789-SECRET-value';
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function folder(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-secret-'));
  dirs.push(dir);
  return dir;
}

describe('configSecret', () => {
  it('reads a secret from a private file (relative to baseDir) or from the environment, trimmed', async () => {
    const dir = await folder();
    await writeFile(path.join(dir, 'token'), `${SECRET}\n`, { mode: 0o600 });
    expect(configSecret({ tokenFile: './token' }, 'token', 'connectors[0]', { baseDir: dir })).toBe(SECRET);
    await chmod(path.join(dir, 'token'), 0o400);
    expect(configSecret({ tokenFile: path.join(dir, 'token') }, 'token', 'connectors[0]')).toBe(SECRET);
    expect(configSecret({ tokenEnv: 'BOT_TOKEN' }, 'token', 'connectors[0]', { env: { BOT_TOKEN: ` ${SECRET}\n` } })).toBe(SECRET);
    expect(configSecret({}, 'token', 'connectors[0]', { env: {} })).toBeUndefined();
  });

  it('refuses a literal secret, naming the key and saying what to do, without echoing it', () => {
    const error = failure(() => configSecret({ token: SECRET }, 'token', 'connectors[0]'));
    expect(error.key).toBe('connectors[0].token');
    expect(error.message).toMatch(/is a secret and is not accepted in a config file.*"tokenFile".*"tokenEnv"/);
    expect(error.message).not.toContain(SECRET);
    // Even a malformed literal (a number, an empty string) is refused as a literal.
    expect(failure(() => configSecret({ token: 42 }, 'token', 'c')).key).toBe('c.token');
    expect(failure(() => configSecret({ token: '' }, 'token', 'c')).key).toBe('c.token');
  });

  it('refuses a secret file that group or others can access, of every such mode', async () => {
    const dir = await folder();
    const file = path.join(dir, 'token');
    await writeFile(file, SECRET, { mode: 0o600 });
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o610]) {
      await chmod(file, mode);
      const error = failure(() => configSecret({ tokenFile: file }, 'token', 'connectors[1]'));
      expect(error.key).toBe('connectors[1].tokenFile');
      expect(error.message).toMatch(/group or others can access; run chmod 600/);
      expect(error.message).not.toContain(SECRET);
      expect(error.message).not.toContain(dir);
    }
    // A symlink to a shared file is judged by the file it points to.
    await chmod(file, 0o644);
    await symlink(file, path.join(dir, 'link'));
    expect(failure(() => configSecret({ tokenFile: 'link' }, 'token', 'c', { baseDir: dir })).message).toMatch(/chmod 600/);
  });

  it('refuses what is not a small regular file, without hanging on a FIFO', { timeout: 60_000 }, async () => {
    const dir = await folder();
    await mkdir(path.join(dir, 'directory'), { mode: 0o700 });
    expect(failure(() => configSecret({ tokenFile: 'directory' }, 'token', 'c', { baseDir: dir })).message).toMatch(/regular file/);
    execFileSync('mkfifo', ['-m', '600', path.join(dir, 'fifo')]);
    expect(failure(() => configSecret({ tokenFile: 'fifo' }, 'token', 'c', { baseDir: dir })).message).toMatch(/regular file/);
    expect(failure(() => configSecret({ tokenFile: 'missing' }, 'token', 'c', { baseDir: dir })).message).toMatch(/cannot be read \(ENOENT\)/);
    await writeFile(path.join(dir, 'big'), 'x'.repeat(MAX_SECRET_FILE_BYTES + 1), { mode: 0o600 });
    expect(failure(() => configSecret({ tokenFile: 'big' }, 'token', 'c', { baseDir: dir })).message).toMatch(/over 65536 bytes/);
    await writeFile(path.join(dir, 'empty'), '\n', { mode: 0o600 });
    expect(failure(() => configSecret({ tokenFile: 'empty' }, 'token', 'c', { baseDir: dir })).message).toMatch(/empty file/);
    expect(failure(() => configSecret({ tokenFile: 7 }, 'token', 'c')).key).toBe('c.tokenFile');
  });

  it('checks the environment route and the shape of the secret, naming the reference that held it', async () => {
    const dir = await folder();
    await writeFile(path.join(dir, 'token'), 'not-hex', { mode: 0o600 });
    expect(failure(() => configSecret({ tokenEnv: 'NOPE' }, 'token', 'c', { env: {} })).message).toMatch(/c\.tokenEnv names an environment variable that is not set/);
    expect(failure(() => configSecret({ tokenEnv: 'EMPTY' }, 'token', 'c', { env: { EMPTY: ' ' } })).key).toBe('c.tokenEnv');
    expect(failure(() => configSecret({ tokenEnv: 'BAD NAME' }, 'token', 'c', { env: {} })).key).toBe('c.tokenEnv');
    expect(failure(() => configSecret({ tokenEnv: 'A', tokenFile: 'token' }, 'token', 'c', { env: { A: 'x' } })).message).toMatch(/cannot be set together with tokenFile/);
    const hex = { test: (value: string) => /^[0-9a-f]{32}$/.test(value), expected: 'a 32-character hexadecimal hash' };
    const fromFile = failure(() => configSecret({ tokenFile: 'token' }, 'token', 'c', { baseDir: dir }, hex));
    expect([fromFile.key, fromFile.message]).toEqual(['c.tokenFile', 'c.tokenFile does not hold a 32-character hexadecimal hash.']);
    const fromEnv = failure(() => configSecret({ tokenEnv: 'T' }, 'token', 'c', { env: { T: SECRET } }, hex));
    expect(fromEnv.key).toBe('c.tokenEnv');
    expect(fromEnv.message).not.toContain(SECRET);
  });
});
