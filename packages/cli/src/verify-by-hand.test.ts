/**
 * docs/storage-format.md promises that an auditor can verify an archive with only bash,
 * sha256sum and jq. This runs that documented procedure (docs/verify-by-hand.sh) against real
 * archives — intact and tampered — and checks it agrees with `offchannel verify`.
 */
import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, HostAttestor, Recorder, ZERO_HASH, canonicalBytes, formatAttestation, parseSignerKey, sha256Hex, signNote, tilePath } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { runCli } from './testing/run-cli.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const script = path.join(import.meta.dirname, '..', '..', '..', 'docs', 'verify-by-hand.sh');
let work: string;
let archive: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-by-hand-'));
  archive = path.join(work, 'archive');
  expect((await runCli(['demo', '--no-connectors', '--archive', archive])).code).toBe(0);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function byHand(dir: string) {
  return spawnSync('bash', [script, dir], { encoding: 'utf8' });
}

it('verifies the demo archive with bash, sha256sum and jq alone', () => {
  const result = byHand(archive);
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  expect(result.stdout).toContain('OK: 16 records verified by hand');
});

it('catches the same tampering as offchannel verify', async () => {
  const segmentDir = path.join(archive, 'streams', 'demo:alice@firm.example');
  const segment = (await readdir(segmentDir)).find((name) => name.endsWith('.jsonl')) as string;
  const lines = (await readFile(path.join(segmentDir, segment), 'utf8')).split('\n');
  const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
    ['altered text', async (dir) => writeSegment(dir, lines.map((line) => line.replace('4.15%', '4.05%'))), /seq 5: its hash is not the prev of seq 6/],
    ['deleted line', async (dir) => writeSegment(dir, lines.filter((_, index) => index !== 9)), /seq 10: found seq 11/],
    [
      'deleted blob',
      async (dir) => {
        const raw = (JSON.parse(lines[2] as string) as { attachments: [{ sha256: string }] }).attachments[0].sha256;
        await rm(path.join(dir, 'blobs', 'sha256', raw));
      },
      /FAIL demo:alice@firm.example seq 3: blob [0-9a-f]{64} is missing/,
    ],
  ];
  for (const [name, tamper, message] of cases) {
    const dir = path.join(work, name.replace(' ', '-'));
    await cp(archive, dir, { recursive: true });
    await tamper(dir);
    const result = byHand(dir);
    expect(result.status, name).toBe(1);
    expect(result.stdout, name).toMatch(message);
    expect((await runCli(['verify', dir])).code, name).toBe(1);
  }

  async function writeSegment(dir: string, content: string[]): Promise<void> {
    const file = path.join(dir, 'streams', 'demo:alice@firm.example', segment);
    await chmod(file, 0o644);
    await writeFile(file, content.join('\n'));
  }
});

it('checks seals of full segments, and catches a truncated sealed segment', async () => {
  const dir = path.join(work, 'sealed');
  const sink = await openFsSink({ dir, segmentBytes: 1500 });
  const recorder = new Recorder({ sink });
  const writer = recorder.writer({ channel: 'demo', account: 'sealed', source: { package: 'test', version: '0' } });
  for (let index = 0; index < 30; index++) {
    await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'x' }, direction: 'inbound', native: { id: `m${index}` }, text: `long enough message ${index} `.repeat(8), ...(index % 7 === 0 ? { attachments: [{ bytes: Buffer.from(`file ${index}`), mime: 'text/plain' }] } : {}) });
  }
  await recorder.close();
  await sink.close();
  const intact = byHand(dir);
  expect(intact.status, intact.stdout).toBe(0);
  expect(intact.stdout).toContain('ok demo:sealed: 30 records');
  const streamDir = path.join(dir, 'streams', 'demo:sealed');
  const seals = (await readdir(streamDir)).filter((name) => name.endsWith('.seal.json')).sort();
  expect(seals.length).toBeGreaterThan(2);
  const segment = path.join(streamDir, (seals[1] as string).replace('.seal.json', '.jsonl'));
  await chmod(segment, 0o644);
  await truncate(segment, 100);
  const broken = byHand(dir);
  expect(broken.status).toBe(1);
  expect(broken.stdout).toMatch(/does not match the sha256 in its seal/);
});

it('checks signed checkpoints with openssl and sha256sum, and catches the whole-stream rewrite', async () => {
  const key = path.join(work, 'signing.key');
  expect((await runCli(['keygen', '--out', key, '--name', 'archive.firm.example/offchannel'])).code).toBe(0);
  const signed = path.join(work, 'signed');
  expect((await runCli(['demo', '--no-connectors', '--archive', signed, '--signing-key', key])).code).toBe(0);
  const intact = spawnSync('bash', [script, signed, `${key}.pub`], { encoding: 'utf8' });
  expect(intact.status, intact.stdout + intact.stderr).toBe(0);
  expect(intact.stdout).toContain('ok demo:alice@firm.example: 2 checkpoints signed by archive.firm.example/offchannel match the records');
  const file = path.join(signed, 'streams', 'demo:alice@firm.example', '0000000000000001.jsonl');
  let prev = ZERO_HASH;
  const rewritten = (await readFile(file, 'utf8')).trimEnd().split('\n').map((line) => {
    const record = JSON.parse(line) as ArchiveRecord;
    const bytes = canonicalBytes({ ...record, prev, ...(record.key === 'message:c3' ? { text: 'Could you do 4.25% fixed?' } : {}) });
    prev = sha256Hex(bytes);
    return Buffer.from(bytes).toString('utf8');
  });
  await chmod(file, 0o644);
  await writeFile(file, `${rewritten.join('\n')}\n`);
  expect(byHand(signed).status).toBe(0); // the chain alone is satisfied
  const caught = spawnSync('bash', [script, signed, `${key}.pub`], { encoding: 'utf8' });
  expect(caught.status).toBe(1);
  expect(caught.stdout).toContain('FAIL demo:alice@firm.example seq 10: records 1–10 do not hash to the root signed at size 10');
  const other = path.join(work, 'other.key');
  await runCli(['keygen', '--out', other, '--name', 'archive.firm.example/offchannel']);
  const forged = spawnSync('bash', [script, path.join(work, 'archive'), `${other}.pub`], { encoding: 'utf8' });
  expect(forged.status).toBe(1);
});

it('checks host attestations with openssl and sha256sum: signature, chain, and every attested head', async () => {
  const keyFile = path.join(work, 'attest-signing.key');
  expect((await runCli(['keygen', '--out', keyFile, '--name', 'archive.firm.example/offchannel'])).code).toBe(0);
  const signer = parseSignerKey(await readFile(keyFile, 'utf8'));
  const dir = path.join(work, 'attested');
  const sink = await openFsSink({ dir });
  let now = Date.parse('2026-11-21T23:55:00Z');
  const recorder = new Recorder({ sink, clock: () => new Date(now), checkpoints: { signer, everyRecords: 5 } });
  const writer = recorder.writer({ channel: 'demo', account: 'attested', source: { package: 'test', version: '0' } });
  const attestor = await HostAttestor.open({ sink, host: 'cap-1', signer, clock: () => new Date(now) });
  for (let round = 0; round < 3; round++) {
    for (let index = 0; index < 3; index++) {
      await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'x' }, direction: 'inbound', native: { id: `m${round}-${index}` }, text: `message ${round}.${index}` });
    }
    await attestor.attest(recorder.merkleHeads().map((head) => ({ stream: head.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' })));
    now += 300_000;
  }
  await recorder.close();
  await sink.close();
  const run = (archiveDir: string) => spawnSync('bash', [script, archiveDir, `${keyFile}.pub`], { encoding: 'utf8' });
  const intact = run(dir);
  expect(intact.status, intact.stdout + intact.stderr).toBe(0);
  expect(intact.stdout).toContain('ok demo:attested: 3 attested heads match the records');
  expect(intact.stdout).toContain('ok attestations of cap-1: 3 signed by archive.firm.example/offchannel, chained');

  const note = (base: string, day: string, seq: number): string => path.join(base, 'attestations', 'cap-1', day, `${String(seq).padStart(16, '0')}.note`);
  const rewrite = async (file: string, text: string): Promise<void> => {
    await chmod(file, 0o644);
    await writeFile(file, text);
  };
  const altered = path.join(work, 'attested-altered');
  await cp(dir, altered, { recursive: true });
  await rewrite(note(altered, '2026-11-22', 2), (await readFile(note(altered, '2026-11-22', 2), 'utf8')).replace(' connected', ' restarting'));
  expect(run(altered).stdout).toContain('FAIL attestation cap-1 #2: the signature does not verify');

  const deleted = path.join(work, 'attested-deleted');
  await cp(dir, deleted, { recursive: true });
  await rm(note(deleted, '2026-11-22', 2));
  expect(run(deleted).stdout).toMatch(/FAIL attestations of cap-1: #2 is missing or out of place/);

  const wrong = path.join(work, 'attested-wrong');
  await cp(dir, wrong, { recursive: true });
  const last = await readFile(note(wrong, '2026-11-22', 3), 'utf8');
  const prev = /^prev ([0-9a-f]{64})$/m.exec(last)?.[1] as string;
  const fake = formatAttestation(signer.name, { host: 'cap-1', time: '2026-11-22T00:05:00Z', seq: 3, prev, streams: [{ stream: 'demo:attested', size: 8, root: Buffer.alloc(32, 9).toString('base64'), state: 'connected' }] });
  await rewrite(note(wrong, '2026-11-22', 3), signNote(fake, [signer]));
  const caught = run(wrong);
  expect(caught.status).toBe(1);
  expect(caught.stdout).toContain('FAIL demo:attested seq 8: records 1–8 do not hash to the root attested at size 8');
});

it('names archive-log tiles as c2sp.org/tlog-tiles does past 256,000 entries (x segments), as offchannel writes them', () => {
  // Building a log that large is too slow for a test: the script's own tile_path function is
  // taken out of it and run in bash, against the tile paths the archive log writes.
  const indexes = [0, 7, 999, 1000, 1001, 1234, 999_999, 1_000_000, 1_234_067, 4_294_967_295, 35_184_372_088_831];
  for (let index = 0; index < 5000; index += 97) indexes.push(index);
  const result = spawnSync('bash', ['-c', `eval "$(sed -n '/^tile_path() {$/,/^}$/p' "$0")"; for i in "$@"; do tile_path "$i"; echo; done`, script, ...indexes.map(String)], { encoding: 'utf8' });
  expect(result.stderr).toBe('');
  expect(result.stdout.trimEnd().split('\n')).toEqual(indexes.map((index) => tilePath({ level: 0, index, width: 256 }).slice('0/'.length)));
  // The example of the spec, and an archive log of 256,001 entries: its last tile is partial.
  expect(result.stdout.split('\n')[indexes.indexOf(1_234_067)]).toBe('x001/x234/067');
  expect(tilePath({ level: 0, index: Math.floor(256_001 / 256), width: 256_001 % 256 })).toBe('0/x001/000.p/1');
});
