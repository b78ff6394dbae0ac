/**
 * The audit's seal check on the digests the verify pass took as it read each sealed segment
 * (segment-digests.ts) must catch exactly what a second read catches: an altered or a
 * truncated sealed segment, even the last sealed one, with the same findings and messages —
 * and a segment changed after the verify pass read it.
 */
import { createHash } from 'node:crypto';
import { chmod, cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type AuditFinding, Recorder, generateEd25519NoteKey, verifyArchive } from '@offchannel/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FsSink, openFsSink } from './fs-sink.ts';
import { SegmentDigests } from './segment-digests.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const stream = 'demo:alice';
let work: string;
let pristine: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-digests-'));
  pristine = path.join(work, 'pristine');
  const sink = await openFsSink({ dir: pristine, segmentBytes: 6_000 });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 50 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 't', version: '0' } });
  for (let index = 1; index <= 120; index++) {
    await writer.capture({
      kind: 'message',
      sentAt: '2026-11-21T10:00:00Z',
      conversation: { id: 'c1', type: 'direct' },
      sender: { id: 'bob' },
      direction: 'inbound',
      native: { id: `m${index}` },
      text: `message ${index} `.repeat(6),
    });
  }
  await recorder.close();
  await sink.close();
}, 60_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The sealed segments, oldest first. */
async function sealedSegments(dir: string): Promise<string[]> {
  const streamDir = path.join(dir, 'streams', stream);
  const names = await readdir(streamDir);
  return names
    .filter((name) => name.endsWith('.jsonl') && names.includes(name.replace('.jsonl', '.seal.json')))
    .sort()
    .map((name) => path.join(streamDir, name));
}

async function copy(name: string): Promise<string> {
  const dir = path.join(work, name);
  await cp(pristine, dir, { recursive: true });
  return dir;
}

async function rewrite(file: string, change: (text: string) => string): Promise<void> {
  await chmod(file, 0o644);
  await writeFile(file, change(await readFile(file, 'utf8')));
  await chmod(file, 0o444);
}

async function audit(sink: FsSink): Promise<AuditFinding[]> {
  const findings: AuditFinding[] = [];
  for await (const finding of sink.audit()) findings.push(finding);
  return findings;
}

/** The audit after every segment was read (and hashed) by readSegments, as a verify pass does. */
async function auditAfterRead(dir: string, between?: () => Promise<void>): Promise<AuditFinding[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  try {
    let segments = 0;
    for await (const _segment of sink.readSegments(stream)) segments++;
    expect(segments).toBeGreaterThan(3);
    await between?.();
    return await audit(sink);
  } finally {
    await sink.close();
  }
}

/** The audit alone: every sealed segment read and hashed by the audit itself. */
async function auditAlone(dir: string): Promise<AuditFinding[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  try {
    return await audit(sink);
  } finally {
    await sink.close();
  }
}

it('finds nothing on an intact archive after the verify pass hashed its sealed segments', { timeout: 60_000 }, async () => {
  expect((await sealedSegments(pristine)).length).toBeGreaterThan(3);
  expect(await auditAfterRead(pristine)).toEqual([]);
  const sink = await openFsSink({ dir: pristine, readOnly: true });
  const report = await verifyArchive(sink, { verifiers: [key.verifier], workers: 2 });
  await sink.close();
  expect(report.streams[0]?.workers, 'verified by worker threads (readSegments)').toBe(2);
  expect(report.failures).toEqual([]);
});

it('catches an altered and a truncated sealed segment, even the last one, as the audit alone does', { timeout: 60_000 }, async () => {
  const damage: [string, (segments: string[]) => Promise<void>][] = [
    ['altered', (segments) => rewrite(segments[1] as string, (text) => text.replace(/message (\d+) /, 'massage $1 '))],
    ['altered last', (segments) => rewrite(segments.at(-1) as string, (text) => text.replace(/message (\d+) /, 'massage $1 '))],
    ['truncated', (segments) => rewrite(segments[2] as string, (text) => text.slice(0, text.indexOf('\n') + 1))],
    ['truncated last', (segments) => rewrite(segments.at(-1) as string, (text) => text.slice(0, text.lastIndexOf('\n', text.length - 2) + 1))],
    ['grown last', (segments) => rewrite(segments.at(-1) as string, (text) => `${text}${text.slice(0, text.indexOf('\n') + 1)}`)],
  ];
  for (const [name, apply] of damage) {
    const dir = await copy(name.replace(' ', '-'));
    await apply(await sealedSegments(dir));
    const after = await auditAfterRead(dir);
    expect(after.map((finding) => finding.code), name).toContain('SEGMENT_SEAL_MISMATCH');
    expect(after, name).toEqual(await auditAlone(dir));
    // The whole verification, with workers reading the segments, names it too (as without workers).
    const sink = await openFsSink({ dir, readOnly: true });
    const parallel = await verifyArchive(sink, { verifiers: [key.verifier], workers: 2 });
    const sequential = await verifyArchive(sink, { verifiers: [key.verifier], workers: 0 });
    await sink.close();
    const seal = sequential.failures.find((failure) => failure.code === 'SEGMENT_SEAL_MISMATCH');
    expect(seal, name).toBeDefined();
    expect(parallel.failures, name).toContainEqual(seal);
    expect(parallel.failures, name).toEqual(sequential.failures);
  }
});

it('reads a sealed segment again when it changed after the verify pass read it', { timeout: 60_000 }, async () => {
  for (const [name, change] of [
    ['altered', (text: string) => text.replace(/message (\d+) /, 'massage $1 ')],
    ['truncated', (text: string) => text.slice(0, text.indexOf('\n') + 1)],
  ] as const) {
    const dir = await copy(`changed-${name}`);
    const target = (await sealedSegments(dir)).at(-1) as string;
    const findings = await auditAfterRead(dir, () => rewrite(target, change));
    expect(findings.map((finding) => finding.code), name).toContain('SEGMENT_SEAL_MISMATCH');
    expect(findings, name).toEqual(await auditAlone(dir));
  }
});

it('hands out the size and SHA-256 of what was read, once, and only while the file is unchanged', async () => {
  const file = (await sealedSegments(pristine))[0] as string;
  const bytes = await readFile(file);
  const digests = new SegmentDigests();
  digests.remember(file, (await digests.identify(file)) as string, bytes);
  expect(await digests.take(file)).toEqual({ bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  expect(await digests.take(file), 'used once').toBeUndefined();
  digests.remember(file, 'another file', bytes);
  expect(await digests.take(file), 'not the file that was read').toBeUndefined();
});

it('keeps at most as many digests as it is allowed; the audit hashes the others itself', async () => {
  const [first, second] = (await sealedSegments(pristine)) as [string, string];
  const digests = new SegmentDigests(1);
  for (const file of [first, second]) digests.remember(file, (await digests.identify(file)) as string, await readFile(file));
  expect(await digests.take(first)).toBeDefined();
  expect(await digests.take(second), 'over the limit').toBeUndefined();
});
