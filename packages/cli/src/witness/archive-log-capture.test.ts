/**
 * The archive log end to end (docs/witnessing.md), on the built CLI as real processes on
 * loopback with real Ed25519: capture with `signing.archiveLog` and two `witness serve`
 * processes; the archive log, not each stream, is cosigned; `verify --witness … --quorum 2`
 * passes; deleting a stream's newest checkpoint fails it; a forked archive log is refused
 * (422) and signing stops. And the reason for it all: one request per witness per interval,
 * whatever the number of streams (200 streams measured against per-stream witnessing).
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { generateEd25519NoteKey, generateStateKey, openArchiveLogIndex, openStateStore } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterEach, describe, expect, it } from 'vitest';

const BIN = path.join(import.meta.dirname, '..', '..', 'dist', 'bin.js');
const BY_HAND = path.join(import.meta.dirname, '..', '..', '..', '..', 'docs', 'verify-by-hand.sh');

/** docs/verify-by-hand.sh: bash, coreutils, jq, xxd and openssl, no offchannel code. */
function byHand(cwd: string, args: readonly string[]): { code: number | null; stdout: string } {
  const result = spawnSync('bash', [BY_HAND, ...args], { cwd, encoding: 'utf8', timeout: 300_000 });
  return { code: result.status, stdout: result.stdout + result.stderr };
}
const dirs: string[] = [];
const children: ChildProcessWithoutNullStreams[] = [];
const servers: Server[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  for (const server of servers.splice(0)) server.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

interface Proc {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
  out(): string;
  err(): string;
}

function start(args: readonly string[], cwd: string): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { child, exited, out: () => out, err: () => err };
}

function cli(args: readonly string[], cwd: string): { code: number | null; stdout: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout + result.stderr };
}

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 90_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Witness {
  readonly proc: Proc;
  readonly url: string;
  readonly vkey: string;
}

async function witness(dir: string, name: string): Promise<Witness> {
  const keyFile = path.join(dir, `${name}.key`);
  const made = cli(['keygen', '--witness', '--name', `${name}.witness.example`, '--out', keyFile], dir);
  expect(made.code).toBe(0);
  const vkey = made.stdout.trim().split('\n').at(-1) as string;
  const proc = start(['witness', 'serve', '--key', keyFile, '--state', path.join(dir, `${name}-state`), '--listen', '127.0.0.1:0', '--accept', path.join(dir, 'log.pub'), '--rate', '1000'], dir);
  await until(() => /serving (http:\/\/[^/]+)\/add-checkpoint/.test(proc.out()) || proc.child.exitCode !== null, `witness ${name} to listen`);
  const url = /serving (http:\/\/[^/]+)\/add-checkpoint/.exec(proc.out())?.[1];
  if (!url) throw new Error(`witness ${name} did not start: ${proc.err()}`);
  return { proc, url, vkey };
}

/** A loopback proxy in front of `target` that counts the add-checkpoint requests passing through. */
async function countingProxy(target: string): Promise<{ url: string; count: () => number }> {
  let count = 0;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      count++;
      fetch(`${target}${request.url ?? '/'}`, { method: request.method ?? 'POST', body: Buffer.concat(chunks), headers: { 'content-type': 'text/plain; charset=utf-8' } })
        .then(async (answer) => {
          const body = Buffer.from(await answer.arrayBuffer());
          response.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'text/plain' });
          response.end(body);
        })
        .catch(() => {
          response.writeHead(502);
          response.end();
        });
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, count: () => count };
}

async function workspace(): Promise<{ dir: string; logKey: ReturnType<typeof generateEd25519NoteKey> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-archive-log-e2e-'));
  dirs.push(dir);
  const logKey = generateEd25519NoteKey('archive-log-test.offchannel.example');
  await writeFile(path.join(dir, 'log.pub'), `${logKey.verifierKey}\n`);
  return { dir, logKey };
}

interface Setup {
  readonly streams?: number;
  readonly intervalMs?: number;
  readonly everyRecords?: number;
  readonly everyMs?: number;
  readonly archiveLog?: boolean;
  readonly archiveEveryMs?: number;
}

async function captureConfig(dir: string, archive: string, logKey: ReturnType<typeof generateEd25519NoteKey>, witnesses: readonly { url: string; vkey: string }[], setup: Setup = {}): Promise<string> {
  const stateKey = generateStateKey();
  await writeFile(path.join(dir, `${archive}-signing.key`), `${logKey.signerKeyText()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, `${archive}-state.key`), `${stateKey}\n`, { mode: 0o600 });
  await openStateStore({ dir: path.join(dir, `${archive}-state`), key: Buffer.from(stateKey, 'base64') });
  await (await openFsSink({ dir: path.join(dir, archive) })).close();
  const config = path.join(dir, `${archive}.config.json`);
  const everyMs = setup.everyMs ?? 1000;
  const body = {
    archive: { dir: `./${archive}` },
    state: { dir: `./${archive}-state`, keyFile: `./${archive}-state.key` },
    signing: {
      keyFile: `./${archive}-signing.key`,
      everyRecords: setup.everyRecords ?? 10,
      everyMs,
      witnesses: witnesses.map((entry) => ({ url: entry.url, key: entry.vkey })),
      ...(setup.archiveLog === false ? {} : { archiveLog: { everyMs: setup.archiveEveryMs ?? everyMs } }),
    },
    coverage: { attestEveryMs: 0 },
    connectors: Array.from({ length: setup.streams ?? 3 }, (_, index) => ({ channel: 'demo', account: `u${String(index).padStart(3, '0')}`, intervalMs: setup.intervalMs ?? 10, repeat: true })),
  };
  await writeFile(config, JSON.stringify(body), { mode: 0o600 });
  return config;
}

/** Checkpoint file names of one log (a stream or `archive-log`), by size. */
async function files(dir: string, archive: string, log: string): Promise<Map<number, string[]>> {
  const names = await readdir(path.join(dir, archive, 'checkpoints', log)).catch(() => [] as string[]);
  const bySize = new Map<number, string[]>();
  for (const name of names) {
    const [size, kind] = name.split('.') as [string, string];
    bySize.set(Number(size), [...(bySize.get(Number(size)) ?? []), kind]);
  }
  return bySize;
}

const cosignedCount = (bySize: Map<number, string[]>): number => [...bySize.values()].flat().filter((kind) => kind.startsWith('cosigned-')).length;

async function stopCapture(proc: Proc): Promise<void> {
  proc.child.kill('SIGTERM');
  expect(await proc.exited).toBe(0);
}

describe('the archive log, witnessed (real processes on loopback)', () => {
  it('two witnesses cosign the archive log, not each stream; verify --quorum 2 passes; a deleted newest stream checkpoint fails it', { timeout: 600_000 }, async () => {
    const { dir, logKey } = await workspace();
    const one = await witness(dir, 'w1');
    const two = await witness(dir, 'w2');
    const config = await captureConfig(dir, 'archive', logKey, [one, two]);
    const capture = start(['capture', '--config', config, '--log-level', 'info'], dir);
    await until(async () => cosignedCount(await files(dir, 'archive', 'archive-log')) >= 4 || capture.child.exitCode !== null, 'two archive checkpoints cosigned by both witnesses');
    await stopCapture(capture);
    const archiveLog = await files(dir, 'archive', 'archive-log');
    const newest = Math.max(...archiveLog.keys());
    expect((archiveLog.get(newest) ?? []).filter((kind) => kind.startsWith('cosigned-'))).toHaveLength(2);
    // The streams' own checkpoints are not sent to the witnesses.
    expect(cosignedCount(await files(dir, 'archive', 'demo:u000'))).toBe(0);
    expect((await files(dir, 'archive', 'demo:u000')).size).toBeGreaterThan(0);
    // What the archive log includes is kept beside the key index (0600), for the newest archive checkpoint.
    const indexFile = path.join(dir, 'archive-state', 'archive-log-index.sqlite');
    expect((await stat(indexFile)).mode & 0o777).toBe(0o600);
    const index = openArchiveLogIndex({ file: indexFile });
    expect(index.head('archive-log')?.size).toBe(newest);
    expect([...index.streams('archive-log').keys()].sort()).toEqual(['demo:u000', 'demo:u001', 'demo:u002']);
    // A clean stop includes each stream's final checkpoint.
    expect(index.streams('archive-log').get('demo:u000')).toBe(Math.max(...(await files(dir, 'archive', 'demo:u000')).keys()));
    index.close();
    const witnessArgs = ['--witness', one.vkey, '--witness', two.vkey];
    const passed = cli(['verify', 'archive', '--key', 'log.pub', ...witnessArgs, '--quorum', '2'], dir);
    expect(passed.stdout).toMatch(/archive log archive-log: \d+ entries; witnessed archive checkpoint at size \d+ cosigned by w1\.witness\.example, w2\.witness\.example/);
    expect(passed.code).toBe(0);
    const manual = byHand(dir, ['archive', 'log.pub', 'w1.key.pub', 'w2.key.pub']);
    expect(manual.stdout).toMatch(/ok archive log: checkpoint at size \d+ cosigned by w1\.witness\.example at /);
    expect(manual.stdout).toMatch(/ok demo:u002: checkpoint at size \d+ is an entry of the witnessed archive log/);
    expect(manual.code).toBe(0);
    // A single record's proof carries its checkpoint's inclusion in the witnessed archive checkpoint.
    expect(cli(['prove', 'archive', 'demo:u000', '3', '--out', 'proof.json'], dir).code).toBe(0);
    const proof = cli(['verify-proof', 'proof.json', '--key', 'log.pub', ...witnessArgs, '--quorum', '2'], dir);
    expect([proof.code, proof.stdout]).toEqual([0, expect.stringMatching(/that checkpoint is entry \d+ of archive log archive-log at size \d+, cosigned by w1\.witness\.example at .*, w2\.witness\.example at /)]);
    const json = JSON.parse(await readFile(path.join(dir, 'proof.json'), 'utf8')) as { archiveLog: { index: number; treeSize: number } };
    await writeFile(path.join(dir, 'moved.json'), JSON.stringify({ ...json, archiveLog: { ...json.archiveLog, index: (json.archiveLog.index + 1) % json.archiveLog.treeSize } }));
    const moved = cli(['verify-proof', 'moved.json', '--key', 'log.pub', ...witnessArgs], dir);
    expect([moved.code, moved.stdout]).toEqual([1, expect.stringMatching(/is not entry \d+ of the archive log signed at size \d+: the proof was altered \[PROOF_INVALID\]/)]);

    // An attacker deletes demo:u001's newest checkpoint (to rewrite the records after the previous one).
    const stream = await files(dir, 'archive', 'demo:u001');
    const folder = path.join(dir, 'archive', 'checkpoints', 'demo:u001');
    await chmod(folder, 0o755);
    await unlink(path.join(folder, `${String(Math.max(...stream.keys())).padStart(16, '0')}.note`));
    const keyOnly = cli(['verify', 'archive', '--key', 'log.pub'], dir);
    expect(keyOnly.code).toBe(0);
    const failed = cli(['verify', 'archive', '--key', 'log.pub', ...witnessArgs, '--quorum', '2'], dir);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/ARCHIVE_LOG_ENTRY_MISSING/);
    expect(failed.stdout).toMatch(/UNWITNESSED_RECORDS/);
    const manualAfter = byHand(dir, ['archive', 'log.pub', 'w1.key.pub']);
    expect([manualAfter.code, manualAfter.stdout]).toEqual([1, expect.stringMatching(/FAIL demo:u001 seq \d+: (records after the newest checkpoint|the newest checkpoint is not in the witnessed archive log)/)]);
    one.proc.child.kill('SIGTERM');
    two.proc.child.kill('SIGTERM');
    expect(await one.proc.exited).toBe(0);
  });

  it('a forked archive log (same key, another history) is refused with 422; signing stops; verify --quorum 1 fails on the fork', { timeout: 300_000 }, async () => {
    const { dir, logKey } = await workspace();
    const one = await witness(dir, 'w1');
    const honestConfig = await captureConfig(dir, 'honest', logKey, [one]);
    const honest = start(['capture', '--config', honestConfig, '--log-level', 'info'], dir);
    await until(async () => cosignedCount(await files(dir, 'honest', 'archive-log')) >= 2 || honest.child.exitCode !== null, 'honest archive checkpoints cosigned');
    await stopCapture(honest);
    // Another archive with the same key: its archive log has the same origin, another history —
    // longer than the honest one by its first archive checkpoint, so the witness checks a
    // consistency proof from the size it cosigned, and refuses it (422).
    const forkConfig = await captureConfig(dir, 'fork', logKey, [one], { streams: 5, archiveEveryMs: 6000 });
    const fork = start(['capture', '--config', forkConfig, '--log-level', 'info'], dir);
    const refused = (): boolean => /FORK: witness w1\.witness\.example/.test(fork.err()) && /checkpointing stopped for this stream: the archive log/.test(fork.err());
    await until(() => refused() || fork.child.exitCode !== null, 'the forked archive log to be refused', 120_000);
    expect(fork.err()).toMatch(/archive log stopped signing: witness w1\.witness\.example: the witness has cosigned a tree at size \d+ that this checkpoint does not extend \(consistency proof refused\)/);
    await stopCapture(fork);
    expect(cosignedCount(await files(dir, 'fork', 'archive-log'))).toBe(0);
    // The witness kept the fork's signed checkpoint as evidence.
    expect((await readdir(path.join(dir, 'w1-state', 'evidence'))).length).toBeGreaterThan(0);
    const forked = cli(['verify', 'fork', '--key', 'log.pub', '--witness', one.vkey, '--quorum', '1'], dir);
    expect(forked.code).toBe(1);
    expect(forked.stdout).toMatch(/ARCHIVE_LOG_QUORUM/);
    expect(cli(['verify', 'honest', '--key', 'log.pub', '--witness', one.vkey, '--quorum', '1'], dir).code).toBe(0);
    one.proc.child.kill('SIGTERM');
  });

  it('200 streams: one request per witness per interval with the archive log, about one per stream without', { timeout: 300_000 }, async () => {
    const { dir, logKey } = await workspace();
    const one = await witness(dir, 'w1');
    const measured: Record<string, { requests: number; intervals: number }> = {};
    for (const mode of ['per-stream', 'archive-log'] as const) {
      const proxy = await countingProxy(one.url);
      const archive = `archive-${mode}`;
      const config = await captureConfig(dir, archive, logKey, [{ url: proxy.url, vkey: one.vkey }], { streams: 200, intervalMs: 250, everyRecords: 1_000_000, everyMs: 2000, archiveLog: mode === 'archive-log' });
      const capture = start(['capture', '--config', config, '--log-level', 'warn'], dir);
      // Three intervals after every stream signed its first checkpoint.
      const signedEverywhere = async (): Promise<boolean> => (await readdir(path.join(dir, archive, 'checkpoints')).catch(() => [])).filter((name) => name.startsWith('demo:')).length >= 200;
      await until(async () => (await signedEverywhere()) || capture.child.exitCode !== null, `${mode}: every stream signed`, 180_000);
      const [before, began] = [proxy.count(), Date.now()];
      await new Promise((resolve) => setTimeout(resolve, 6000));
      const requests = proxy.count() - before;
      const intervals = (Date.now() - began) / 2000;
      measured[mode] = { requests, intervals };
      await stopCapture(capture);
    }
    const perStream = measured['per-stream'] as { requests: number; intervals: number };
    const archiveLog = measured['archive-log'] as { requests: number; intervals: number };
    const rate = (entry: { requests: number; intervals: number }): number => entry.requests / entry.intervals;
    // Printed for the record (the machine may be shared; the ratio is what counts).
    console.log(`witness requests per 2 s interval, 200 streams: per-stream ${rate(perStream).toFixed(1)}, archive log ${rate(archiveLog).toFixed(1)}, ratio ${(rate(perStream) / Math.max(rate(archiveLog), 0.1)).toFixed(0)}`);
    expect(archiveLog.requests).toBeLessThanOrEqual(Math.ceil(archiveLog.intervals) + 1);
    expect(archiveLog.requests).toBeGreaterThanOrEqual(1);
    // Per stream, every stream that signed in the interval costs a request (fewer sign when the machine is busy).
    expect(rate(perStream)).toBeGreaterThan(10 * rate(archiveLog));
    one.proc.child.kill('SIGTERM');
  });
});
