/**
 * bench/delivery/pass-cost — what one steady-state delivery pass costs as history grows, as a
 * ratio to the naive design run in the same process: exporting the whole stream again (what
 * every pass with new records did before passes became incremental).
 *
 * For each history size N (default 2,000 and 20,000 records of 1 KiB, 20 conversations, signed
 * every 1,000 records): records the archive, delivers all of it once to an SMTP server on
 * loopback (the delivery tests' server: it accepts and keeps each message), then five times:
 * records 10 new messages, signs a checkpoint, and times `deliverPending` (wall, and CPU of the
 * process — the SMTP server in it included). The baseline is `exportArchive --format eml` of the
 * whole stream, verified: median of three per N. An archive directory, not a capture spool (on a
 * spool that prunes, the kept index is also rebuilt from the spool's window when it prunes).
 *
 * Usage: pnpm bench:delivery-pass [--sizes 2000,20000] [--json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type CaptureInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { Deliverer } from '@offchannel/delivery';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { startFaultServer } from '../../packages/delivery/src/__fixtures__/fault-smtp-server.ts';
import { BENCH_TEXT } from '../shared/bench-input.ts';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '2000,20000' }, json: { type: 'boolean', default: false } } });
const sizes = values.sizes.split(',').map(Number);
const NEW_PER_PASS = 10;
const PASSES = 5;

function input(index: number): CaptureInput {
  const chat = `chat-${index % 20}`;
  return { kind: 'message', key: `message:${index}`, sentAt: new Date(Date.UTC(2026, 10, 1) + index * 1000).toISOString(), conversation: { id: chat, type: 'direct' }, sender: { id: `party-${index % 20}`, name: `Party ${index % 20}` }, direction: index % 2 === 0 ? 'inbound' : 'outbound', native: { id: `m-${index}`, chat }, text: BENCH_TEXT };
}

const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const cpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

interface Row {
  readonly history: number;
  readonly fullExportMs: number;
  readonly passMs: number;
  readonly passCpuMs: number;
  readonly passToFullExport: number;
}

const rows: Row[] = [];
for (const history of sizes) {
  const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-pass-'));
  const smtp = await startFaultServer();
  try {
    const key = generateEd25519NoteKey('bench.offchannel.example/archive');
    const archiveDir = path.join(work, 'archive');
    const sink = await openFsSink({ dir: archiveDir });
    const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 1_000, everyMs: 3_600_000 } });
    const writer = recorder.writer({ channel: 'bench', account: 'alice', source: { package: '@offchannel-bench/bench', version: '0' } });
    await Promise.all(Array.from({ length: history }, (_, index) => writer.capture(input(index))));
    await recorder.checkpoint();

    const readOnly = await openFsSink({ dir: archiveDir, readOnly: true });
    // The naive pass: the whole stream exported again (median of three, the first one warming up).
    const exports: number[] = [];
    for (let run = 0; run < 3; run++) {
      const started = performance.now();
      await exportArchive({ sink: readOnly, out: path.join(work, 'eml'), formats: ['eml'], verifiers: [key.verifier], streams: [writer.stream] });
      exports.push(performance.now() - started);
      await rm(path.join(work, 'eml'), { recursive: true, force: true });
    }
    const fullExportMs = median(exports);

    const deliverer = await Deliverer.open({ archive: readOnly, receipts: sink, stateDir: path.join(work, 'state'), verifiers: [key.verifier], checkpoints: { signer: key }, target: { name: 'bench', smtp: smtp.url, to: 'journal@archive.test', from: 'offchannel@firm.example', allowPlaintextLoopback: true } });
    try {
      const first = await deliverer.deliverPending();
      if (first.sent !== history) throw new Error(`the first pass sent ${first.sent} of ${history}`);
      const wall: number[] = [];
      const cpu: number[] = [];
      for (let pass = 0; pass < PASSES; pass++) {
        const from = history + pass * NEW_PER_PASS;
        for (let index = from; index < from + NEW_PER_PASS; index++) await writer.capture(input(index));
        await recorder.checkpoint();
        const cpuBefore = cpuMs();
        const before = performance.now();
        const report = await deliverer.deliverPending();
        wall.push(performance.now() - before);
        cpu.push(cpuMs() - cpuBefore);
        if (report.sent !== NEW_PER_PASS) throw new Error(`pass ${pass} sent ${report.sent} of ${NEW_PER_PASS}`);
      }
      const passMs = median(wall);
      rows.push({ history, fullExportMs: Math.round(fullExportMs), passMs: Math.round(passMs), passCpuMs: Math.round(median(cpu)), passToFullExport: Number((passMs / fullExportMs).toFixed(4)) });
    } finally {
      await deliverer.close();
      await recorder.close();
      await readOnly.close();
      await sink.close();
    }
  } finally {
    await smtp.close();
    await rm(work, { recursive: true, force: true });
  }
}

const first = rows[0];
const last = rows.at(-1);
const growth = first && last ? { history: Number((last.history / first.history).toFixed(1)), pass: Number((last.passMs / first.passMs).toFixed(2)), fullExport: Number((last.fullExportMs / first.fullExportMs).toFixed(2)) } : undefined;
if (values.json) process.stdout.write(`${JSON.stringify({ newPerPass: NEW_PER_PASS, rows, growth })}\n`);
else {
  const lines = [`bench/delivery/pass-cost: a pass delivering ${NEW_PER_PASS} new records (median of ${PASSES}), against exporting the whole stream (the naive pass)`];
  for (const row of rows) lines.push(`  history ${row.history}: pass ${row.passMs} ms (${row.passCpuMs} ms CPU); full export ${row.fullExportMs} ms; pass = ${row.passToFullExport} of a full export`);
  if (growth) lines.push(`  history ×${growth.history}: pass ×${growth.pass}, full export ×${growth.fullExport}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
