/**
 * bench/export/export-phases — CPU time per phase of an RSMF export, for A/B comparisons of the
 * export's own code on one archive (speeds on a shared machine say little; CPU time per phase,
 * run alternately with the other code, does).
 *
 *   node --conditions=@offchannel/source bench/export/export-phases.ts --build DIR [--records N]
 *     writes a signed archive of N records (default 100,000; the records of export-bench.ts) to
 *     DIR and its key to DIR.key
 *   node --max-semi-space-size=16 bench/export/export-phases.ts --run DIR [--out OUT]
 *     exports DIR to RSMF (from the built packages, as `offchannel export` runs) and prints the
 *     process CPU time (user + system, worker threads included) spent in verify, index and rsmf
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type CaptureInput, Recorder, generateEd25519NoteKey, parseSignerKey } from '@offchannel/core';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_TEXT } from '../shared/bench-input.ts';

const { values } = parseArgs({ options: { build: { type: 'string' }, run: { type: 'string' }, records: { type: 'string', default: '100000' }, out: { type: 'string' } } });

/** The records of export-bench.ts: 1 KiB messages in 20 conversations, with edits, reactions and deletions. */
function input(index: number): CaptureInput {
  const chat = `chat-${index % 20}`;
  const kind = index % 20;
  const target = { id: `m-${index - 20}`, chat };
  const common = { sentAt: new Date(Date.UTC(2026, 10, 1) + index * 1000).toISOString(), conversation: { id: chat, type: 'direct' as const }, sender: { id: `party-${index % 20}`, name: `Party ${index % 20}` }, direction: index % 2 === 0 ? ('inbound' as const) : ('outbound' as const) };
  if (index >= 20 && kind === 3) return { ...common, kind: 'edit', key: `edit:${index}`, target, text: `${BENCH_TEXT.slice(0, 200)} (edited)` };
  if (index >= 20 && kind === 7) return { ...common, kind: 'reaction', key: `reaction:${index}`, target, reaction: { value: '👍', action: 'add' } };
  if (index >= 20 && kind === 11) return { ...common, kind: 'delete', key: `delete:${index}`, target, deletion: { scope: 'everyone' } };
  return { ...common, kind: 'message', key: `message:${index}`, native: { id: `m-${index}`, chat }, text: BENCH_TEXT };
}

if (values.build !== undefined) {
  const dir = values.build;
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  await writeFile(`${dir}.key`, `${key.signerKeyText()}\n`, { mode: 0o600 });
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 50_000, everyMs: 3_600_000 } });
  const writer = recorder.writer({ channel: 'bench', account: 'alice', source: { package: '@offchannel-bench/bench', version: '0' } });
  const inflight = new Set<Promise<unknown>>();
  for (let index = 0; index < Number(values.records); index++) {
    const capture = writer.capture(input(index)).finally(() => inflight.delete(capture));
    inflight.add(capture);
    if (inflight.size >= 2048) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  await recorder.close();
  await sink.close();
} else if (values.run !== undefined) {
  const dir = values.run;
  const key = parseSignerKey(await readFile(`${dir}.key`, 'utf8'));
  const sink = await openFsSink({ dir, readOnly: true });
  const out = values.out ?? (await mkdtemp(path.join(tmpdir(), 'offchannel-export-phases-')));
  const cpu: Record<string, number> = {};
  let phase = 'setup';
  let mark = process.cpuUsage();
  const enter = (next: string): void => {
    if (next === phase) return;
    const used = process.cpuUsage(mark);
    cpu[phase] = (cpu[phase] ?? 0) + (used.user + used.system) / 1e6;
    mark = process.cpuUsage();
    phase = next;
  };
  const result = await exportArchive({
    sink,
    out: path.join(out, 'export'),
    formats: ['rsmf'],
    verifiers: [key.verifier],
    clock: () => new Date(0),
    onProgress: ({ phase: next }) => {
      enter(next);
    },
  });
  enter('done');
  await sink.close();
  if (values.out === undefined) await rm(out, { recursive: true, force: true });
  const seconds = (value: number | undefined): number => +(value ?? 0).toFixed(2);
  process.stdout.write(`${JSON.stringify({ events: result.counts.rsmf, verify: seconds(cpu.verify), index: seconds(cpu.index), rsmf: seconds(cpu.rsmf), own: seconds((cpu.index ?? 0) + (cpu.rsmf ?? 0)), maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`);
} else {
  console.error('usage: export-phases.ts --build DIR [--records N] | --run DIR [--out OUT]');
  process.exit(2);
}
