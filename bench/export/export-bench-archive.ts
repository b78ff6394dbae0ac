/**
 * The archive `bench/export` measures (export-bench.ts, export-phases.ts): 1 KiB messages in 20
 * conversations, with edits, reactions and deletions folded into their messages, signed.
 */
import { writeFile } from 'node:fs/promises';
import { type CaptureInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_TEXT } from '../shared/bench-input.ts';

/** Record `index` of the bench archive. */
export function exportBenchInput(index: number): CaptureInput {
  const chat = `chat-${index % 20}`;
  const kind = index % 20;
  const target = { id: `m-${index - 20}`, chat };
  const common = { sentAt: new Date(Date.UTC(2026, 10, 1) + index * 1000).toISOString(), conversation: { id: chat, type: 'direct' as const }, sender: { id: `party-${index % 20}`, name: `Party ${index % 20}` }, direction: index % 2 === 0 ? ('inbound' as const) : ('outbound' as const) };
  if (index >= 20 && kind === 3) return { ...common, kind: 'edit', key: `edit:${index}`, target, text: `${BENCH_TEXT.slice(0, 200)} (edited)` };
  if (index >= 20 && kind === 7) return { ...common, kind: 'reaction', key: `reaction:${index}`, target, reaction: { value: '👍', action: 'add' } };
  if (index >= 20 && kind === 11) return { ...common, kind: 'delete', key: `delete:${index}`, target, deletion: { scope: 'everyone' } };
  return { ...common, kind: 'message', key: `message:${index}`, native: { id: `m-${index}`, chat }, text: BENCH_TEXT };
}

/** Writes a signed archive of `records` bench records to `dir`, and its signer key to `keyFile` (0600). */
export async function buildExportBenchArchive(dir: string, keyFile: string, records: number): Promise<void> {
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  await writeFile(keyFile, `${key.signerKeyText()}\n`, { mode: 0o600 });
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 50_000, everyMs: 3_600_000 } });
  const writer = recorder.writer({ channel: 'bench', account: 'alice', source: { package: '@offchannel-bench/bench', version: '0' } });
  const inflight = new Set<Promise<unknown>>();
  for (let index = 0; index < records; index++) {
    const capture = writer.capture(exportBenchInput(index)).finally(() => inflight.delete(capture));
    inflight.add(capture);
    if (inflight.size >= 2048) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  await recorder.close();
  await sink.close();
}
