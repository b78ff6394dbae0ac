/**
 * Independent witnesses end to end, on the built CLI as real processes on loopback:
 * `keygen --witness`, two `witness serve` processes, `capture` with `signing.witnesses`,
 * `verify --witness … --quorum`. A witness that is down never delays capture; a forked
 * archive (same key, another history) is refused and stops signing; deleting the newest
 * checkpoints is caught by the witness policy where `verify --key` alone only warns.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MerkleLevels, consistencyProof, formatAddCheckpoint, formatCheckpoint, generateEd25519NoteKey, generateStateKey, leafHash, openStateStore, signNote, treeRoot } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterEach, describe, expect, it } from 'vitest';

const BIN = path.join(import.meta.dirname, '..', '..', 'dist', 'bin.js');
const BY_HAND = path.join(import.meta.dirname, '..', '..', '..', '..', 'docs', 'verify-by-hand.sh');

function byHand(cwd: string, args: readonly string[]): { code: number | null; stdout: string } {
  const result = spawnSync('bash', [BY_HAND, ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { code: result.status, stdout: result.stdout + result.stderr };
}
const dirs: string[] = [];
const children: ChildProcessWithoutNullStreams[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
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

function cli(args: readonly string[], cwd: string): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => {
        resolve(port);
      });
    });
  });
}

interface Witness {
  readonly proc: Proc;
  readonly url: string;
  readonly vkey: string;
}

async function workspace(): Promise<{ dir: string; logKey: ReturnType<typeof generateEd25519NoteKey> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-witness-e2e-'));
  dirs.push(dir);
  const logKey = generateEd25519NoteKey('witness-test.offchannel.example');
  await writeFile(path.join(dir, 'log.pub'), `${logKey.verifierKey}\n`);
  return { dir, logKey };
}

/** `keygen --witness` then `witness serve` on `port` (0: any). */
async function witness(dir: string, name: string, port = 0, keyText?: string): Promise<Witness> {
  const keyFile = path.join(dir, `${name}.key`);
  let vkey = keyText;
  if (vkey === undefined) {
    const made = cli(['keygen', '--witness', '--name', `${name}.witness.example`, '--out', keyFile], dir);
    expect(made.code).toBe(0);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    vkey = made.stdout.trim().split('\n').at(-1);
    expect(vkey).toMatch(new RegExp(`^${name}\\.witness\\.example\\+[0-9a-f]{8}\\+B`));
  }
  const proc = start(['witness', 'serve', '--key', keyFile, '--state', path.join(dir, `${name}-state`), '--listen', `127.0.0.1:${port}`, '--accept', path.join(dir, 'log.pub')], dir);
  await until(() => /serving (http:\/\/[^/]+)\/add-checkpoint/.test(proc.out()) || proc.child.exitCode !== null, `witness ${name} to listen`);
  const url = /serving (http:\/\/[^/]+)\/add-checkpoint/.exec(proc.out())?.[1];
  if (!url) throw new Error(`witness ${name} did not start: ${proc.err()}`);
  if (vkey === undefined) throw new Error('no verifier key');
  expect(proc.out().trim().split('\n').at(-1)).toBe(vkey);
  return { proc, url, vkey };
}

async function captureConfig(dir: string, archive: string, logKey: ReturnType<typeof generateEd25519NoteKey>, witnesses: readonly { url: string; vkey: string }[]): Promise<string> {
  const stateKey = generateStateKey();
  await writeFile(path.join(dir, `${archive}-signing.key`), `${logKey.signerKeyText()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, `${archive}-state.key`), `${stateKey}\n`, { mode: 0o600 });
  await openStateStore({ dir: path.join(dir, `${archive}-state`), key: Buffer.from(stateKey, 'base64') });
  await (await openFsSink({ dir: path.join(dir, archive) })).close();
  const config = path.join(dir, `${archive}.config.json`);
  const body = {
    archive: { dir: `./${archive}` },
    state: { dir: `./${archive}-state`, keyFile: `./${archive}-state.key` },
    signing: { keyFile: `./${archive}-signing.key`, everyRecords: 10, everyMs: 1000, witnesses: witnesses.map((entry) => ({ url: entry.url, key: entry.vkey })) },
    connectors: [{ channel: 'demo', account: 'alice', intervalMs: 10, repeat: true }],
  };
  await writeFile(config, JSON.stringify(body), { mode: 0o600 });
  return config;
}

/** Checkpoint file names of stream demo:alice, by size. */
async function checkpointFiles(dir: string, archive: string): Promise<Map<number, string[]>> {
  const folder = path.join(dir, archive, 'checkpoints', 'demo:alice');
  const names = await readdir(folder).catch(() => [] as string[]);
  const bySize = new Map<number, string[]>();
  for (const name of names) {
    const [size, kind] = name.split('.') as [string, string];
    bySize.set(Number(size), [...(bySize.get(Number(size)) ?? []), kind]);
  }
  return bySize;
}

async function stopCapture(proc: Proc): Promise<void> {
  proc.child.kill('SIGTERM');
  expect(await proc.exited).toBe(0);
}

describe('independent witnesses (real processes on loopback)', () => {
  it('capture with two witnesses: every checkpoint cosigned by both; verify --quorum 2 passes; deleting the newest checkpoints fails it', { timeout: 180_000 }, async () => {
    const { dir, logKey } = await workspace();
    const one = await witness(dir, 'w1');
    const two = await witness(dir, 'w2');
    const config = await captureConfig(dir, 'archive', logKey, [one, two]);
    const capture = start(['capture', '--config', config, '--log-level', 'info'], dir);
    await until(async () => (await checkpointFiles(dir, 'archive')).size >= 4 || capture.child.exitCode !== null, 'four checkpoints');
    await stopCapture(capture);
    const files = await checkpointFiles(dir, 'archive');
    for (const [size, kinds] of files) expect([size, kinds.filter((kind) => kind.startsWith('cosigned-')).length]).toEqual([size, 2]);
    const witnessArgs = ['--witness', one.vkey, '--witness', two.vkey];
    const passed = cli(['verify', 'archive', '--key', 'log.pub', ...witnessArgs, '--quorum', '2'], dir);
    expect(passed.stdout).toMatch(/latest cosigned by 2 witnesses/);
    expect(passed.code).toBe(0);
    // The same by hand: bash, coreutils, jq and openssl (docs/verify-by-hand.sh).
    const manual = byHand(dir, ['archive', 'log.pub', 'w1.key.pub', 'w2.key.pub']);
    expect(manual.stdout).toMatch(/cosigned by w1\.witness\.example at \d{4}-/);
    expect(manual.stdout).toMatch(/cosigned by w2\.witness\.example at /);
    expect(manual.code).toBe(0);
    // A single record's proof carries the cosignatures; verify-proof applies the same policy.
    expect(cli(['prove', 'archive', 'demo:alice', '3', '--out', 'proof.json'], dir).code).toBe(0);
    const proof = cli(['verify-proof', 'proof.json', '--key', 'log.pub', ...witnessArgs], dir);
    expect([proof.code, proof.stdout]).toEqual([0, expect.stringMatching(/cosigned by w1\.witness\.example at .*, w2\.witness\.example at /)]);
    const stranger = cli(['keygen', '--witness', '--name', 'w3.witness.example', '--out', 'w3.key'], dir).stdout.trim().split('\n').at(-1) as string;
    const short = cli(['verify-proof', 'proof.json', '--key', 'log.pub', ...witnessArgs, '--witness', stranger], dir);
    expect([short.code, short.stdout]).toEqual([1, expect.stringMatching(/2 valid witness cosignatures, the policy needs 3 \(missing: w3\.witness\.example\)/)]);
    expect(cli(['verify-proof', 'proof.json', '--key', 'log.pub', ...witnessArgs, '--witness', stranger, '--quorum', '2'], dir).code).toBe(0);

    // Delete the newest checkpoint and its cosignatures (an attacker with write access would
    // then rewrite the records after the last remaining one).
    const newest = Math.max(...files.keys());
    const folder = path.join(dir, 'archive', 'checkpoints', 'demo:alice');
    await chmod(folder, 0o755);
    const named = (kind: string): string => path.join(folder, `${String(newest).padStart(16, '0')}.${kind}`);
    // The note alone removed: its cosigned copies give it away.
    await unlink(named('note'));
    const lone = cli(['verify', 'archive', '--key', 'log.pub'], dir);
    expect([lone.code, lone.stdout]).toEqual([1, expect.stringMatching(/CHECKPOINT_NOTE_MISSING/)]);
    for (const kind of files.get(newest) ?? []) if (kind !== 'note') await unlink(named(kind));
    const keyOnly = cli(['verify', 'archive', '--key', 'log.pub'], dir);
    expect(keyOnly.code).toBe(0);
    expect(keyOnly.stdout).toMatch(/not yet covered by a signed checkpoint|NOT_CHECKPOINTED/);
    const withWitness = cli(['verify', 'archive', '--key', 'log.pub', ...witnessArgs], dir);
    expect(withWitness.code).toBe(1);
    expect(withWitness.stdout).toMatch(/UNWITNESSED_RECORDS/);
    const manualAfter = byHand(dir, ['archive', 'log.pub', 'w1.key.pub']);
    expect([manualAfter.code, manualAfter.stdout]).toEqual([1, expect.stringMatching(/are not witnessed/)]);
    one.proc.child.kill('SIGTERM');
    two.proc.child.kill('SIGTERM');
    expect(await one.proc.exited).toBe(0);
  });

  it('a witness that is down never delays capture; its cosignatures are added when it returns', { timeout: 180_000 }, async () => {
    const { dir, logKey } = await workspace();
    const port = await freePort();
    const made = cli(['keygen', '--witness', '--name', 'late.witness.example', '--out', path.join(dir, 'late.key')], dir);
    const vkey = made.stdout.trim().split('\n').at(-1) as string;
    const config = await captureConfig(dir, 'archive', logKey, [{ url: `http://127.0.0.1:${port}`, vkey }]);
    const began = Date.now();
    const capture = start(['capture', '--config', config, '--log-level', 'info'], dir);
    await until(async () => (await checkpointFiles(dir, 'archive')).size >= 3 || capture.child.exitCode !== null, 'three checkpoints with the witness down');
    const signedWhileDown = Date.now() - began;
    expect([...(await checkpointFiles(dir, 'archive')).values()].flat().filter((kind) => kind.startsWith('cosigned-'))).toEqual([]);
    expect(capture.err()).toMatch(/witness unreachable or failed; retrying later/);
    // Capture kept going: three checkpoints of ten records each were signed meanwhile.
    expect(signedWhileDown).toBeLessThan(60_000);
    const late = await witness(dir, 'late', port, vkey);
    await until(async () => [...(await checkpointFiles(dir, 'archive')).values()].flat().some((kind) => kind.startsWith('cosigned-')), 'a cosignature after the witness returned', 120_000);
    await stopCapture(capture);
    const verified = cli(['verify', 'archive', '--key', 'log.pub', '--witness', vkey], dir);
    expect(verified.stdout).toMatch(/latest cosigned by 1 witness/);
    expect(verified.code).toBe(0);
    late.proc.child.kill('SIGTERM');
  });

  it('a forked history under the same key is refused by the witness; signing stops; verify --quorum 1 fails on the fork', { timeout: 180_000 }, async () => {
    const { dir, logKey } = await workspace();
    const one = await witness(dir, 'w1');
    const honestConfig = await captureConfig(dir, 'honest', logKey, [one]);
    const honest = start(['capture', '--config', honestConfig, '--log-level', 'info'], dir);
    await until(async () => (await checkpointFiles(dir, 'honest')).size >= 3 || honest.child.exitCode !== null, 'honest checkpoints');
    await stopCapture(honest);
    // Another archive, same key, same stream, another history: a fork of the witnessed log.
    const forkConfig = await captureConfig(dir, 'fork', logKey, [one]);
    const fork = start(['capture', '--config', forkConfig, '--log-level', 'info'], dir);
    // Two log lines, written together, may reach this process in two chunks: wait for both.
    const refused = (): boolean => /FORK: witness w1\.witness\.example/.test(fork.err()) && /checkpointing stopped for this stream: witness w1\.witness\.example/.test(fork.err());
    await until(() => refused() || fork.child.exitCode !== null, 'the fork to be refused', 120_000);
    expect(refused()).toBe(true);
    await stopCapture(fork);
    expect([...(await checkpointFiles(dir, 'fork')).values()].flat().filter((kind) => kind.startsWith('cosigned-'))).toEqual([]);
    const forked = cli(['verify', 'fork', '--key', 'log.pub', '--witness', one.vkey, '--quorum', '1'], dir);
    expect(forked.code).toBe(1);
    expect(forked.stdout).toMatch(/WITNESS_QUORUM|UNWITNESSED_RECORDS/);
    expect(cli(['verify', 'honest', '--key', 'log.pub', '--witness', one.vkey, '--quorum', '1'], dir).code).toBe(0);
    one.proc.child.kill('SIGTERM');
  });

  it('a witness whose journal is replaced while it runs refuses to cosign, prints why and exits 1 (for its supervisor to restart it)', { timeout: 120_000 }, async () => {
    const { dir, logKey } = await workspace();
    const served = await witness(dir, 'w1');
    const request = async (size: number): Promise<number> => {
      const levels = new MerkleLevels();
      for (let index = 0; index < size; index++) levels.append(leafHash(Buffer.from(`r${index}`)));
      const note = signNote(formatCheckpoint({ origin: logKey.name, size, root: await treeRoot(levels) }), [logKey]);
      const body = formatAddCheckpoint({ oldSize: size === 2 ? 0 : 2, proof: size === 2 ? [] : await consistencyProof(levels, 2, size), note });
      const answer = await fetch(`${served.url}/add-checkpoint`, { method: 'POST', body });
      await answer.text();
      return answer.status;
    };
    expect(await request(2)).toBe(200);
    const journal = path.join(dir, 'w1-state', 'journal');
    const copy = await readFile(journal);
    await unlink(journal);
    await writeFile(journal, copy, { mode: 0o600 });
    expect(await request(3)).toBe(500);
    expect(await served.proc.exited).toBe(1);
    expect(served.proc.err()).toMatch(/moved, replaced or deleted.*the witness stopped \(exit 1\)/);
    expect(served.proc.err()).not.toContain(logKey.name);
  });
});

