/**
 * bench/verify/verify-rss-probe — peak RSS of verifyArchive alone on an existing archive, in a
 * fresh process (getrusage maxRSS), with the given worker count. Used to see whether
 * verification memory grows with the stream (it should not).
 *
 * Usage: node --conditions=@offchannel/source bench/verify/verify-rss-probe.ts <archive> <key file> [workers]
 */
import { readFile } from 'node:fs/promises';
import { parseSignerKey, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

const [dir, keyFile, workers] = process.argv.slice(2) as [string, string, string | undefined];
const key = parseSignerKey(await readFile(keyFile, 'utf8'));
const sink = await openFsSink({ dir, readOnly: true });
const t0 = performance.now();
const report = await verifyArchive(sink, { verifiers: [key.verifier], ...(workers === undefined ? {} : { workers: Number(workers) }) });
await sink.close();
console.log(JSON.stringify({ ok: report.ok, records: report.streams.reduce((sum, s) => sum + s.records, 0), seconds: (performance.now() - t0) / 1000, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }));
