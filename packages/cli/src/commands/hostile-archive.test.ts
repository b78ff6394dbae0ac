/**
 * copy, prove and export read an archive the way verify does: a FIFO, device or symbolic link
 * planted where a segment, blob, checkpoint or tile belongs gives a clear error naming the
 * file — never a hang, never a read through the link.
 */
import { spawnSync } from 'node:child_process';
import { constants } from 'node:fs';
import { cp, mkdtemp, open, readdir, rename, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../testing/run-cli.ts';

const stream = 'demo:alice';
const signer = generateEd25519NoteKey('archive.example/offchannel');
let work: string;
let pristine: string;
const fifos: string[] = [];

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-hostile-cli-'));
  pristine = path.join(work, 'pristine');
  const sink = await openFsSink({ dir: pristine, segmentBytes: 2_000 });
  const recorder = new Recorder({ sink, clock: () => new Date('2026-11-21T10:00:00Z'), checkpoints: { signer, everyRecords: 5 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  for (let index = 1; index <= 12; index++) {
    await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}`, ...(index === 2 ? { attachments: [{ bytes: new TextEncoder().encode('file'), mime: 'text/plain' }] } : {}) });
  }
  await recorder.close();
  await sink.close();
}, 60_000);

afterEach(async () => {
  for (const fifo of fifos.splice(0)) await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).then((handle) => handle.close(), () => undefined);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A copy of the archive with one file of `kind` replaced by a FIFO or a link to its original. */
async function planted(kind: 'segment' | 'blob' | 'checkpoint' | 'tile', what: 'fifo' | 'symlink'): Promise<{ dir: string; file: string }> {
  const dir = path.join(work, `${kind}-${what}-${String(Math.random()).slice(2, 8)}`);
  await cp(pristine, dir, { recursive: true });
  const under = { segment: `streams/${stream}`, blob: 'blobs/sha256', checkpoint: `checkpoints/${stream}`, tile: `tiles/${stream}` }[kind];
  // The newest checkpoint: the one prove uses.
  const names = (await readdir(path.join(dir, under), { recursive: true })).sort((a, b) => (kind === 'checkpoint' ? b.localeCompare(a) : a.localeCompare(b)));
  let file: string | undefined;
  for (const name of names) {
    const candidate = path.join(dir, under, name);
    const wanted = kind === 'segment' ? name.endsWith('.jsonl') : kind === 'checkpoint' ? name.endsWith('.note') : true;
    if (wanted && (await stat(candidate)).isFile()) {
      file = candidate;
      break;
    }
  }
  if (!file) throw new Error(`no ${kind} in the test archive`);
  await rename(file, path.join(work, `moved-${path.basename(dir)}`));
  if (what === 'symlink') await symlink(path.join(work, `moved-${path.basename(dir)}`), file);
  else {
    const made = spawnSync('mkfifo', [file], { timeout: 10_000 });
    if (made.status !== 0) throw new Error('mkfifo failed');
    fifos.push(file);
  }
  return { dir, file };
}

/** Runs the CLI in-process with a deadline, so a hang fails the test instead of stalling the run. */
async function within(ms: number, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      runCli(argv),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`offchannel ${argv.join(' ')} did not finish within ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const named = (file: string, result: { stdout: string; stderr: string }) => `${result.stdout}${result.stderr}`.includes(path.basename(file));

describe('commands that read an archive refuse files that are not regular', () => {
  for (const what of ['fifo', 'symlink'] as const) {
    for (const kind of ['segment', 'blob', 'checkpoint', 'tile'] as const) {
      it(`export with a ${what} as a ${kind}: fails, naming it`, { timeout: 60_000 }, async () => {
        const { dir, file } = await planted(kind, what);
        const result = await within(30_000, ['export', dir, '--format', 'jsonl', '--out', path.join(dir, '..', `out-${path.basename(dir)}`), '--key', signer.verifierKey]);
        expect(result.code).not.toBe(0);
        expect(named(file, result), `${result.stdout}${result.stderr}`).toBe(true);
      });
    }
    for (const kind of ['segment', 'checkpoint'] as const) {
      it(`prove with a ${what} as a ${kind}: fails, naming it`, { timeout: 60_000 }, async () => {
        const { dir, file } = await planted(kind, what);
        const result = await within(30_000, ['prove', dir, stream, '3', '--out', path.join(work, `proof-${path.basename(dir)}.json`)]);
        expect(result.code).not.toBe(0);
        expect(`${result.stdout}${result.stderr}`).toMatch(/FILE_NOT_REGULAR|not a regular file/);
        expect(named(file, result), `${result.stdout}${result.stderr}`).toBe(true);
      });
    }
    for (const kind of ['segment', 'blob'] as const) {
      it(`copy with a ${what} as a ${kind}: fails, naming it`, { timeout: 60_000 }, async () => {
        const { dir, file } = await planted(kind, what);
        const result = await within(30_000, ['copy', dir, path.join(work, `copy-${path.basename(dir)}`), '--give-up-after', '2']);
        expect(result.code).not.toBe(0);
        expect(`${result.stdout}${result.stderr}`).toMatch(/FILE_NOT_REGULAR|not a regular file/);
        expect(named(file, result), `${result.stdout}${result.stderr}`).toBe(true);
      });
    }
  }
});
