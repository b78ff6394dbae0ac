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
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseSignerKey } from '@offchannel/core';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { buildExportBenchArchive } from './export-bench-archive.ts';

const { values } = parseArgs({ options: { build: { type: 'string' }, run: { type: 'string' }, records: { type: 'string', default: '100000' }, out: { type: 'string' } } });

if (values.build !== undefined) {
  await buildExportBenchArchive(values.build, `${values.build}.key`, Number(values.records));
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
