/**
 * The stream writer lock is core's kernel-held lock: a second writer (here, in the same process)
 * is a `SinkConflictError`; a FIFO or a link in the lock's place is refused without waiting on it
 * or locking what it points at (fatal); a lock that cannot be taken for another reason is
 * `SINK_UNAVAILABLE`, retryable, as it was before core's lock. (Separate processes and SIGKILL: core's os-lock.test.ts and this
 * package's crash-safety.test.ts.)
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OffchannelError, SinkConflictError, dispositionOf } from '@offchannel/core';
import { mkfifo, settleOrHang } from '@offchannel/core/testing';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { acquireStreamLock } from './stream-lock.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'stream-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('refuses a second writer of the stream while the first holds it, and lets the next one in after release', async () => {
  const file = path.join(dir, 'demo%3Aalice.lock');
  const first = await acquireStreamLock(file, 'demo:alice');
  const second = await acquireStreamLock(file, 'demo:alice').catch((caught: unknown) => caught);
  expect(second).toBeInstanceOf(SinkConflictError);
  expect((second as Error).message).toContain('a stream has exactly one writer');
  first.release();
  (await acquireStreamLock(file, 'demo:alice')).release();
}, 60_000);

it('refuses a FIFO in place of the lock without waiting on it, and a link without locking what it points at', async () => {
  const fifo = path.join(dir, 'fifo.lock');
  mkfifo(fifo);
  const error = await settleOrHang(fifo, acquireStreamLock(fifo, 'demo:alice'));
  expect(OffchannelError.hasCode(error, 'OS_LOCK_REFUSED'), String(error)).toBe(true);
  expect((error as Error).message).toContain('is a FIFO (named pipe), not a regular file');

  const target = path.join(dir, 'target.lock');
  await writeFile(target, '');
  await symlink(target, path.join(dir, 'linked.lock'));
  const linked = await acquireStreamLock(path.join(dir, 'linked.lock'), 'demo:alice').catch((caught: unknown) => caught);
  expect(OffchannelError.hasCode(linked, 'OS_LOCK_REFUSED'), String(linked)).toBe(true);
  (await acquireStreamLock(target, 'demo:alice')).release();
}, 60_000);

it('says unavailable (retryable), not fatal, when the lock cannot be taken for another reason', async () => {
  const gone = path.join(dir, 'removed');
  await mkdir(gone);
  await rm(gone, { recursive: true });
  await writeFile(path.join(dir, 'a-file'), '');
  // The lock folder removed under the sink; a file where the folder should be.
  for (const file of [path.join(gone, 'demo%3Aalice.lock'), path.join(dir, 'a-file', 'demo%3Aalice.lock')]) {
    const error = await acquireStreamLock(file, 'demo:alice').catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'SINK_UNAVAILABLE'), String(error)).toBe(true);
    expect(dispositionOf(error)).toBe('retryable');
    expect((error as Error).message).toContain(file);
    expect(OffchannelError.hasCode((error as Error).cause, 'OS_LOCK_FAILED')).toBe(true);
  }
  // Held and refused keep their meaning: a conflict, and a fatal refusal.
  const file = path.join(dir, 'held.lock');
  const held = await acquireStreamLock(file, 'demo:alice');
  expect(await acquireStreamLock(file, 'demo:alice').catch((caught: unknown) => caught)).toBeInstanceOf(SinkConflictError);
  held.release();
  const fifo = path.join(dir, 'refused.lock');
  mkfifo(fifo);
  const refused = await settleOrHang(fifo, acquireStreamLock(fifo, 'demo:alice'));
  expect(OffchannelError.hasCode(refused, 'OS_LOCK_REFUSED')).toBe(true);
  expect(dispositionOf(refused)).toBe('fatal');
}, 60_000);

it('says unavailable (retryable) when no file descriptor is left for the lock (EMFILE)', () => {
  // A child limited to 128 descriptors uses them all, then takes a stream's lock.
  const script = `
    import { openSync } from 'node:fs';
    import { dispositionOf } from '@offchannel/core';
    import { acquireStreamLock } from ${JSON.stringify(fileURLToPath(new URL('./stream-lock.ts', import.meta.url)))};
    const held = [];
    try { for (;;) held.push(openSync('/dev/null', 'r')); } catch {}
    try { (await acquireStreamLock(${JSON.stringify(path.join(dir, 'demo%3Aalice.lock'))}, 'demo:alice')).release(); console.log(JSON.stringify({ message: 'taken' })); }
    catch (error) { console.log(JSON.stringify({ code: error.code, disposition: dispositionOf(error), message: error.message })); }`;
  const child = spawnSync('sh', ['-c', 'ulimit -n 128 && exec "$0" "$@"', process.execPath, '--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { cwd: import.meta.dirname, timeout: 30_000, encoding: 'utf8' });
  expect(child.signal, child.stderr).toBeNull();
  const outcome = JSON.parse(child.stdout) as { code?: string; disposition?: string; message: string };
  expect(outcome.code, outcome.message).toBe('SINK_UNAVAILABLE');
  expect(outcome.disposition).toBe('retryable');
  expect(outcome.message).toContain('could not be taken');
}, 60_000);
