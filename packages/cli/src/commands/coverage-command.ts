import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type NoteVerifier, type Sink, readAttestations, verifyArchive } from '@offchannel/core';
import { S3_OPTIONS, S3_USAGE, openArchiveForCommand } from '../archive-location.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { type AttestationEvidence, type CoverageReport, collectCoverage } from '../coverage-report/collect-coverage.ts';
import { coverageHtml } from '../coverage-report/coverage-html.ts';
import { longestGapMs } from '../coverage-report/coverage-summary.ts';
import { coverageText } from '../coverage-report/coverage-text.ts';
import { formatDuration, parseDuration, parseInstant } from '../coverage-report/parse-duration.ts';
import { createLogger } from '../create-logger.ts';
import { loadVerifierKeys } from '../keys.ts';
import { UsageError } from '../usage-error.ts';
import { CLI_PACKAGE } from '../version.ts';

export const COVERAGE_USAGE = `Usage: offchannel coverage <archive-dir | s3://bucket/prefix> [options]

Shows, per custodian and channel, whether capture was running over a period: the intervals it
was live and connected, every gap with its cause (process down, disconnected, logged out,
unlinked, failed, platform-reported loss), what reconciliation recovered, and daily counts.
Reads only the archive (and the verifier key). See docs/coverage.md.

Options:
  --from <date>           start of the period: 2026-11-01 (midnight UTC) or 2026-11-01T09:00:00Z
                          (default: one day before --to)
  --to <date>             end of the period (default and at most: now)
  --stream <name>         only this stream, e.g. whatsapp:+15550100 (repeatable)
  --key <key|file>        verifier key(s): only records under a verified signed checkpoint and
                          attestations that verify count as evidence (repeatable)
  --attest-every <dur>    the capture hosts' attestation interval (coverage.attestEveryMs;
                          default 5m)
  --fail-on-gap <dur>     exit 1 only for a gap at least this long (default: any gap)
  --json                  the report as JSON on stdout
  --html <dir>            also write <dir>/coverage.html, one self-contained page
  --log-level <lvl>       diagnostics on stderr (default warn)
  -h, --help              show this help

Durations are a whole number and one unit: 90s, 15m, 2h, 7d.

${S3_USAGE}

Exit status: 0 every stream covered over the period (no gap at least --fail-on-gap long),
1 a gap at least that long (with --key: or a stream without verified evidence), 2 usage error.`;

const DAY_MS = 86_400_000;

export async function coverageCommand(argv: readonly string[], io: CliIo, clock: () => Date = () => new Date()): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      stream: { type: 'string', multiple: true },
      key: { type: 'string', multiple: true },
      'attest-every': { type: 'string' },
      'fail-on-gap': { type: 'string' },
      json: { type: 'boolean', default: false },
      html: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...S3_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(`${COVERAGE_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('coverage needs exactly one <archive-dir> or s3://bucket/prefix');
  // The report cannot vouch for the future: a --to after now ends the period now.
  const to = Math.min(clock().getTime(), values.to === undefined ? Number.POSITIVE_INFINITY : parseInstant(values.to, '--to'));
  const from = values.from === undefined ? to - DAY_MS : parseInstant(values.from, '--from');
  if (from >= to) throw new UsageError('--from must be before --to');
  const attestEveryMs = values['attest-every'] === undefined ? 5 * 60_000 : parseDuration(values['attest-every'], '--attest-every');
  const failOnGapMs = values['fail-on-gap'] === undefined ? undefined : parseDuration(values['fail-on-gap'], '--fail-on-gap');
  if (values.html !== undefined && values.html.trim() === '') throw new UsageError('--html needs a directory');
  const logger = createLogger(values['log-level'], io.env);
  const verifiers = values.key ? await loadVerifierKeys(values.key) : undefined;
  const opened = await openArchiveForCommand('coverage', positionals[0] as string, values, logger, io);
  if (opened === EXIT_USAGE) return EXIT_USAGE;
  const { sink, label } = opened;
  let report: CoverageReport;
  try {
    const verifiedThrough = verifiers ? await verifiedSeqs(sink, verifiers, values.stream) : undefined;
    report = await collectCoverage(sink, {
      from,
      to,
      attestEveryMs,
      ...(values.stream ? { streams: values.stream } : {}),
      ...(verifiedThrough ? { verifiedThrough } : {}),
      ...attestationsOf(sink, from, to, verifiers),
    });
  } finally {
    await sink.close();
  }
  const keys = (verifiers ?? []).map((verifier) => verifier.name);
  if (values.html !== undefined) {
    await mkdir(values.html, { recursive: true });
    const file = path.join(values.html, 'coverage.html');
    await writeFile(`${file}.tmp`, coverageHtml(report, label, keys, clock().toISOString()), { mode: 0o644 });
    await rename(`${file}.tmp`, file);
    if (!values.json) io.stderr.write(`wrote ${file}\n`);
  }
  const failing = report.streams.filter((stream) => stream.state === 'unverified' || (stream.gaps.length > 0 && longestGapMs(stream) >= (failOnGapMs ?? 0)));
  if (values.json) io.stdout.write(`${JSON.stringify({ format: 'offchannel-coverage-report', v: 1, archive: label, tool: { package: CLI_PACKAGE.name, version: CLI_PACKAGE.version }, keys, ...(failOnGapMs === undefined ? {} : { failOnGapMs }), ok: failing.length === 0, ...report }, null, 2)}\n`);
  else {
    io.stdout.write(coverageText(report, label, keys));
    if (failOnGapMs !== undefined) io.stdout.write(failing.length === 0 ? `No gap of ${formatDuration(failOnGapMs)} or longer.\n` : `FAIL: ${failing.length} streams have a gap of ${formatDuration(failOnGapMs)} or longer.\n`);
  }
  return failing.length === 0 ? EXIT_OK : EXIT_FAILED;
}

/** Per stream that verified, the size of its newest verified checkpoint: records up to it count. */
async function verifiedSeqs(sink: Sink, verifiers: readonly NoteVerifier[], streams: readonly string[] | undefined): Promise<Map<string, number>> {
  const result = await verifyArchive(sink, { verifiers, blobContent: false, ...(streams ? { streams } : {}) });
  const through = new Map<string, number>();
  for (const summary of result.streams) {
    const size = summary.checkpoints?.at(-1)?.size;
    if (summary.ok && size !== undefined) through.set(summary.stream, size);
  }
  return through;
}

/**
 * Host attestations over the period (none in archives written before they existed). With
 * verifier keys, only notes whose signature verifies under one of them; the others are skipped.
 */
function attestationsOf(sink: Sink, from: number, to: number, verifiers: readonly NoteVerifier[] | undefined): { readonly attestations: AsyncIterable<AttestationEvidence> } {
  const period = { from: new Date(from - DAY_MS), to: new Date(to) };
  async function* all(): AsyncIterable<AttestationEvidence> {
    if (!verifiers) {
      yield* readAttestations(sink, period);
      return;
    }
    for (const verifier of verifiers) yield* readAttestations(sink, { ...period, verifier });
  }
  return { attestations: all() };
}
