/**
 * The CLI sizes libuv's thread pool for blob writes before anything starts it: with the default
 * 4 threads, at most 4 blob fsyncs wait on the disk at once (docs/storage-format.md, "Blob
 * writes"). Checked in a real CLI process: six calls blocked on FIFOs must leave a thread free.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';

const probe = path.join(import.meta.dirname, 'testing', 'thread-pool-probe.ts');
const bin = path.join(import.meta.dirname, 'bin.ts');
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-pool-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runProbe(env: NodeJS.ProcessEnv): string {
  const result = spawnSync(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', probe, bin, dir], { env, encoding: 'utf8', timeout: 50_000 });
  return result.stdout.trim().split('\n').at(-1) ?? '';
}

it.skipIf(process.platform === 'win32')('the offchannel process has more than 6 thread-pool threads unless UV_THREADPOOL_SIZE says otherwise', { timeout: 60_000 }, () => {
  const env = { ...process.env };
  delete env.UV_THREADPOOL_SIZE;
  expect(runProbe(env)).toBe('free');
});

it.skipIf(process.platform === 'win32')("an operator's UV_THREADPOOL_SIZE is kept (and the probe tells a small pool apart)", { timeout: 60_000 }, () => {
  expect(runProbe({ ...process.env, UV_THREADPOOL_SIZE: '4' })).toBe('blocked');
});
