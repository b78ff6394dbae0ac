/**
 * The CLI as a real process and real signals: a command that is waiting — on a FIFO, a stalled
 * server, a long verification — ends within 2 s of SIGINT or SIGTERM, and a FIFO planted in an
 * archive is named instead of waited on.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { constants } from 'node:fs';
import { type FileHandle, mkdtemp, open, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = path.join(import.meta.dirname, 'bin.ts');
const signer = generateEd25519NoteKey('archive.example/offchannel');
let work: string;
let archive: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-bin-'));
  archive = path.join(work, 'archive');
  const sink = await openFsSink({ dir: archive });
  const recorder = new Recorder({ sink, clock: () => new Date('2026-11-21T10:00:00Z'), checkpoints: { signer, everyRecords: 2 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  for (let index = 1; index <= 4; index++) {
    await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}`, ...(index === 2 ? { attachments: [{ bytes: new TextEncoder().encode('file'), mime: 'text/plain' }] } : {}) });
  }
  await recorder.close();
  await sink.close();
}, 60_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function start(args: string[]): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('exit', (code, signal) => {
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, exited };
}

/** Opens the FIFO's write end once a reader has it open (ENXIO until then), so the reader is known to be waiting on it. */
async function waitForReader(fifo: string, deadline: number): Promise<FileHandle> {
  for (;;) {
    try {
      return await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENXIO' || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function mkfifo(file: string): void {
  const made = spawnSync('mkfifo', [file], { timeout: 10_000 });
  if (made.status !== 0) throw new Error(`mkfifo failed: ${String(made.stderr)}`);
}

describe('offchannel as a process', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`verify waiting on a FIFO stops within 2 s of ${signal}`, { timeout: 90_000 }, async () => {
      const fifo = path.join(work, `checkpoint-${signal}.fifo`);
      mkfifo(fifo);
      const { child, exited } = start(['verify', archive, '--key', signer.verifierKey, '--checkpoint', fifo]);
      const writeEnd = await waitForReader(fifo, Date.now() + 60_000);
      try {
        const sent = performance.now();
        child.kill(signal);
        const outcome = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(() => { resolve(undefined); }, 5_000))]);
        const waited = performance.now() - sent;
        expect(outcome, 'the process ended').toBeDefined();
        expect(waited).toBeLessThan(2_000);
        expect(outcome?.signal).toBe(signal);
        expect(outcome?.stderr).toContain(`offchannel verify: stopped by ${signal}`);
      } finally {
        child.kill('SIGKILL');
        await writeEnd.close();
      }
    });
  }

  it('verify --key with a FIFO planted as a blob names it and exits 1, without waiting on it', { timeout: 90_000 }, async () => {
    const copy = path.join(work, 'fifo-blob');
    spawnSync('cp', ['-a', archive, copy], { timeout: 30_000 });
    const blobs = path.join(copy, 'blobs', 'sha256');
    const [blob] = await readdir(blobs);
    await rename(path.join(blobs, blob as string), path.join(work, 'moved-blob'));
    mkfifo(path.join(blobs, blob as string));
    const { child, exited } = start(['verify', copy, '--key', signer.verifierKey]);
    const outcome = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(() => { resolve(undefined); }, 60_000))]);
    child.kill('SIGKILL');
    await open(path.join(blobs, blob as string), constants.O_WRONLY | constants.O_NONBLOCK).then((handle) => handle.close(), () => undefined);
    expect(outcome?.code).toBe(1);
    expect(outcome?.stdout).toContain(`blobs/sha256/${blob as string} is a FIFO`);
  });
});
