/**
 * bench/export — RSMF export throughput and peak memory on a 100,000-record archive.
 *
 * Builds a signed file-system archive of N records (default 100,000: 1 KiB messages in 20
 * conversations, with edits, reactions and deletions folded into their messages), then:
 *   sha256     node:crypto SHA-256 of every stored record line (the floor: reading the archive)
 *   verify     verifyArchive with the key (what export must do first)
 *   floor      the render floor (render-floor.ts): the least CPU any RSMF writer of these records
 *              spends with every check left out, and from it the best export/verify ratio any
 *              design could reach on this machine's cores (verification's CPU plus the floor's,
 *              spread perfectly over every core; "fused": the floor's decode shared with verify's)
 *   export     exportArchive to RSMF, end to end (verify + index + write), in a fresh child
 *              process so its peak RSS (getrusage maxRSS) is the export's alone; the child runs
 *              the built packages, as `offchannel export` does (`pnpm build` first; `--source`
 *              runs the TypeScript sources instead, which adds about 100 MiB of RSS) and with the
 *              V8 flag the CLI runs export under (a 32 MiB young generation)
 * Peak memory is also measured at N/4 records: a streaming export's peak stays flat as the
 * archive grows; one that holds the archive grows with it. The targets are printed as PASS/FAIL
 * lines: export at least 0.5 of verify's speed, peak RSS at most 256 MiB, the peak at N within
 * 1.2× of the peak at N/4. (At 25,000 records the archive is one 32 MiB segment: compare
 * flatness from 250,000 records up, i.e. with --records 1000000.)
 *
 * Usage: pnpm build && pnpm bench:export [--records N] [--source] [--json]
 */
import { execFileSync } from 'node:child_process';
import { EXPORT_V8_FLAG } from '../../packages/cli/src/young-generation.ts';
import { hash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseSignerKey, verifyArchive } from '@offchannel/core';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { buildExportBenchArchive } from './export-bench-archive.ts';
import { renderFloor } from './render-floor.ts';

const { values } = parseArgs({ options: { records: { type: 'string', default: '100000' }, json: { type: 'boolean', default: false }, source: { type: 'boolean', default: false }, child: { type: 'string' } } });

if (values.child !== undefined) {
  // Child: export one archive and report time and peak RSS.
  const [archive, keyFile, out] = values.child.split('\n') as [string, string, string];
  const key = parseSignerKey(await readFile(keyFile, 'utf8'));
  const sink = await openFsSink({ dir: archive, readOnly: true });
  const started = performance.now();
  const result = await exportArchive({ sink, out, formats: ['rsmf'], verifiers: [key.verifier] });
  const ms = performance.now() - started;
  await sink.close();
  process.stdout.write(JSON.stringify({ ms, events: result.counts.rsmf ?? 0, files: result.files.length, maxRssKiB: process.resourceUsage().maxRSS }));
  process.exit(0);
}

async function sha256Baseline(dir: string): Promise<{ ms: number; bytes: number; lines: number }> {
  const started = performance.now();
  let bytes = 0;
  let lines = 0;
  const segments = path.join(dir, 'streams', 'bench:alice');
  for (const name of (await readdir(segments)).filter((file) => file.endsWith('.jsonl')).sort()) {
    const data = await readFile(path.join(segments, name));
    let start = 0;
    for (let at = data.indexOf(10); at !== -1; at = data.indexOf(10, start)) {
      hash('sha256', data.subarray(start, at));
      bytes += at - start;
      lines++;
      start = at + 1;
    }
  }
  return { ms: performance.now() - started, bytes, lines };
}

function child(archive: string, keyFile: string, out: string): { ms: number; events: number; files: number; maxRssKiB: number } {
  // The export runs from the built packages (what `offchannel export` runs; `pnpm build` first),
  // unless --source: loading the TypeScript sources adds about 100 MiB of RSS that users never pay.
  const conditions = values.source ? ['--conditions=@offchannel/source'] : [];
  // With the young-generation bound `offchannel export` runs under (packages/cli/src/young-generation.ts).
  const stdout = execFileSync(process.execPath, [...conditions, EXPORT_V8_FLAG, import.meta.filename, '--child', [archive, keyFile, out].join('\n')], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as { ms: number; events: number; files: number; maxRssKiB: number };
}

const records = Number(values.records);
const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-export-'));
try {
  const results: Record<string, unknown> = {};
  for (const size of [Math.floor(records / 4), records]) {
    const dir = path.join(work, `archive-${size}`);
    const keyFile = `${dir}.key`;
    const builtAt = performance.now();
    await buildExportBenchArchive(dir, keyFile, size);
    const buildMs = performance.now() - builtAt;
    const key = parseSignerKey(await readFile(keyFile, 'utf8'));
    const baseline = await sha256Baseline(dir);
    const sink = await openFsSink({ dir, readOnly: true });
    const verifyStarted = performance.now();
    const verifyCpuStarted = process.cpuUsage(); // the whole process: verification's worker threads too
    const report = await verifyArchive(sink, { verifiers: [key.verifier] });
    const verifyCpu = process.cpuUsage(verifyCpuStarted);
    const verifyMs = performance.now() - verifyStarted;
    const verifyCpuMs = (verifyCpu.user + verifyCpu.system) / 1000;
    await sink.close();
    if (!report.ok) throw new Error(`bench archive does not verify: ${report.failures[0]?.message ?? ''}`);
    const floor = await renderFloor(dir);
    // The best any export could do: verification plus the floor, spread perfectly over every core.
    const cores = availableParallelism();
    const best = (cpuMs: number): number => +(verifyMs / Math.max(verifyMs, cpuMs / cores)).toFixed(3);
    const exported = child(dir, keyFile, path.join(work, `out-${size}`));
    const archiveBytes = baseline.bytes;
    results[String(size)] = {
      records: size,
      buildMs: Math.round(buildMs),
      archiveMiB: +(archiveBytes / 2 ** 20).toFixed(1),
      sha256: { ms: Math.round(baseline.ms), recordsPerSecond: Math.round(baseline.lines / (baseline.ms / 1000)) },
      verify: { ms: Math.round(verifyMs), recordsPerSecond: Math.round(size / (verifyMs / 1000)) },
      floor: { cpuUsPerRecord: +((floor.cpuMs * 1000) / floor.records).toFixed(2), decodeCpuUsPerRecord: +((floor.decodeCpuMs * 1000) / floor.records).toFixed(2), verifyCpuUsPerRecord: +((verifyCpuMs * 1000) / size).toFixed(2), cores, bestExportVsVerify: best(verifyCpuMs + floor.cpuMs), bestFusedExportVsVerify: best(verifyCpuMs + floor.cpuMs - floor.decodeCpuMs) },
      export: { ms: Math.round(exported.ms), rsmfEvents: exported.events, files: exported.files, eventsPerSecond: Math.round(exported.events / (exported.ms / 1000)), recordsPerSecond: Math.round(size / (exported.ms / 1000)), peakRssMiB: +(exported.maxRssKiB / 1024).toFixed(0) },
      ratios: { exportVsSha256: +(baseline.ms / exported.ms).toFixed(3), exportVsVerify: +(verifyMs / exported.ms).toFixed(3) },
    };
    await rm(dir, { recursive: true, force: true });
    await rm(path.join(work, `out-${size}`), { recursive: true, force: true });
  }
  if (values.json) console.log(JSON.stringify(results, null, 2));
  else {
    for (const result of Object.values(results) as { records: number; archiveMiB: number; sha256: { recordsPerSecond: number }; verify: { recordsPerSecond: number }; floor: { cpuUsPerRecord: number; decodeCpuUsPerRecord: number; verifyCpuUsPerRecord: number; cores: number; bestExportVsVerify: number; bestFusedExportVsVerify: number }; export: { ms: number; rsmfEvents: number; eventsPerSecond: number; recordsPerSecond: number; peakRssMiB: number }; ratios: { exportVsSha256: number; exportVsVerify: number } }[]) {
      console.log(`${result.records.toLocaleString('en-US')} records (${result.archiveMiB} MiB of records):`);
      console.log(`  sha256 of records  ${result.sha256.recordsPerSecond.toLocaleString('en-US')} records/s`);
      console.log(`  verify (with key)  ${result.verify.recordsPerSecond.toLocaleString('en-US')} records/s, ${result.floor.verifyCpuUsPerRecord} µs CPU/record (all threads)`);
      console.log(`  render floor       ${result.floor.cpuUsPerRecord} µs CPU/record (decode ${result.floor.decodeCpuUsPerRecord}); best export/verify on ${result.floor.cores} cores: ${result.floor.bestExportVsVerify} (fused: ${result.floor.bestFusedExportVsVerify})`);
      console.log(`  RSMF export        ${result.export.rsmfEvents.toLocaleString('en-US')} events in ${(result.export.ms / 1000).toFixed(2)} s = ${result.export.eventsPerSecond.toLocaleString('en-US')} events/s (${result.export.recordsPerSecond.toLocaleString('en-US')} records/s, verify included); peak RSS ${result.export.peakRssMiB} MiB`);
      console.log(`  ratios             export/sha256 ${result.ratios.exportVsSha256}, export/verify ${result.ratios.exportVsVerify}`);
    }
  }
  // The targets (issue "Years of history"): export at least half as fast as verify, peak RSS at
  // most 256 MiB and flat (the larger archive's peak within 1.2× of the smaller's).
  const [small, large] = Object.values(results) as { records: number; export: { peakRssMiB: number }; ratios: { exportVsVerify: number } }[];
  const line = (pass: boolean, text: string): void => {
    console.log(`${pass ? 'PASS' : 'FAIL'}  ${text}`);
  };
  for (const result of [small, large]) {
    if (!result) continue;
    const size = result.records.toLocaleString('en-US');
    line(result.ratios.exportVsVerify >= 0.5, `export ≥ 0.5 of verify's speed at ${size} records: ${result.ratios.exportVsVerify}`);
    line(result.export.peakRssMiB <= 256, `export peak RSS ≤ 256 MiB at ${size} records: ${result.export.peakRssMiB} MiB`);
  }
  if (small && large) line(large.export.peakRssMiB <= 1.2 * small.export.peakRssMiB, `peak RSS flat: ${large.records.toLocaleString('en-US')} records within 1.2× of ${small.records.toLocaleString('en-US')}: ${(large.export.peakRssMiB / small.export.peakRssMiB).toFixed(2)}×`);
} finally {
  await rm(work, { recursive: true, force: true });
}
