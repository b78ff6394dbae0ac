/**
 * The options `@offchannel/delivery` exports only what is new with — `since`, `emlFromSeq`,
 * `keptIndex` — write exactly the full export's files for what they select, byte for byte.
 * (Growing archives, pass after pass: packages/delivery/src/deliverer-incremental.test.ts.)
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readVerifiedState, verifiedStateOf, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type ExportOptions, exportArchive } from './export-archive.ts';
import { type TradeArchive, createTradeArchive } from './__fixtures__/trade-archive.ts';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let archive: TradeArchive;
let scratch: string;

beforeAll(async () => {
  archive = await createTradeArchive();
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-export-incremental-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
  await rm(archive.dir, { recursive: true, force: true });
});

/** The e-mail files an export writes: relative path → bytes. */
async function emlFiles(options: Omit<ExportOptions, 'sink' | 'out' | 'formats'>): Promise<Map<string, Buffer>> {
  const out = await mkdtemp(path.join(scratch, 'out-'));
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    await exportArchive({ verifiers: [archive.key.verifier], formats: ['eml'], ...options, sink, out });
  } finally {
    await sink.close();
  }
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(path.join(out, 'eml'), { recursive: true }).catch(() => [])).map(String)) {
    if (name.endsWith('.eml')) files.set(name, await readFile(path.join(out, 'eml', name)));
  }
  return files;
}

function seqOf(bytes: Buffer): number {
  return Number(/^X-Offchannel-Seq: (\d+)/m.exec(bytes.toString('latin1'))?.[1] ?? 0);
}

describe('exporting only what is new', () => {
  it('record mode: from a seq on, with a kept index and incremental verification, the full export’s files of those records', async () => {
    const full = await emlFiles({});
    const sink = await openFsSink({ dir: archive.dir, readOnly: true });
    let since;
    try {
      since = readVerifiedState(verifiedStateOf(await verifyArchive(sink, { verifiers: [archive.key.verifier] }), new Date(0)));
    } finally {
      await sink.close();
    }
    const kept = path.join(scratch, 'kept.sqlite');
    const head = Math.max(...[...full.values()].map(seqOf));
    for (const from of [1, Math.ceil(head / 2), head]) {
      const part = await emlFiles({ emlFromSeq: new Map([[archive.stream, from]]), keptIndex: kept, since });
      const expected = [...full].filter(([, bytes]) => seqOf(bytes) >= from);
      expect(expected.length).toBeGreaterThan(0);
      expect([...part.keys()].sort()).toEqual(expected.map(([name]) => name).sort());
      for (const [name, bytes] of expected) expect(part.get(name)?.equals(bytes), name).toBe(true);
    }
  });

  it('day mode: the transcripts of the days a record from that seq on touches, as the full export writes them', async () => {
    const full = await emlFiles({ emlMode: 'day' });
    const part = await emlFiles({ emlMode: 'day', emlFromSeq: new Map([[archive.stream, 1_000_000]]) });
    expect(part.size).toBe(0);
    const all = await emlFiles({ emlMode: 'day', emlFromSeq: new Map([[archive.stream, 1]]), keptIndex: path.join(scratch, 'kept-day.sqlite') });
    expect([...all.keys()].sort()).toEqual([...full.keys()].sort());
    for (const [name, bytes] of full) expect(all.get(name)?.equals(bytes), name).toBe(true);
  });
});
