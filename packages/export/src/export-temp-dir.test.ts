/**
 * The export's working files (the SQLite index holds the plaintext of every selected record)
 * live beside `--out`, private (0700 / 0600), and never outlive the export: not after success,
 * an error, an abort, SIGINT or SIGTERM; and what a killed export left is removed by the next —
 * judged by the kernel lock a running export holds on its directory, never by a process id.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureInput, OffchannelError } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type ExportOptions, exportArchive } from './export-archive.ts';
import { type RecordedArchive, recordArchive } from './__fixtures__/record-archive.ts';
import { bob, client } from './__fixtures__/trade-archive.ts';

const CHILD = path.join(import.meta.dirname, '__fixtures__', 'export-child.ts');
const TEMP = /^\.offchannel-export-tmp-/;
let archive: RecordedArchive;
let scratch: string;
/** Export children started here; any a failed test left holding are released at the end. */
const children: ChildProcess[] = [];

beforeAll(async () => {
  archive = await recordArchive('whatsapp', async (writer) => {
    for (let n = 1; n <= 40; n++) {
      const input: CaptureInput = { kind: 'message', key: `message:t${n}`, sentAt: new Date(Date.UTC(2026, 10, 20, 9, n)).toISOString(), conversation: client, sender: bob, direction: 'inbound', native: { id: `t${n}`, chat: client.id }, text: `Quote ${n}` };
      await writer.capture(input);
    }
  });
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-temp-'));
}, 60_000);
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await rm(archive.dir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

async function exportTo(out: string, options: Partial<ExportOptions> = {}): Promise<unknown> {
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    await exportArchive({ sink, out, formats: ['rsmf', 'html'], ...options });
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await sink.close();
  }
}

const statMode = (file: string): number => statSync(file).mode & 0o777;
const leftovers = async (parent: string): Promise<string[]> => (await readdir(parent)).filter((name) => TEMP.test(name));

describe('working files', () => {
  it('live beside --out, 0700 and 0600, nothing under the system temp directory, and are gone afterwards', async () => {
    const parent = await mkdtemp(path.join(scratch, 'beside-'));
    const systemTemp = await mkdtemp(path.join(scratch, 'system-tmp-'));
    const seen: { dir: string; mode: number; files: { name: string; mode: number }[] }[] = [];
    const previous = process.env.TMPDIR;
    process.env.TMPDIR = systemTemp;
    try {
      const error = await exportTo(path.join(parent, 'out'), {
        onProgress: ({ phase }) => {
          if (phase !== 'html' || seen.length > 0) return;
          // Synchronous look while the export is writing (its index open).
          const [name] = readdirSync(parent).filter((entry) => TEMP.test(entry));
          const dir = path.join(parent, name ?? 'none');
          seen.push({ dir, mode: statMode(dir), files: readdirSync(dir).map((file) => ({ name: file, mode: statMode(path.join(dir, file)) })) });
        },
      });
      expect(error).toBeUndefined();
    } finally {
      if (previous === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = previous;
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]?.mode).toBe(0o700);
    expect(seen[0]?.files).toContainEqual({ name: 'index.sqlite', mode: 0o600 });
    for (const file of seen[0]?.files ?? []) expect(file.mode).toBe(0o600);
    expect(await readdir(systemTemp)).toEqual([]);
    expect(await leftovers(parent)).toEqual([]);
    expect(existsSync(seen[0]?.dir ?? '')).toBe(false);
  });

  it('are removed when the export fails, and when its signal aborts it', async () => {
    const parent = await mkdtemp(path.join(scratch, 'fail-'));
    const failed = await exportTo(path.join(parent, 'out'), { conversations: ['no-such-conversation'] });
    expect(OffchannelError.hasCode(failed, 'EXPORT_OPTIONS')).toBe(true);
    expect(await leftovers(parent)).toEqual([]);

    const controller = new AbortController();
    const aborted = await exportTo(path.join(parent, 'out-2'), {
      signal: controller.signal,
      onProgress: ({ phase }) => {
        if (phase === 'index') controller.abort();
      },
    });
    expect(OffchannelError.hasCode(aborted, 'EXPORT_ABORTED')).toBe(true);
    expect((aborted as Error).message).toMatch(/interrupted; the files already written in .* are incomplete/);
    expect(await leftovers(parent)).toEqual([]);
  });

  it('are removed on SIGINT and SIGTERM, and the process still terminates by that signal', { timeout: 120_000 }, async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const parent = await mkdtemp(path.join(scratch, `${signal}-`));
      const child = await startChild(path.join(parent, 'out'));
      expect(await leftovers(parent)).toHaveLength(1);
      child.process.kill(signal);
      const [code, by] = (await child.exited) as [number | null, NodeJS.Signals | null];
      expect({ code, by }).toEqual({ code: null, by: signal });
      expect(await leftovers(parent)).toEqual([]);
    }
  });

  it('left by a killed export are removed by the next export beside it; those of live processes and other hosts are kept', { timeout: 120_000 }, async () => {
    const parent = await mkdtemp(path.join(scratch, 'killed-'));
    const child = await startChild(path.join(parent, 'out'));
    child.process.kill('SIGKILL');
    await child.exited;
    const [left] = await leftovers(parent);
    expect(left).toBeDefined();
    expect(await readdir(path.join(parent, left ?? ''))).toContain('index.sqlite');

    const host = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const live = `.offchannel-export-tmp-${host}-${process.ppid}-${'0'.repeat(16)}`;
    const otherHost = `.offchannel-export-tmp-${host === 'ffffffff' ? 'eeeeeeee' : 'ffffffff'}-1-${'0'.repeat(16)}`;
    for (const name of [live, otherHost]) {
      await mkdir(path.join(parent, name));
      await writeFile(path.join(parent, name, 'index.sqlite'), '');
    }
    expect(await exportTo(path.join(parent, 'next'))).toBeUndefined();
    expect((await leftovers(parent)).sort()).toEqual([live, otherHost].sort());
  });

  it('are judged by their lock, not by a pid: a dead export\'s is removed though its pid runs again; a running export\'s is kept though its pid does not run here', { timeout: 120_000 }, async () => {
    const parent = await mkdtemp(path.join(scratch, 'locks-'));
    const host = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const dirName = (pid: number, n: number): string => `.offchannel-export-tmp-${host}-${pid}-${String(n).repeat(16)}`;
    const make = async (name: string): Promise<string> => {
      const dir = path.join(parent, name);
      await mkdir(dir);
      await writeFile(path.join(dir, 'index.sqlite'), 'plaintext');
      await writeFile(path.join(dir, 'lock'), '');
      return dir;
    };
    // Left by a killed export whose pid now belongs to a running process (here, our parent).
    const reused = dirName(process.ppid, 1);
    await make(reused);
    // Held by running exports in another PID namespace (a container sharing the folder): their
    // pids are dead here, or are this process's own.
    const elsewhere = [dirName(await deadPid(), 2), dirName(process.pid, 3)];
    const holder = await holdLocks(await Promise.all(elsewhere.map(async (name) => path.join(await make(name), 'lock'))));
    try {
      expect(await exportTo(path.join(parent, 'next'))).toBeUndefined();
      expect((await leftovers(parent)).sort()).toEqual([...elsewhere].sort());
    } finally {
      holder.kill('SIGKILL');
      await once(holder, 'exit');
    }
    // Their exports killed outright: the next export removes both.
    expect(await exportTo(path.join(parent, 'after'))).toBeUndefined();
    expect(await leftovers(parent)).toEqual([]);
  });

  it('left half-made (killed between making and renaming it) are removed by the next export once no export can be making them', { timeout: 120_000 }, async () => {
    const parent = await mkdtemp(path.join(scratch, 'staging-'));
    const host = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const name = (n: number, of = host): string => `.offchannel-export-new-${of}-${process.pid}-${String(n).repeat(16)}`;
    const hourAgo = new Date(Date.now() - 3_600_000);
    const make = async (dirName: string, options: { readonly lock: boolean; readonly old: boolean }): Promise<string> => {
      const dir = path.join(parent, dirName);
      await mkdir(dir, { mode: 0o700 });
      if (options.lock) await writeFile(path.join(dir, 'lock'), '');
      if (options.old) await utimes(dir, hourAgo, hourAgo);
      return dir;
    };
    await make(name(1), { lock: true, old: false }); // locked by nobody now: its export is dead
    await make(name(2), { lock: false, old: true }); // killed before it took its lock, long ago
    await make(name(3), { lock: false, old: false }); // may be an export's about to lock it: kept
    const held = await make(name(4), { lock: true, old: true }); // an export holds it: kept
    await make(name(5, host === 'ffffffff' ? 'eeeeeeee' : 'ffffffff'), { lock: false, old: true }); // another host's
    await symlink(os.tmpdir(), path.join(parent, name(6))); // not a directory: never followed
    const holder = await holdLocks([path.join(held, 'lock')]);
    try {
      expect(await exportTo(path.join(parent, 'next'))).toBeUndefined();
      const staged = (await readdir(parent)).filter((entry) => entry.startsWith('.offchannel-export-new-')).sort();
      expect(staged).toEqual([name(3), name(4), name(5, host === 'ffffffff' ? 'eeeeeeee' : 'ffffffff'), name(6)].sort());
    } finally {
      holder.kill('SIGKILL');
      await once(holder, 'exit');
    }
    expect(await exportTo(path.join(parent, 'after'))).toBeUndefined();
    expect((await readdir(parent)).filter((entry) => entry.startsWith('.offchannel-export-new-')).sort()).toEqual([name(3), name(5, host === 'ffffffff' ? 'eeeeeeee' : 'ffffffff'), name(6)].sort());
  });
});

/**
 * Starts export-child.ts and waits until it is mid-export with its index on disk: the child
 * holds there (it does not go on until its stdin closes), however loaded the machine is.
 */
async function startChild(out: string): Promise<{ readonly process: ChildProcess; readonly exited: Promise<unknown[]> }> {
  const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', CHILD, archive.dir, out, 'hold'], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  const exited = once(child, 'exit');
  let output = '';
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const working = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /WORKING (\S+)/.exec(output);
      if (match) resolve(match[1] ?? '');
    });
    void exited.then(() => {
      reject(new Error(`export child exited early: ${output}`));
    });
  });
  const index = path.join(path.dirname(out), working, 'index.sqlite');
  expect((await stat(index)).mode & 0o777).toBe(0o600);
  return { process: child, exited };
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(child, 'exit');
  return child.pid as number;
}

/** A process holding the kernel locks on `files` (as running exports hold their directories'). */
async function holdLocks(files: readonly string[]): Promise<ChildProcess> {
  const script = `
    import { takeOsLock } from '@offchannel/core';
    const locks = ${JSON.stringify(files)}.map((file) => takeOsLock(file));
    console.log('held');
    setInterval(() => locks.length, 1000); // referenced: a collected handle releases its lock`;
  const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { cwd: import.meta.dirname, stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  expect(line.toString().trim()).toBe('held');
  return child;
}
