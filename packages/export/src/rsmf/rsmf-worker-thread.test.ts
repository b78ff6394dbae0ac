/**
 * RSMF conversations written by two threads (export-rsmf.ts, rsmf-worker-thread.ts): the same
 * bytes as one thread; a blob changed after verification stops the export from the worker
 * thread too, with the same error; an abort stops the worker and leaves no partial file.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type CaptureInput, type ConversationRef, OffchannelError } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type ExportOptions, exportArchive } from '../export-archive.ts';
import { type RecordedArchive, recordArchive } from '../__fixtures__/record-archive.ts';
import { bob, tinyPng } from '../__fixtures__/trade-archive.ts';
import { RsmfWorker } from './rsmf-worker-thread.ts';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const big: ConversationRef = { id: 'big@g.us', type: 'group', title: 'Big' };
const small: ConversationRef = { id: 'small@g.us', type: 'group', title: 'Small' };
const message = (conversation: ConversationRef, n: number, extra: Partial<CaptureInput> = {}): CaptureInput => ({
  kind: 'message',
  key: `message:${conversation.id}:${n}`,
  sentAt: new Date(Date.UTC(2026, 10, 20, 9, 0, n)).toISOString(),
  conversation,
  sender: bob,
  direction: 'inbound',
  native: { id: `${conversation.id}-${n}`, chat: conversation.id },
  text: `message ${n}`,
  ...extra,
});

let archive: RecordedArchive;
let scratch: string;
const copies: string[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-rsmf-threads-'));
  // The largest conversation goes to the worker thread first; only it has an attachment, and a
  // long text stored as a blob.
  archive = await recordArchive('whatsapp', async (writer) => {
    for (let n = 0; n < 3000; n++) {
      const extra: Partial<CaptureInput> = n === 2500 ? { attachments: [{ bytes: tinyPng(), mime: 'image/png', name: 'chart.png' }] } : n === 2600 ? { text: `${'Long clause. '.repeat(1000)}END` } : {};
      await writer.capture(message(big, n, extra));
    }
    for (let n = 0; n < 1500; n++) await writer.capture(message(small, n));
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});
afterAll(async () => {
  await rm(archive.dir, { recursive: true, force: true });
  for (const copy of copies) await rm(copy, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

async function run(name: string, options: Partial<ExportOptions> = {}, dir = archive.dir): Promise<{ out: string; error: unknown }> {
  const out = path.join(scratch, name);
  const sink = await openFsSink({ dir, readOnly: true });
  try {
    await exportArchive({ sink, out, formats: ['rsmf'], verifiers: [archive.key.verifier], clock: () => new Date('2026-12-01T00:00:00Z'), ...options });
    return { out, error: undefined };
  } catch (error) {
    return { out, error };
  } finally {
    await sink.close();
  }
}

/** Files left in `out` and beside it (the working directory). */
async function leftovers(out: string): Promise<string[]> {
  const partial = (await readdir(out, { recursive: true })).map(String).filter((name) => name.endsWith('.partial'));
  const working = (await readdir(path.dirname(out))).filter((name) => name.startsWith('.offchannel-export-tmp-'));
  return [...partial, ...working];
}

describe('RSMF written by two threads', () => {
  it('writes the same bytes as one thread, and uses the worker thread on two cores', async () => {
    const start = vi.spyOn(RsmfWorker, 'start');
    const two = await run('two-threads');
    expect(two.error).toBeUndefined();
    if (availableParallelism() > 1) expect(start.mock.results[0]?.value).toBeInstanceOf(RsmfWorker);
    start.mockReturnValue(undefined);
    const one = await run('one-thread');
    expect(one.error).toBeUndefined();
    const sums = await readFile(path.join(two.out, 'SHA256SUMS'), 'utf8');
    expect(sums).toBe(await readFile(path.join(one.out, 'SHA256SUMS'), 'utf8'));
    expect(sums.match(/\.rsmf\n/g)).toHaveLength(2);
    execFileSync('sha256sum', ['-c', '--strict', '--quiet', 'SHA256SUMS'], { cwd: two.out });
  });

  it('stops with EXPORT_UNVERIFIED when a blob the worker thread reads changed after verification, leaving no partial file', async () => {
    const copy = await mkdtemp(path.join(os.tmpdir(), 'offchannel-rsmf-threads-archive-'));
    copies.push(copy);
    execFileSync('cp', ['-a', `${archive.dir}/.`, copy]);
    let changed = false;
    const { out, error } = await run(
      'changed-blob',
      {
        onProgress: ({ phase }) => {
          if (phase !== 'index' || changed) return;
          changed = true;
          const blobs = path.join(copy, 'blobs', 'sha256');
          execFileSync('chmod', ['-R', 'u+w', blobs]);
          for (const name of execFileSync('ls', [blobs], { encoding: 'utf8' }).trim().split('\n')) execFileSync('sh', ['-c', 'printf "<svg/>" > "$1"', 'sh', path.join(blobs, name)]);
        },
      },
      copy,
    );
    expect(OffchannelError.hasCode(error, 'EXPORT_UNVERIFIED'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/blob [0-9a-f]{64} changed in the archive during export/);
    expect(await leftovers(out)).toEqual([]);
  });

  it('stops the worker thread when the export is aborted, leaving no partial file', async () => {
    const controller = new AbortController();
    const { out, error } = await run('aborted', {
      signal: controller.signal,
      onProgress: ({ phase, done }) => {
        if (phase === 'rsmf' && done >= 1000) controller.abort();
      },
    });
    expect(OffchannelError.hasCode(error, 'EXPORT_ABORTED'), String(error)).toBe(true);
    expect(await leftovers(out)).toEqual([]);
  });
});
