import { parseArgs } from 'node:util';
import { OffchannelError, type VerificationReport, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { formatBytes, plural, shortHash } from '../format.ts';
import { UsageError } from '../usage-error.ts';

export const VERIFY_USAGE = `Usage: offchannel verify <archive-dir> [options]

Checks every stream of an archive: canonical bytes, schema, hashes, prev links, contiguous
seq, unique keys, every referenced blob's SHA-256 and size, and the archive's physical seals.
Reads only; needs no keys and no access to the capture host.

Options:
  --json              print the full report as JSON on stdout
  --stream <name>     verify only this stream (repeatable)
  --quick             check blobs exist with the right size, without hashing their content
  --log-level <lvl>   diagnostics on stderr (default warn)
  -h, --help          show this help

Exit status: 0 intact, 1 not intact (the first failure names stream and seq), 2 usage error.`;

export async function verifyCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      stream: { type: 'string', multiple: true },
      quick: { type: 'boolean', default: false },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${VERIFY_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('verify needs exactly one <archive-dir>');
  const logger = createLogger(values['log-level'], io.env);
  const dir = positionals[0] as string;
  let sink;
  try {
    sink = await openFsSink({ dir, readOnly: true, logger });
  } catch (error) {
    if (OffchannelError.hasCode(error, 'SINK_UNSUITABLE')) {
      io.stderr.write(`offchannel verify: ${error.message}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }
  let report: VerificationReport;
  try {
    const progress = !values.json && io.stderr.isTTY === true;
    report = await verifyArchive(sink, {
      blobContent: !values.quick,
      ...(values.stream ? { streams: values.stream } : {}),
      ...(progress ? { onProgress: ({ stream, seq }) => io.stderr.write(`\r  verifying ${stream} … seq ${seq}\u001b[K`) } : {}),
    });
    if (progress) io.stderr.write('\r\u001b[K');
  } finally {
    await sink.close();
  }
  if (values.json) io.stdout.write(`${JSON.stringify({ archive: sink.dir, ...report }, null, 2)}\n`);
  else io.stdout.write(humanReport(sink.dir, report));
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

function humanReport(dir: string, report: VerificationReport): string {
  const lines = [`Archive ${dir}`];
  const width = Math.max(0, ...report.streams.map((summary) => summary.stream.length));
  for (const summary of report.streams) {
    lines.push(`  ${summary.ok ? 'ok  ' : 'FAIL'}  ${summary.stream.padEnd(width)}  ${plural(summary.records, 'record').padStart(14)}  head ${summary.head.seq} ${shortHash(summary.head.hash)}`);
  }
  if (report.streams.length === 0) lines.push('  (no streams)');
  lines.push(`  blobs: ${report.blobsChecked} hashed (${formatBytes(report.blobBytes)})`);
  const [first, ...rest] = report.failures;
  if (!first) {
    lines.push(`OK: archive intact — ${plural(report.streams.length, 'stream')}, ${plural(report.streams.reduce((sum, summary) => sum + summary.records, 0), 'record')}.`);
  } else {
    lines.push(`FAIL: ${first.message} [${first.code}]`);
    for (const failure of rest.slice(0, 20)) lines.push(`  also: ${failure.message} [${failure.code}]`);
    if (rest.length > 20) lines.push(`  … and ${rest.length - 20} more (use --json for all)`);
  }
  return `${lines.join('\n')}\n`;
}
