/**
 * Exporting from a spool pruned after forwarding (what capture's delivery targets render): a
 * stream whose first records are gone is refused unless the caller says it reads such a spool
 * (`prunedSpool`); then it is exported from the first record still held, verified from the
 * pruned prefix. Real recorder, real fs spool, a real prune.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { exportArchive } from './export-archive.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('export from a pruned spool', () => {
  it('refuses a pruned stream by default; with prunedSpool, exports what the spool still holds', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-pruned-export-'));
    dirs.push(dir);
    const key = generateEd25519NoteKey('pruned-export.offchannel.example');
    const spool = await openFsSink({ dir, segmentBytes: 2_000 });
    const recorder = new Recorder({ sink: spool, clock: () => new Date(Date.UTC(2026, 10, 20, 12)), checkpoints: { signer: key, everyRecords: 10 } });
    const writer = recorder.writer({ channel: 'whatsapp', account: 'alice', source: { package: '@offchannel/export-test', version: '0.0.0' } });
    for (let n = 1; n <= 40; n++) {
      await writer.capture({ kind: 'message', key: `m${n}`, sentAt: new Date(Date.UTC(2026, 10, 20, 9, n)).toISOString(), conversation: { id: 'client', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${n}` }, text: `Message ${n}` });
    }
    await recorder.close();
    const { throughSeq } = await spool.prune(writer.stream, { below: 30, sealedBefore: new Date('2100-01-01T00:00:00Z') });
    await spool.close();
    expect(throughSeq).toBeGreaterThan(10);
    expect(throughSeq).toBeLessThan(30);

    const sink = await openFsSink({ dir, readOnly: true });
    try {
      await expect(exportArchive({ sink, out: path.join(dir, 'refused'), formats: ['eml'], verifiers: [key.verifier] })).rejects.toMatchObject({ code: 'RECORDS_PRUNED' });
      const result = await exportArchive({ sink, out: path.join(dir, 'out'), formats: ['eml'], verifiers: [key.verifier], prunedSpool: true });
      expect(result.verification.ok).toBe(true);
      expect(result.verification.warnings.map((warning) => warning.code)).toContain('PRUNED');
      expect(result.counts.eml).toBe(40 - throughSeq);
      const conversation = (await readdir(path.join(dir, 'out', 'eml')))[0] ?? '';
      expect(await readdir(path.join(dir, 'out', 'eml', conversation))).toHaveLength(40 - throughSeq);
    } finally {
      await sink.close();
    }
  });
});
