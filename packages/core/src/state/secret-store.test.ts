import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StateStoreError } from '../errors/state-errors.ts';
import { mkfifo, settleOrHang } from '../testing/fifo.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { openStateStore } from './secret-store.ts';
import { generateStateKey, loadStateKey, parseStateKey } from './state-key.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let dir: string;
const key = randomBytes(32);

beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-state-')), 'state');
});
afterEach(async () => {
  await rm(path.dirname(dir), { recursive: true, force: true });
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toSatisfy((error: unknown) => error instanceof StateStoreError && error.code === code);
}

describe('openStateStore', () => {
  it('refuses to open without a key unless told the store is unencrypted', async () => {
    await expectCode(openStateStore({ dir }), 'STATE_KEY_MISSING');
    await expectCode(openStateStore({ dir, key: new Uint8Array(16) }), 'STATE_KEY_INVALID');
    const plain = await openStateStore({ dir, unencrypted: true });
    await plain.set('cursor', new Uint8Array([1]));
    expect(await plain.get('cursor')).toEqual(new Uint8Array([1]));
  });

  it('stores, lists, scopes and deletes values', async () => {
    const store = await openStateStore({ dir, key });
    const alice = store.scope('whatsapp:alice');
    const bob = store.scope('whatsapp:bob');
    await alice.setJson('creds', { me: 'alice', n: 1 });
    await bob.setJson('creds', { me: 'bob' });
    await alice.set('key-1', new Uint8Array([1, 2, 3]));
    expect(await alice.getJson('creds')).toEqual({ me: 'alice', n: 1 });
    expect(await bob.getJson('creds')).toEqual({ me: 'bob' });
    expect(await alice.list()).toEqual(['creds', 'key-1']);
    expect(await alice.scope('nested').list()).toEqual([]);
    await alice.delete('key-1');
    await alice.delete('never-existed');
    expect(await alice.get('key-1')).toBeUndefined();
    expect(await alice.list()).toEqual(['creds']);
    const reopened = await openStateStore({ dir, key });
    expect(await reopened.scope('whatsapp:alice').getJson('creds')).toEqual({ me: 'alice', n: 1 });
  });

  it('keeps files 0600 in 0700 directories and never writes plaintext', async () => {
    await mkdir(dir, { mode: 0o755 });
    await chmod(dir, 0o755);
    const store = await openStateStore({ dir, key });
    const secret = 'SECRET-SESSION-MATERIAL';
    await store.scope('signal:alice').setJson('identity', { privateKey: secret });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(dir, '~signal:alice'))).mode & 0o777).toBe(0o700);
    const file = path.join(dir, '~signal:alice', 'identity');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await readFile(file)).toString('latin1')).not.toContain(secret);
    expect((await stat(path.join(dir, '.offchannel-state.json'))).mode & 0o777).toBe(0o600);
  });

  it('refuses a wrong key at open, before reading or writing anything', async () => {
    const store = await openStateStore({ dir, key });
    await store.set('a', new Uint8Array([1]));
    await expectCode(openStateStore({ dir, key: randomBytes(32) }), 'STATE_KEY_WRONG');
    await expectCode(openStateStore({ dir, unencrypted: true }), 'STATE_MODE_MISMATCH');
    const plainDir = `${dir}-plain`;
    await openStateStore({ dir: plainDir, unencrypted: true });
    await expectCode(openStateStore({ dir: plainDir, key }), 'STATE_MODE_MISMATCH');
    await rm(plainDir, { recursive: true });
  });

  it('refuses a non-empty directory that is not a store', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'notes.txt'), 'hello');
    await expectCode(openStateStore({ dir, key }), 'STATE_CORRUPT');
  });

  it.each([
    ['encrypted', { key }],
    ['unencrypted', { unencrypted: true as const }],
  ])('detects damaged, truncated and renamed %s files', async (_mode, options) => {
    const store = await openStateStore({ dir, ...options });
    await store.setJson('one', { value: 1 });
    await store.setJson('two', { value: 2 });
    const one = path.join(dir, 'one');
    const bytes = await readFile(one);
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] as number) ^ 0x01;
    await writeFile(one, bytes);
    await expectCode(store.get('one'), 'STATE_CORRUPT');
    await truncate(one, 10);
    await expectCode(store.get('one'), 'STATE_CORRUPT');
    await rename(path.join(dir, 'two'), path.join(dir, 'three'));
    await expectCode(store.get('three'), 'STATE_CORRUPT');
  });

  it('keeps a value and a scope of the same name apart', async () => {
    const store = await openStateStore({ dir, key });
    await store.setJson('whatsapp:alice', { value: true });
    await store.scope('whatsapp:alice').setJson('creds', { scoped: true });
    expect(await store.getJson('whatsapp:alice')).toEqual({ value: true });
    expect(await store.scope('whatsapp:alice').getJson('creds')).toEqual({ scoped: true });
  });

  it('stores the bytes as they were when set() was called', async () => {
    const store = await openStateStore({ dir, key });
    const buffer = Uint8Array.from([1, 2, 3]);
    const write = store.set('v', buffer);
    buffer.fill(9);
    await write;
    expect(await store.get('v')).toEqual(Uint8Array.from([1, 2, 3]));
  });

  it('recovers when creating a scope directory failed once', async () => {
    const store = await openStateStore({ dir, key });
    await writeFile(path.join(dir, '~blocked'), 'not a directory');
    const scoped = store.scope('blocked');
    await expect(scoped.set('x', new Uint8Array(1))).rejects.toThrow();
    await rm(path.join(dir, '~blocked'));
    await scoped.set('x', new Uint8Array([5]));
    expect(await scoped.get('x')).toEqual(Uint8Array.from([5]));
  });

  it('applies writes to one name in call order', async () => {
    const store = await openStateStore({ dir, key });
    const writes = Array.from({ length: 40 }, (_, index) => store.setJson('cursor', { rowid: index }));
    await Promise.all(writes);
    expect(await store.getJson('cursor')).toEqual({ rowid: 39 });
  });

  it('ignores leftover temp files and removes stale ones at open', async () => {
    const store = await openStateStore({ dir, key });
    await store.setJson('session', { ok: true });
    const leftover = path.join(dir, '.tmp-deadbeefdeadbeef');
    await writeFile(leftover, 'half a write');
    expect(await store.getJson('session')).toEqual({ ok: true });
    expect(await store.list()).toEqual(['session']);
    const old = new Date(Date.now() - 120_000);
    await utimes(leftover, old, old);
    await openStateStore({ dir, key });
    expect((await readdir(dir)).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
  });

  it('never leaves a torn value when the writer is SIGKILLed mid-write', { timeout: 60_000 }, async () => {
    const script = path.join(import.meta.dirname, '__fixtures__', 'state-writer.ts');
    for (let trial = 0; trial < 12; trial++) {
      const child = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings', script, dir, key.toString('hex')], { stdio: ['ignore', 'pipe', 'inherit'] });
      let acknowledged = 0;
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        const versions = chunk.trim().split('\n').map(Number);
        acknowledged = Math.max(acknowledged, ...versions);
      });
      await new Promise<void>((resolve) => {
        const wait = (): void => {
          if (acknowledged > 0) setTimeout(resolve, 10 + Math.random() * 150);
          else setTimeout(wait, 5);
        };
        wait();
      });
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      const store = await openStateStore({ dir, key });
      const value = await store.scope('demo:alice').getJson<{ version: number; padding: string; check: number }>('session');
      expect(value).toBeDefined();
      expect(value?.padding.length).toBe(value?.check);
      expect(value?.version).toBeGreaterThanOrEqual(acknowledged);
    }
  });

  it('rejects names that could escape the store', async () => {
    const store = await openStateStore({ dir, key });
    for (const name of ['../x', 'a/b', '.hidden', '', 'a\u0000b', '..', 'x'.repeat(300)]) {
      await expectCode(store.set(name, new Uint8Array(1)), 'STATE_INVALID_NAME');
      await expectCode(store.get(name), 'STATE_INVALID_NAME');
      expect(() => store.scope(name)).toThrow(StateStoreError);
    }
  });

  it('logs no values or key material', async () => {
    const logger = createRecordingLogger();
    const store = await openStateStore({ dir, key, logger });
    const secret = 'SECRET-RATCHET-STATE';
    await store.setJson('session', { secret });
    await store.getJson('session');
    expect(logger.lines.length).toBeGreaterThan(0);
    expect(logger.text()).not.toContain(secret);
    expect(logger.text()).not.toContain(key.toString('hex'));
    expect(logger.text()).not.toContain(key.toString('base64'));
  });
});

/**
 * What stands in place of a state file is not trusted. `plant` replaces `file` by a FIFO, a
 * link or a directory. A read that waited on the FIFO would hang: the check gives up after
 * 10 s ("hung") and then opens the FIFO for writing, so a blocked reader (the old code) wakes up.
 */
const plants: [string, (file: string) => Promise<void>, RegExp][] = [
  ['a FIFO', async (file) => {
    mkfifo(file);
  }, /is a FIFO \(named pipe\), not a regular file/],
  ['a symbolic link', async (file) => symlink(path.join(path.dirname(file), 'elsewhere'), file), /is a symbolic link/],
  ['a directory', async (file) => mkdir(file), /is a directory, not a regular file/],
];

describe('files in place of state files', () => {
  it.each(plants)('refuses %s in place of a value, and of the marker, with STATE_CORRUPT, without waiting on it', async (_name, plant, problem) => {
    const store = await openStateStore({ dir, key });
    await store.scope('whatsapp:alice').setJson('creds', { me: 'alice' });
    const file = path.join(dir, '~whatsapp:alice', 'creds');
    await rm(file);
    await plant(file);
    const error = await settleOrHang(file, store.scope('whatsapp:alice').get('creds'));
    expect(error).toBeInstanceOf(StateStoreError);
    expect((error as StateStoreError).code).toBe('STATE_CORRUPT');
    expect((error as Error).message).toMatch(problem);

    const marker = path.join(dir, '.offchannel-state.json');
    await rm(marker);
    await plant(marker);
    const markerError = await settleOrHang(marker, openStateStore({ dir, key }));
    expect(markerError).toBeInstanceOf(StateStoreError);
    expect((markerError as StateStoreError).code).toBe('STATE_CORRUPT');
    expect((markerError as Error).message).toMatch(problem);
  });
});

describe('state keys', () => {
  it('parses base64 and hex keys and refuses anything else without echoing it', async () => {
    const generated = generateStateKey();
    expect(parseStateKey(generated)).toHaveLength(32);
    expect(Buffer.from(parseStateKey(key.toString('hex')))).toEqual(key);
    for (const bad of ['', 'short', 'zz'.repeat(32), `${generated}x`]) {
      expect(() => parseStateKey(bad)).toThrow(StateStoreError);
      try {
        parseStateKey(bad);
      } catch (error) {
        if (bad.length > 4) expect((error as Error).message).not.toContain(bad);
      }
    }
  });

  it('loads a key file only when it is private to its owner', async () => {
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'state.key');
    await writeFile(file, `${key.toString('base64')}\n`, { mode: 0o644 });
    await chmod(file, 0o644);
    await expect(loadStateKey({ file })).rejects.toMatchObject({ code: 'STATE_KEY_INVALID' });
    await chmod(file, 0o600);
    expect(Buffer.from((await loadStateKey({ file })) as Uint8Array)).toEqual(key);
    expect(Buffer.from((await loadStateKey({ env: key.toString('hex') })) as Uint8Array)).toEqual(key);
    expect(await loadStateKey({ env: undefined })).toBeUndefined();
    await expect(loadStateKey({ file: path.join(dir, 'missing') })).rejects.toMatchObject({ code: 'STATE_KEY_MISSING' });
  });

  it('refuses a FIFO or an oversized file as the key file, and follows a link to a key file', async () => {
    await mkdir(dir, { recursive: true });
    const fifo = path.join(dir, 'fifo.key');
    mkfifo(fifo);
    const error = await settleOrHang(fifo, loadStateKey({ file: fifo }));
    expect(error).toMatchObject({ code: 'STATE_KEY_INVALID' });
    expect((error as Error).message).toContain('is a FIFO (named pipe), not a regular file');
    const big = path.join(dir, 'big.key');
    await writeFile(big, `${key.toString('base64')}\n${' '.repeat(8192)}`, { mode: 0o600 });
    await expect(loadStateKey({ file: big })).rejects.toMatchObject({ code: 'STATE_KEY_INVALID', message: expect.stringContaining('is larger than 4096 bytes') as unknown });
    const real = path.join(dir, 'real.key');
    await writeFile(real, `${key.toString('base64')}\n`, { mode: 0o600 });
    await symlink(real, path.join(dir, 'linked.key'));
    expect(Buffer.from((await loadStateKey({ file: path.join(dir, 'linked.key') })) as Uint8Array)).toEqual(key);
  });
});
