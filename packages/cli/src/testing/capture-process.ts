/**
 * Test helper: a workspace (signing key, state key, archive, 0600 config) and `offchannel
 * capture` / other commands run as real processes of the built CLI. Not part of the package API.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, type Ed25519NoteKey, decodeRecord, generateEd25519NoteKey, generateStateKey, openStateStore } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

export const BIN = path.join(import.meta.dirname, '..', '..', 'dist', 'bin.js');

export interface Workspace {
  readonly dir: string;
  readonly archive: string;
  readonly config: string;
  readonly key: Ed25519NoteKey;
  /** The verifier key's file (for --key). */
  readonly verifierFile: string;
  write(body: Record<string, unknown>): Promise<void>;
  remove(): Promise<void>;
}

export async function workspace(prefix: string): Promise<Workspace> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const key = generateEd25519NoteKey('coverage-test.offchannel.example');
  const stateKey = generateStateKey();
  await writeFile(path.join(dir, 'signing.key'), `${key.signerKeyText()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'signing.pub'), `${key.verifierKey}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'state.key'), `${stateKey}\n`, { mode: 0o600 });
  await openStateStore({ dir: path.join(dir, 'state'), key: Buffer.from(stateKey, 'base64') });
  await (await openFsSink({ dir: path.join(dir, 'archive') })).close();
  const config = path.join(dir, 'offchannel.config.json');
  return {
    dir,
    archive: path.join(dir, 'archive'),
    config,
    key,
    verifierFile: path.join(dir, 'signing.pub'),
    write: async (body) => {
      const full = { archive: { dir: './archive' }, state: { dir: './state', keyFile: './state.key' }, signing: { keyFile: './signing.key' }, ...body };
      await writeFile(config, JSON.stringify(full), { mode: 0o600 });
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface Process {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

/** Starts the built CLI with `args` in `cwd`. */
export function start(args: readonly string[], cwd: string): Process {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Runs the built CLI to its end. */
export async function runBuilt(args: readonly string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = start(args, cwd);
  const code = await run.exited;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** The archive's records of `stream`, read beside the running writer. */
export async function records(ws: Workspace, stream: string): Promise<ArchiveRecord[]> {
  const sink = await openFsSink({ dir: ws.archive, readOnly: true });
  const out: ArchiveRecord[] = [];
  try {
    if ((await sink.head(stream)).seq === 0) return out;
    for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
  } finally {
    await sink.close();
  }
  return out;
}

/** Polls `check` until it holds; fails with the process's log if it exited or after `ms`. */
export async function until(check: () => Promise<boolean>, what: string, run: Process, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (run.child.exitCode !== null) throw new Error(`the process exited (${run.child.exitCode}) before ${what}:\n${run.stderr().slice(-2000)}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}:\n${run.stderr().slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The `system` events of `stream`, in order. */
export async function events(ws: Workspace, stream: string): Promise<{ readonly event: string; readonly at: number; readonly run?: string }[]> {
  return (await records(ws, stream))
    .filter((record) => record.kind === 'system' && record.system)
    .map((record) => ({ event: record.system?.event ?? '', at: Date.parse(record.capturedAt), ...(record.system?.fields?.run === undefined ? {} : { run: record.system.fields.run }) }));
}
