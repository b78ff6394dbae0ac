/**
 * Verification with worker threads (whole segments in parallel) must report exactly what the
 * single-threaded pass reports — on intact archives and on every kind of damage.
 */
import { chmod, cp, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, type VerificationReport, generateEd25519NoteKey, verifyArchive } from '@offchannel/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openFsSink } from './fs-sink.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const stream = 'demo:alice';
let work: string;
let pristine: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-parallel-'));
  pristine = path.join(work, 'pristine');
  const sink = await openFsSink({ dir: pristine, segmentBytes: 8_000 });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 70 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 't', version: '0' } });
  for (let index = 1; index <= 400; index++) {
    await writer.capture({
      kind: 'message',
      sentAt: '2026-11-21T10:00:00Z',
      conversation: { id: `c${index % 3}`, type: 'direct' },
      sender: { id: 'bob' },
      direction: 'inbound',
      native: { id: `m${index}` },
      text: `message ${index} `.repeat(6),
      ...(index % 25 === 0 ? { attachments: [{ bytes: Buffer.from(`file ${index}`), mime: 'text/plain' }] } : {}),
    });
  }
  await recorder.close();
  await sink.close();
}, 60_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function both(dir: string) {
  const sink = await openFsSink({ dir, readOnly: true });
  const parallel = await verifyArchive(sink, { verifiers: [key.verifier], workers: 2 });
  const sequential = await verifyArchive(sink, { verifiers: [key.verifier], workers: 0 });
  await sink.close();
  return { parallel, sequential };
}

function withoutWorkers(report: VerificationReport): VerificationReport {
  return { ...report, streams: report.streams.map(({ workers: _workers, ...summary }) => summary) };
}

async function segments(dir: string): Promise<string[]> {
  const streamDir = path.join(dir, 'streams', stream);
  return (await readdir(streamDir)).filter((name) => name.endsWith('.jsonl')).sort().map((name) => path.join(streamDir, name));
}

it('verifies an intact multi-segment archive identically with and without workers', { timeout: 60_000 }, async () => {
  expect((await segments(pristine)).length).toBeGreaterThan(20);
  const { parallel, sequential } = await both(pristine);
  expect(parallel.ok).toBe(true);
  expect(parallel.streams[0]?.workers, 'verified by worker threads').toBe(2);
  expect(sequential.streams[0]?.workers).toBeUndefined();
  expect(withoutWorkers(parallel)).toEqual(sequential);
});

it('reports the same failures with and without workers, whatever the damage', { timeout: 60_000 }, async () => {
  const damage: [string, (dir: string) => Promise<void>][] = [
    [
      'altered record',
      async (dir) => {
        const file = (await segments(dir))[5] as string;
        await chmod(file, 0o644);
        await writeFile(file, (await readFile(file, 'utf8')).replace(/message (\d+) /, 'massage $1 '));
      },
    ],
    [
      'deleted segment',
      async (dir) => {
        await unlink((await segments(dir))[7] as string);
      },
    ],
    [
      'missing blob',
      async (dir) => {
        const blobs = path.join(dir, 'blobs', 'sha256');
        const names = await readdir(blobs);
        for (const name of names) {
          const content = await readFile(path.join(blobs, name), 'utf8');
          if (content.startsWith('file 50')) await unlink(path.join(blobs, name));
        }
      },
    ],
    [
      'duplicate key',
      async (dir) => {
        const file = (await segments(dir))[3] as string;
        const text = await readFile(file, 'utf8');
        await chmod(file, 0o644);
        await writeFile(file, text.replace(/"key":"message:\{\\"id\\":\\"m(\d+)\\"\}"/, '"key":"dup"'));
      },
    ],
  ];
  for (const [name, apply] of damage) {
    const dir = path.join(work, name.replace(' ', '-'));
    await cp(pristine, dir, { recursive: true });
    await apply(dir);
    const { parallel, sequential } = await both(dir);
    expect(parallel.ok, name).toBe(false);
    expect(parallel.failures, name).toEqual(sequential.failures);
    expect(withoutWorkers(parallel).streams, name).toEqual(sequential.streams);
    if (name === 'missing blob') expect(parallel.streams[0]?.workers, 'a missing blob is found by the parallel pass itself').toBe(2);
  }
});

it('verifies records of every kind identically with and without workers (the workers\' record scan and its fallback)', { timeout: 60_000 }, async () => {
  // Kinds and details the workers' record scan reads itself (with non-ASCII text, escapes and
  // keys), and ones it leaves to decodeRecord (membership and system details), in one stream.
  const dir = path.join(work, 'kinds');
  const sink = await openFsSink({ dir, segmentBytes: 4_000 });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 40 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 't', version: '0' } });
  const context = { sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'g', type: 'group', title: 'Désk' }, sender: { id: 'bob', name: 'Zoë', aliases: ['b@lid'] }, direction: 'outbound' } as const;
  for (let index = 1; index <= 30; index++) {
    await writer.capture({ ...context, kind: 'message', ...(index % 3 === 0 ? { key: `clé:${index}:😀` } : {}), native: { id: `m${index}`, chat: 'g' }, text: `ça va? "quoted" \\ \t ${index} 中文 😀 \u0007`, replyTo: { id: 'm1' }, forwarded: true, mentions: ['bob'], meta: { 'demo.n': index, 'demo.flag': index % 2 === 0, 'demo.s': 'x' }, raw: { format: 'demo', bytes: Buffer.from(`raw ${index}`) } });
    await writer.capture({ ...context, kind: 'edit', target: { id: `m${index}` }, text: 'edited' });
    await writer.capture({ ...context, kind: 'reaction', target: { id: `m${index}` }, reaction: { value: '👍', action: 'add' } });
    await writer.capture({ ...context, kind: 'delete', target: { id: `m${index}` }, deletion: { scope: 'everyone', admin: true } });
    await writer.capture({ ...context, kind: 'receipt', target: { id: `m${index}` }, receipt: { status: 'read' } });
    await writer.capture({ kind: 'membership', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'g', type: 'group' }, membership: { action: 'add', members: [{ id: `p${index}` }] } });
    await writer.capture({ kind: 'system', system: { event: 'demo', fields: { n: String(index) } } });
    await writer.capture({ kind: 'gap', gap: { reason: 'offline', missing: index } });
    await writer.capture({ kind: 'unsupported', problem: { reason: 'demo' }, raw: { format: 'demo', bytes: Buffer.from(`u ${index}`) } });
  }
  await recorder.close();
  await sink.close();
  expect((await segments(dir)).length).toBeGreaterThan(5);
  const { parallel, sequential } = await both(dir);
  expect(parallel.ok, parallel.failures[0]?.message).toBe(true);
  expect(parallel.streams[0]?.records).toBe(270);
  expect(parallel.streams[0]?.workers, 'verified by worker threads').toBe(2);
  expect(withoutWorkers(parallel)).toEqual(sequential);
  // A membership record (left to decodeRecord) and a message (read by the scan) altered: the same failures.
  for (const [from, to] of [['"action":"add","members"', '"action":"ad","members"'], ['"demo.n":7', '"demo.n":7.0']] as const) {
    const damaged = path.join(work, `kinds-damaged-${from.length}`);
    await cp(dir, damaged, { recursive: true });
    for (const file of await segments(damaged)) {
      const text = await readFile(file, 'utf8');
      if (text.includes(from)) {
        await chmod(file, 0o600);
        await writeFile(file, text.replace(from, to));
        break;
      }
    }
    const result = await both(damaged);
    expect(result.parallel.ok).toBe(false);
    expect(withoutWorkers(result.parallel)).toEqual(result.sequential);
  }
});
