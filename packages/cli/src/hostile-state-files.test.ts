/**
 * A FIFO, a link or an oversized file in place of a file the CLI reads from its own state or a
 * path its config names — the signing key, the witness's per-log state, journal and lock, an SMTP
 * password file — is refused with a typed error naming the file, never waited on, followed (in
 * a state folder) or read whole. A read that waited on a FIFO would hang: each check gives up
 * after 10 s ("hung") and then opens the FIFO for writing, which wakes a blocked reader.
 */
import { spawnSync } from 'node:child_process';
import { cp, link, lstat, mkdir, mkdtemp, open, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OffchannelError, cosignerFromSeed, generateEd25519NoteKey } from '@offchannel/core';
import { createMemorySink, createRecordingLogger, mkfifo, settleOrHang } from '@offchannel/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CaptureDeliveries } from './capture/capture-deliveries.ts';
import { loadSigningKey } from './keys.ts';
import { runCli } from './testing/run-cli.ts';
import { SnapshotKey } from './witness/witness-snapshot.ts';
import { WitnessState, originId } from './witness/witness-state.ts';

const SNAPSHOT_KEY = SnapshotKey.fromCosigner(cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2)));

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-hostile-state-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('key files', () => {
  it('refuses a FIFO and an oversized file as the signing key, and follows a link to a real one', { timeout: 60_000 }, async () => {
    const fifo = path.join(dir, 'fifo.key');
    mkfifo(fifo);
    const error = await settleOrHang(fifo, loadSigningKey(fifo));
    expect(OffchannelError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/signing key file .*fifo\.key is a FIFO \(named pipe\), not a regular file/);

    const key = generateEd25519NoteKey('archive.example/offchannel');
    const big = path.join(dir, 'big.key');
    await writeFile(big, `${key.signerKeyText()}\n${'#'.repeat(8192)}`, { mode: 0o600 });
    await expect(loadSigningKey(big)).rejects.toThrow(/is larger than 4096 bytes/);

    const real = path.join(dir, 'real.key');
    await writeFile(real, `${key.signerKeyText()}\n`, { mode: 0o600 });
    await symlink(real, path.join(dir, 'linked.key'));
    expect((await loadSigningKey(path.join(dir, 'linked.key'))).verifierKey).toBe(key.verifierKey);
  });
});

describe('the witness state folder', () => {
  it('refuses a FIFO in place of a log state file and a link in place of the journal', { timeout: 60_000 }, async () => {
    const state = path.join(dir, 'witness');
    await mkdir(path.join(state, 'logs'), { recursive: true });
    const logFile = path.join(state, 'logs', originId('archive.example/offchannel'));
    mkfifo(logFile);
    const error = await settleOrHang(logFile, WitnessState.open(state, { key: SNAPSHOT_KEY }));
    expect(OffchannelError.hasCode(error, 'WITNESS_STATE')).toBe(true);
    expect((error as Error).message).toContain('is a FIFO (named pipe), not a regular file');
    await rm(logFile);

    await writeFile(path.join(dir, 'elsewhere'), '');
    await symlink(path.join(dir, 'elsewhere'), path.join(state, 'journal'));
    const linked = await WitnessState.open(state, { key: SNAPSHOT_KEY }).then(
      (opened) => {
        opened.close();
        return 'read';
      },
      (caught: unknown) => caught,
    );
    expect(OffchannelError.hasCode(linked, 'WITNESS_STATE')).toBe(true);
    expect((linked as Error).message).toContain('is a symbolic link');
  });

  it('refuses a FIFO or a link in place of its lock (never waited on, nor followed to lock another file), and a second witness', { timeout: 60_000 }, async () => {
    const state = path.join(dir, 'witness-lock');
    await mkdir(state, { recursive: true });
    const lock = path.join(state, 'lock');
    mkfifo(lock);
    const error = await settleOrHang(lock, WitnessState.open(state, { key: SNAPSHOT_KEY }));
    expect(OffchannelError.hasCode(error, 'WITNESS_STATE'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/lock .* is a FIFO \(named pipe\), not a regular file; .*remove it if no witness runs/);
    await rm(lock);

    await writeFile(path.join(dir, 'elsewhere.lock'), '');
    await symlink(path.join(dir, 'elsewhere.lock'), lock);
    const linked = await WitnessState.open(state, { key: SNAPSHOT_KEY }).then((opened) => { opened.close(); return 'opened'; }, (caught: unknown) => caught);
    expect(OffchannelError.hasCode(linked, 'WITNESS_STATE'), String(linked)).toBe(true);
    expect((linked as Error).message).toContain('is a symbolic link');
    await rm(lock);

    const first = await WitnessState.open(state, { key: SNAPSHOT_KEY });
    try {
      const second = await WitnessState.open(state, { key: SNAPSHOT_KEY }).then((opened) => { opened.close(); return 'opened'; }, (caught: unknown) => caught);
      expect((second as Error).message).toContain('another witness process holds the state folder');
    } finally {
      first.close();
    }
  });

  it('says a lock it cannot take (no descriptor left) is a failure to check, not a file to remove', { timeout: 60_000 }, () => {
    // A child limited to 128 descriptors uses them all, then opens the witness's state.
    const state = path.join(dir, 'witness-emfile');
    const script = `
      import { openSync } from 'node:fs';
      import { SnapshotKey } from ${JSON.stringify(fileURLToPath(new URL('./witness/witness-snapshot.ts', import.meta.url)))};
      import { WitnessState } from ${JSON.stringify(fileURLToPath(new URL('./witness/witness-state.ts', import.meta.url)))};
      // Only the key's name, id and text feed the snapshot key; the lock is refused before any snapshot is read.
      const key = SnapshotKey.fromCosigner({ name: 'witness.example/w1', keyId: 1, signerKeyText: () => 'test-only' });
      const held = [];
      try { for (;;) held.push(openSync('/dev/null', 'r')); } catch {}
      try { (await WitnessState.open(${JSON.stringify(state)}, { key })).close(); console.log(JSON.stringify({ message: 'opened' })); }
      catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })); }`;
    const child = spawnSync('sh', ['-c', 'ulimit -n 128 && exec "$0" "$@"', process.execPath, '--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { timeout: 30_000, encoding: 'utf8' });
    expect(child.signal, child.stderr).toBeNull();
    const outcome = JSON.parse(child.stdout) as { code?: string; message: string };
    expect(outcome.code).toBe('WITNESS_STATE');
    expect(outcome.message).toContain(`cannot take the witness's lock ${path.join(state, 'lock')}: it cannot be opened`);
    expect(outcome.message).toContain('check the state folder');
    expect(outcome.message).not.toContain('remove it if no witness runs');
  });

  it('refuses its own lock as the journal (the same file, by its path or a hard link), which it would unlock by opening it', { timeout: 60_000 }, async () => {
    const state = path.join(dir, 'witness-journal-lock');
    const lock = path.join(state, 'lock');
    (await WitnessState.open(state, { key: SNAPSHOT_KEY })).close();
    await link(lock, path.join(dir, 'journal-link'));
    for (const journal of [lock, path.join(state, '..', 'witness-journal-lock', 'lock'), path.join(dir, 'journal-link')]) {
      const error = await WitnessState.open(state, { key: SNAPSHOT_KEY, journal }).then((opened) => { opened.close(); return 'opened'; }, (caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'WITNESS_STATE'), String(error)).toBe(true);
      expect((error as Error).message).toContain(`the witness journal ${journal} is the state folder's lock`);
    }
    // Refused before anything was read or written: the lock is still an empty file, and free.
    expect((await stat(lock)).size).toBe(0);
    (await WitnessState.open(state, { key: SNAPSHOT_KEY, journal: path.join(state, 'journal') })).close();
  });

  it('a FIFO, link or directory in place of journal.snapshot or its temporary file is not read, followed or waited on: the journal is read whole', { timeout: 60_000 }, async () => {
    const state = path.join(dir, 'witness-snapshot');
    const head = { origin: 'archive.example/offchannel/demo:s1', size: 3, root: new Uint8Array(32).fill(7) };
    const first = await WitnessState.open(state, { key: SNAPSHOT_KEY });
    await first.advance(head);
    first.close();
    (await WitnessState.open(state, { key: SNAPSHOT_KEY })).close(); // writes the snapshot
    const snapshot = path.join(state, 'journal.snapshot');
    const valid = path.join(dir, 'valid.snapshot');
    await rename(snapshot, valid);
    const hostile: [string, () => Promise<void>][] = [
      ['a FIFO', async () => { mkfifo(snapshot); }],
      ['a link to a valid snapshot', async () => { await symlink(valid, snapshot); }],
      ['a directory', async () => { await mkdir(path.join(snapshot, 'x'), { recursive: true }); }],
      ['a FIFO as the temporary file', async () => { await cp(valid, snapshot); mkfifo(`${snapshot}.tmp`); }],
      ['a link as the temporary file', async () => { await cp(valid, snapshot); await symlink(path.join(dir, 'outside'), `${snapshot}.tmp`); }],
    ];
    for (const [what, plant] of hostile) {
      await rm(snapshot, { recursive: true, force: true });
      await rm(`${snapshot}.tmp`, { force: true });
      await plant();
      const opened = await settleOrHang(what.includes('temporary') ? `${snapshot}.tmp` : snapshot, WitnessState.open(state, { key: SNAPSHOT_KEY, readWholeJournal: what.includes('temporary') }));
      if (!(opened instanceof Object) || !('value' in opened)) throw new Error(`${what}: ${String(opened)}`);
      const witness = opened.value as WitnessState;
      witness.close();
      expect([what, witness.head(head.origin)?.size]).toEqual([what, 3]);
      // A whole read rewrites the snapshot through its temporary file: what was there is removed.
      if (what.includes('temporary')) {
        expect([what, witness.startup.snapshot, witness.snapshotError]).toEqual([what, 'ignored', undefined]);
        expect((await lstat(snapshot)).isFile()).toBe(true);
        await expect(lstat(`${snapshot}.tmp`)).rejects.toMatchObject({ code: 'ENOENT' });
      } else expect([what, witness.startup.snapshot]).toEqual([what, 'unusable']);
    }
    await expect(stat(path.join(dir, 'outside'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a 3 GiB journal that is no journal (a sparse file of zeros) with WITNESS_STATE at its first line, without reading it whole', { timeout: 60_000 }, async () => {
    const state = path.join(dir, 'witness-big');
    await mkdir(path.join(state, 'logs'), { recursive: true });
    const journal = await open(path.join(state, 'journal'), 'w', 0o600);
    await journal.truncate(3 * 1024 ** 3);
    await journal.close();
    const error = await WitnessState.open(state, { key: SNAPSHOT_KEY }).then(
      (opened) => {
        opened.close();
        return 'read';
      },
      (caught: unknown) => caught,
    );
    expect(OffchannelError.hasCode(error, 'WITNESS_STATE')).toBe(true);
    expect((error as Error).message).toMatch(/the line at byte 0 is damaged/);
    expect(process.memoryUsage().rss).toBeLessThan(1024 ** 3);
  });
});

describe('SMTP password files', () => {
  it('capture: a FIFO as a delivery target\'s passwordFile stops that target with CONFIG_INVALID, without waiting on it', { timeout: 60_000 }, async () => {
    const fifo = path.join(dir, 'smtp.pass');
    mkfifo(fifo);
    const logger = createRecordingLogger();
    const sink = createMemorySink();
    const entry = { name: 'journal', smtp: 'smtp://127.0.0.1:2525', to: 'journal@firm.example', from: 'offchannel@firm.example', mode: 'record' as const, user: 'svc', passwordFile: fifo, allowPlaintextLoopback: false, pollMs: 5000, stateDir: path.join(dir, 'delivery') };
    const started = await settleOrHang(fifo, CaptureDeliveries.start([entry], { archive: sink, receipts: sink, env: {}, generator: 'test', logger }));
    expect(started).toMatchObject({ value: expect.any(CaptureDeliveries) as unknown });
    const deliveries = (started as { value: CaptureDeliveries }).value;
    try {
      expect(deliveries.snapshot()).toMatchObject([{ name: 'journal', state: 'failed', error: 'CONFIG_INVALID' }]);
      expect(JSON.stringify(logger.lines)).toContain('is a FIFO (named pipe), not a regular file');
    } finally {
      await deliveries.stop();
    }
  });

  it('offchannel deliver: a FIFO as --password-file is refused, without waiting on it', { timeout: 60_000 }, async () => {
    const fifo = path.join(dir, 'smtp.pass');
    mkfifo(fifo);
    const argv = ['deliver', path.join(dir, 'archive'), '--smtp', 'smtp://127.0.0.1:2525', '--to', 'journal@firm.example', '--from', 'offchannel@firm.example', '--state', path.join(dir, 'delivery'), '--user', 'svc', '--password-file', fifo];
    const outcome = await settleOrHang(fifo, runCli(argv, dir));
    expect(outcome).toHaveProperty('value');
    const { value: result } = outcome as { value: { code: number; stderr: string } };
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/password file .*smtp\.pass is a FIFO \(named pipe\), not a regular file/);
  });
});
