/**
 * `offchannel verify --key` and host attestations: an intact chain passes; an attestation
 * altered, deleted, or forged with another key is caught and named; `--since` reads only the
 * attestations after the saved state and still catches one deleted since.
 */
import { chmod, cp, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CaptureInput, HostAttestor, Recorder, formatAttestation, generateEd25519NoteKey, parseSignerKey, signNote } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../testing/run-cli.ts';

let work: string;
let archive: string;
let vkey: string;
let keyName: string;
const T0 = Date.parse('2026-11-21T23:50:00Z');

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

/** Six attestations of host cap-1, five minutes apart across midnight, while demo:alice grows and demo:bob idles. */
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-verify-attest-'));
  archive = path.join(work, 'archive');
  const keyFile = path.join(work, 'signing.key');
  const keygen = await runCli(['keygen', '--out', keyFile, '--name', 'archive.firm.example/offchannel']);
  expect(keygen.code).toBe(0);
  vkey = keygen.stdout.trim().split('\n').at(-1) as string;
  const signer = parseSignerKey(await readFile(keyFile, 'utf8'));
  keyName = signer.name;
  const sink = await openFsSink({ dir: archive });
  let now = T0;
  const recorder = new Recorder({ sink, clock: () => new Date(now), checkpoints: { signer, everyRecords: 4 } });
  const alice = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  const bob = recorder.writer({ channel: 'demo', account: 'bob', source: { package: 'test', version: '0' } });
  await bob.capture(message(0));
  const attestor = await HostAttestor.open({ sink, host: 'cap-1', signer, clock: () => new Date(now) });
  for (let round = 0; round < 6; round++) {
    for (let index = 0; index < 3; index++) await alice.capture(message(round * 10 + index));
    await attestor.attest(recorder.merkleHeads().map((head) => ({ stream: head.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' })));
    now += 300_000;
  }
  await recorder.close();
  await sink.close();
}, 60_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function copy(name: string): Promise<string> {
  const target = path.join(work, name);
  await cp(archive, target, { recursive: true });
  return target;
}

function note(dir: string, day: string, seq: number): string {
  return path.join(dir, 'attestations', 'cap-1', day, `${String(seq).padStart(16, '0')}.note`);
}

async function rewrite(file: string, bytes: string): Promise<void> {
  await chmod(file, 0o644);
  await writeFile(file, bytes);
}

describe('offchannel verify --key with host attestations', () => {
  it('passes the intact chain and reports it', async () => {
    expect(await readdir(path.join(archive, 'attestations', 'cap-1'))).toEqual(['2026-11-21', '2026-11-22']);
    const result = await runCli(['verify', archive, '--key', vkey]);
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toContain('attestations of host cap-1: 6 verified, latest #6 at 2026-11-22T00:15:00Z');
  }, 60_000);

  it('catches an altered attestation', async () => {
    const dir = await copy('altered');
    const file = note(dir, '2026-11-21', 2);
    await rewrite(file, (await readFile(file, 'utf8')).replace('demo:bob 1 ', 'demo:bob 2 '));
    const result = await runCli(['verify', dir, '--key', vkey]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('FAIL: CRITICAL attestation cap-1 #2 (attestations/cap-1/2026-11-21): the signature of trusted key');
    expect(result.stdout).toContain('[ATTESTATION_FORGED]');
  }, 60_000);

  it('catches a deleted attestation, in the middle and at the head of a saved chain', async () => {
    const dir = await copy('deleted');
    await unlink(note(dir, '2026-11-22', 4));
    const result = await runCli(['verify', dir, '--key', vkey]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('FAIL: CRITICAL attestation cap-1 #4 is missing before #5: deleted from the chain [ATTESTATION_MISSING]');

    const saved = await copy('saved');
    const state = path.join(work, 'state.json');
    expect((await runCli(['verify', saved, '--key', vkey, '--save', state])).code).toBe(0);
    expect(JSON.parse(await readFile(state, 'utf8')).attestations).toEqual({ 'cap-1': { seq: 6, hash: expect.stringMatching(/^[0-9a-f]{64}$/) as string } });
    const again = await runCli(['verify', saved, '--key', vkey, '--since', state]);
    expect(again.code, again.stdout).toBe(0);
    expect(again.stdout).toContain('attestations of host cap-1: 0 verified since the saved state, latest #6');
    await unlink(note(saved, '2026-11-22', 6));
    const after = await runCli(['verify', saved, '--key', vkey, '--since', state]);
    expect(after.code).toBe(1);
    expect(after.stdout).toContain('attestation cap-1 #6, verified by an earlier audit, is no longer stored: it was deleted [ATTESTATION_MISSING]');
  }, 60_000);

  it('catches an attestation forged with another key, and one the key signed over a head the records do not have', async () => {
    const dir = await copy('forged');
    const file = note(dir, '2026-11-21', 2);
    const original = await readFile(file, 'utf8');
    const other = generateEd25519NoteKey(keyName);
    await rewrite(file, signNote(original.slice(0, original.lastIndexOf('\n\n') + 1), [other]));
    const result = await runCli(['verify', dir, '--key', vkey]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('FAIL: CRITICAL attestation cap-1 #2 (attestations/cap-1/2026-11-21): no signature from a trusted key');
    expect(result.stdout).toContain('[ATTESTATION_UNTRUSTED]');

    // A head the stream never had, validly signed and chained: only the records can tell.
    const wrong = await copy('wrong-head');
    const lastFile = note(wrong, '2026-11-22', 6);
    const text = (await readFile(lastFile, 'utf8')).split('\n\n')[0] as string;
    const lines = text.split('\n');
    const prev = (lines[3] as string).slice('prev '.length);
    const signer = parseSignerKey(await readFile(path.join(work, 'signing.key'), 'utf8'));
    const fake = formatAttestation(keyName, { host: 'cap-1', time: '2026-11-22T00:15:00Z', seq: 6, prev, streams: [{ stream: 'demo:alice', size: 17, root: Buffer.alloc(32, 7).toString('base64'), state: 'connected' }] });
    await rewrite(lastFile, signNote(fake, [signer]));
    const mismatch = await runCli(['verify', wrong, '--key', vkey]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stdout).toContain('stream demo:alice seq 17: records 1–17 do not hash to the root attested at that size in attestation cap-1 #6');
    expect(mismatch.stdout).toContain('[ATTESTATION_ROOT_MISMATCH]');
  }, 60_000);
});
