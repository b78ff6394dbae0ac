import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdtemp, open, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StateStoreError } from '../errors/state-errors.ts';
import { openStateStore } from './secret-store.ts';
import { openFilesUnder } from '../testing/open-files.ts';

// These tests spawn processes: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let dir: string;
const key = randomBytes(32);
const bytes = (text: string): Uint8Array => Buffer.from(text, 'utf8');
const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : Buffer.from(value).toString('utf8'));

beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-table-')), 'state');
});
afterEach(async () => {
  await rm(path.dirname(dir), { recursive: true, force: true });
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toSatisfy((error: unknown) => error instanceof StateStoreError && error.code === code);
}

describe('StateStore.table', () => {
  it('writes a batch, reads, overwrites, deletes and survives a reopen', async () => {
    const store = await openStateStore({ dir, key });
    const table = store.scope('whatsapp:alice').table('messages');
    await table.write([['m1', bytes('one')], ['m2', bytes('two')]]);
    expect(text(await table.get('m1'))).toBe('one');
    await table.write([['m1', bytes('uno')], ['m2', null]]);
    expect(text(await table.get('m1'))).toBe('uno');
    expect(await table.get('m2')).toBeUndefined();
    expect(await table.get('never')).toBeUndefined();
    await table.write([]);
    await table.write([['m3', bytes('three')]]);
    await table.clear();
    expect(await table.get('m3')).toBeUndefined();
    await table.write([['m1', bytes('uno')]]);
    await table.close();
    const reopened = await openStateStore({ dir, key });
    expect(text(await reopened.scope('whatsapp:alice').table('messages').get('m1'))).toBe('uno');
    // another scope's table of the same name is another table
    expect(await reopened.scope('whatsapp:bob').table('messages').get('m1')).toBeUndefined();
  });

  it('is 0600, never listed as a value, and holds no plaintext', async () => {
    const store = await openStateStore({ dir, key });
    const alice = store.scope('whatsapp:alice');
    const secret = 'SECRET-MESSAGE-KEY-MATERIAL';
    await alice.table('messages').write([['m1', bytes(secret)]]);
    await alice.set('creds', bytes('c'));
    expect(await alice.list()).toEqual(['creds']);
    const scopeDir = path.join(dir, '~whatsapp:alice');
    const files = (await readdir(scopeDir)).filter((name) => name.startsWith('.table-'));
    expect(files).toContain('.table-messages.sqlite');
    for (const file of files) {
      expect((await stat(path.join(scopeDir, file))).mode & 0o777).toBe(0o600);
      expect((await readFile(path.join(scopeDir, file))).toString('latin1')).not.toContain(secret);
    }
    await alice.table('messages').close();
  });

  it('binds each row to its key: a row copied under another key, or a wrong key, does not open', async () => {
    const store = await openStateStore({ dir, key });
    const table = store.scope('whatsapp:alice').table('messages');
    await table.write([['m1', bytes('one')], ['m2', bytes('two')]]);
    await table.close();
    const db = new DatabaseSync(path.join(dir, '~whatsapp:alice', '.table-messages.sqlite'));
    db.prepare("UPDATE kv SET v = (SELECT v FROM kv WHERE k = 'm1') WHERE k = 'm2'").run();
    db.close();
    await expectCode(table.get('m2'), 'STATE_CORRUPT');
    await expect(table.get('m2')).rejects.toSatisfy((error: Error) => !error.message.includes('m2') && error.cause === undefined);
    expect(text(await table.get('m1'))).toBe('one');
    await table.close();
  });

  it('close() waits for a read that is opening the file, then closes it: nothing stays open', async () => {
    const store = await openStateStore({ dir, key });
    const table = store.scope('whatsapp:alice').table('messages');
    await table.write([['m1', bytes('one')]]);
    await table.close();
    // Each read below is issued before close(); its open of the file is still under way when close() runs.
    for (const reads of [['m1'], ['m1', 'never', 'm1']]) {
      const pending = reads.map((row) => table.get(row));
      await table.close();
      expect((await Promise.all(pending)).map(text)).toEqual(reads.map((row) => (row === 'm1' ? 'one' : undefined)));
      expect(await openFilesUnder(dir)).toEqual([]);
    }
    // A write issued with them too.
    const read = table.get('m1');
    const written = table.write([['m2', bytes('two')]]);
    await table.close();
    expect(text(await read)).toBe('one');
    await written;
    expect(await openFilesUnder(dir)).toEqual([]);
    expect(text(await table.get('m2'))).toBe('two'); // reopened on the next use
    await table.close();
    expect(await openFilesUnder(dir)).toEqual([]);
  });

  it('rejects bad keys and values before writing anything', async () => {
    const table = (await openStateStore({ dir, key })).table('t');
    await expectCode(table.write([['ok', bytes('1')], ['../escape', bytes('2')]]), 'STATE_INVALID_NAME');
    await expectCode(table.write([['ok', 'not bytes' as unknown as Uint8Array]]), 'STATE_INVALID_NAME');
    expect(await table.get('ok')).toBeUndefined();
    await expectCode(table.get(''), 'STATE_INVALID_NAME');
    await table.close();
  });

  it('group-commits concurrent writes: all resolve, all readable, in call order', async () => {
    const table = (await openStateStore({ dir, key })).table('t');
    await Promise.all(Array.from({ length: 50 }, (_, i) => table.write([['same', bytes(String(i))], [`k${i}`, bytes(String(i))]])));
    expect(text(await table.get('same'))).toBe('49');
    for (let i = 0; i < 50; i++) expect(text(await table.get(`k${i}`))).toBe(String(i));
    await table.close();
  });

  it('resolves a write only after the WAL file it committed to was fdatasync\'d', async () => {
    const table = (await openStateStore({ dir, key })).scope('whatsapp:alice').table('messages');
    await table.write([['warm', bytes('open the WAL handle')]]);
    const probe = await open(path.join(path.dirname(dir), 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { datasync: (this: FileHandle) => Promise<void> };
    await probe.close();
    const real = proto.datasync;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    let synced = 0;
    const spy = vi.spyOn(proto, 'datasync').mockImplementation(async function (this: FileHandle) {
      await gate;
      await real.call(this);
      synced++;
    });
    try {
      let resolved = false;
      const write = table.write([['m1', bytes('one')]]).then(() => { resolved = true; });
      for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(resolved, 'write resolved before any fdatasync').toBe(false);
      release();
      await write;
      expect(synced).toBeGreaterThan(0);
    } finally {
      spy.mockRestore();
      await table.close();
    }
  });

  it('SIGKILLed mid-batch: every batch reported durable is there, and no batch is half there', { timeout: 60_000 }, async () => {
    const script = path.join(import.meta.dirname, '__fixtures__', 'table-writer.ts');
    const size = 40;
    for (let trial = 0; trial < 8; trial++) {
      const child = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings', script, dir, key.toString('hex'), String(size)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let durable = 0;
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        durable = Math.max(durable, ...chunk.trim().split('\n').map(Number));
      });
      const exit = new Promise<void>((resolve) => {
        child.once('exit', () => { resolve(); });
      });
      let exited = false;
      void exit.then(() => { exited = true; });
      const reached = durable;
      await new Promise<void>((resolve) => {
        const wait = (): void => {
          if (durable > reached || exited) setTimeout(resolve, Math.random() * 100);
          else setTimeout(wait, 5);
        };
        wait();
      });
      // A child that died on its own (not by our kill) is a failure, not a 60 s wait.
      expect(exited, 'the writer exited before it was killed').toBe(false);
      child.kill('SIGKILL');
      await exit;
      const table = (await openStateStore({ dir, key })).scope('whatsapp:alice').table('messages');
      // Each trial restarts at batch 1 and overwrites: check the batches this child reported, and the next one.
      for (let batch = 1; batch <= durable + 1; batch++) {
        const present = await Promise.all(Array.from({ length: size }, async (_, i) => (await table.get(`b${batch}-${i}`)) !== undefined));
        if (batch <= durable) expect(present.every(Boolean)).toBe(true);
        else expect(present.every(Boolean) || present.every((p) => !p)).toBe(true);
      }
      await table.close();
    }
  });
});
