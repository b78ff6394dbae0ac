/**
 * The tamper-evidence promises, end to end through the CLI on real file-system archives:
 * keygen → signed checkpoints → verify --key, prove, verify-proof.
 */
import { chmod, cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, ZERO_HASH, canonicalBytes, canonicalize, formatCheckpoint, generateEd25519NoteKey, openNote, parseSignerKey, sha256Hex, signNote } from '@offchannel/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../testing/run-cli.ts';

const stream = 'demo:alice@firm.example';
let work: string;
let archive: string;
let key: string;
let vkey: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-cp-'));
  key = path.join(work, 'signing.key');
  const keygen = await runCli(['keygen', '--out', key, '--name', 'archive.firm.example/offchannel']);
  expect(keygen.code).toBe(0);
  vkey = keygen.stdout.trim().split('\n').at(-1) as string;
  archive = path.join(work, 'archive');
  expect((await runCli(['demo', '--no-connectors', '--archive', archive, '--signing-key', key])).code).toBe(0);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function copy(name: string): Promise<string> {
  const dir = path.join(work, name);
  await cp(archive, dir, { recursive: true });
  return dir;
}

async function segmentFile(dir: string): Promise<string> {
  const streamDir = path.join(dir, 'streams', stream);
  return path.join(streamDir, (await readdir(streamDir)).find((name) => name.endsWith('.jsonl')) as string);
}

describe('offchannel keygen', () => {
  it('writes a 0600 signing key, a .pub verifier key, prints the verifier key last, and never overwrites', async () => {
    expect((await stat(key)).mode & 0o777).toBe(0o600);
    expect(vkey).toMatch(/^archive\.firm\.example\/offchannel\+[0-9a-f]{8}\+[A-Za-z0-9+/=]{44}$/);
    expect((await readFile(`${key}.pub`, 'utf8')).trim()).toBe(vkey);
    expect(parseSignerKey(await readFile(key, 'utf8')).verifierKey).toBe(vkey);
    const again = await runCli(['keygen', '--out', key]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists; keygen never overwrites/);
    const state = path.join(work, 'state.key');
    expect((await runCli(['keygen', '--state', '--out', state])).code).toBe(0);
    expect((await stat(state)).mode & 0o777).toBe(0o600);
    expect(Buffer.from((await readFile(state, 'utf8')).trim(), 'base64')).toHaveLength(32);
  });

  it('fails closed when the signing key is missing, unreadable or shared', async () => {
    const missing = await runCli(['demo', '--no-connectors', '--archive', path.join(work, 'never'), '--signing-key', path.join(work, 'nope.key')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot be read; create one with `offchannel keygen/);
    const shared = path.join(work, 'shared.key');
    await writeFile(shared, await readFile(key), { mode: 0o644 });
    await chmod(shared, 0o644);
    expect((await runCli(['demo', '--no-connectors', '--archive', path.join(work, 'never'), '--signing-key', shared])).stderr).toMatch(/readable by group or others; run `chmod 600/);
    const garbage = path.join(work, 'garbage.key');
    await writeFile(garbage, 'PRIVATE+KEY+x+00000000+AAAA\n', { mode: 0o600 });
    const bad = await runCli(['demo', '--no-connectors', '--archive', path.join(work, 'never'), '--signing-key', garbage]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).not.toContain('AAAA');
  });
});

describe('offchannel verify --key', () => {
  it('verifies the signed checkpoints of an intact archive', async () => {
    const { code, stdout } = await runCli(['verify', archive, '--key', vkey]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/2 checkpoints, latest at size 16 signed by archive\.firm\.example\/offchannel/);
    expect(stdout).toContain('checkpoints verified');
    expect((await runCli(['verify', archive, '--key', `${key}.pub`])).code).toBe(0);
  });

  it('exits 1 on the whole-stream rewrite attack, which the chain alone cannot see', async () => {
    const dir = await copy('rewrite');
    const file = await segmentFile(dir);
    let prev = ZERO_HASH;
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n').map((line) => {
      const record = JSON.parse(line) as ArchiveRecord;
      const rewritten = canonicalBytes({ ...record, prev, ...(record.key === 'message:c3' ? { text: 'Could you do 4.25% fixed?' } : {}) });
      prev = sha256Hex(rewritten);
      return Buffer.from(rewritten).toString('utf8');
    });
    await chmod(file, 0o644);
    await writeFile(file, `${lines.join('\n')}\n`);
    expect((await runCli(['verify', dir])).code).toBe(0); // hash chain intact
    const { code, stdout } = await runCli(['verify', dir, '--key', vkey]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/FAIL: CRITICAL stream demo:alice@firm\.example seq 10: records 1–10 no longer hash to the root signed at size 10/);
  });

  it('exits 1 when the newest records were removed', async () => {
    const dir = await copy('truncated');
    const file = await segmentFile(dir);
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    await chmod(file, 0o644);
    await writeFile(file, `${lines.slice(0, 14).join('\n')}\n`);
    const { code, stdout } = await runCli(['verify', dir, '--key', vkey]);
    expect(code).toBe(1);
    expect(stdout).toContain('[CHECKPOINT_BEYOND_STREAM]');
  });

  it('reports equivocation as critical, and ignores checkpoints of other keys', async () => {
    const signer = parseSignerKey(await readFile(key, 'utf8'));
    const forked = path.join(work, 'forked.note');
    await writeFile(forked, signNote(formatCheckpoint({ origin: `${signer.name}/${stream}`, size: 16, root: new Uint8Array(32).fill(7) }), [signer]));
    const { code, stdout } = await runCli(['verify', archive, '--key', vkey, '--checkpoint', forked]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/CRITICAL .*two checkpoints signed for size 16 have different roots.*\[EQUIVOCATION\]/);
    const stranger = path.join(work, 'stranger.note');
    await writeFile(stranger, signNote(formatCheckpoint({ origin: `x/${stream}`, size: 16, root: new Uint8Array(32) }), [generateEd25519NoteKey('x')]));
    expect((await runCli(['verify', archive, '--key', vkey, '--checkpoint', stranger])).code).toBe(0);
  });

  it('rejects a checkpoint forged with another key, and ignores an unknown extra signature', async () => {
    const dir = await copy('forged');
    const note = path.join(dir, 'checkpoints', stream, '0000000000000016.note');
    const text = await readFile(note, 'utf8');
    await chmod(note, 0o644);
    await writeFile(note, `${text}— witness.example ${Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz').toString('base64')}\n`);
    expect((await runCli(['verify', dir, '--key', vkey])).code).toBe(0);
    const forger = generateEd25519NoteKey('archive.firm.example/offchannel');
    await writeFile(note, signNote(openNote(text, [parseSignerKey(await readFile(key, 'utf8')).verifier]).text, [forger]));
    const { code, stdout } = await runCli(['verify', dir, '--key', vkey]);
    expect(code).toBe(1);
    expect(stdout).toContain('[CHECKPOINT_UNTRUSTED]');
  });

  it('writes a signed JSON report with --report', async () => {
    const auditorKey = path.join(work, 'auditor.key');
    const auditor = await runCli(['keygen', '--out', auditorKey, '--name', 'auditor.example']);
    const auditorVkey = auditor.stdout.trim().split('\n').at(-1) as string;
    const reportFile = path.join(work, 'report.json');
    expect((await runCli(['verify', archive, '--key', vkey, '--report', reportFile, '--report-key', auditorKey])).code).toBe(0);
    const report = JSON.parse(await readFile(reportFile, 'utf8')) as { signature: { note: string; verifierKey: string }; report: { ok: boolean } };
    expect(report.report.ok).toBe(true);
    expect(report.signature.verifierKey).toBe(auditorVkey);
    const { signature, ...body } = report;
    const opened = openNote(signature.note, [parseSignerKey(await readFile(auditorKey, 'utf8')).verifier]);
    expect(opened.text).toBe(`offchannel verification report\nsha256 ${sha256Hex(Buffer.from(canonicalize(body), 'utf8'))}\n`);
    expect((await runCli(['verify', archive, '--report', reportFile])).code).toBe(2);
  });
});

describe('offchannel prove and verify-proof', () => {
  it('proves one record and checks the proof with only the verifier key', async () => {
    const proofFile = path.join(work, 'proof.json');
    expect((await runCli(['prove', archive, stream, '6', '--out', proofFile])).code).toBe(0);
    const { code, stdout } = await runCli(['verify-proof', proofFile, '--key', vkey]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^OK: record seq 6 of stream demo:alice@firm\.example \(edit, sent 2026-11-20T08:35:07\.000Z\) is in the log signed by archive\.firm\.example\/offchannel at tree size 16/);
    const proof = JSON.parse(await readFile(proofFile, 'utf8')) as { record: string };
    await writeFile(proofFile, JSON.stringify({ ...proof, record: proof.record.replace('4.10%', '4.00%') }));
    const tampered = await runCli(['verify-proof', proofFile, '--key', vkey]);
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toMatch(/^FAIL: record 6 is not in the log signed at size 16/);
    expect((await runCli(['verify-proof', proofFile])).code).toBe(2);
    expect((await runCli(['verify-proof', path.join(work, 'none.json'), '--key', vkey])).code).toBe(2);
    expect((await runCli(['prove', archive, stream, '17'])).code).toBe(1);
    expect((await runCli(['prove', archive, stream, 'x'])).code).toBe(2);
  });
});
