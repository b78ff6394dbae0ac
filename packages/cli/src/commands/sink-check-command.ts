import { parseArgs } from 'node:util';
import { type ProbeCheck, probeObjectLock } from '@offchannel/sink-s3';
import { S3_OPTIONS, S3_USAGE, isS3Location, s3ClientOptions } from '../archive-location.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { UsageError } from '../usage-error.ts';

export const SINK_CHECK_USAGE = `Usage: offchannel sink-check s3://bucket/prefix [--endpoint <url>] [options]

Tries, on the real store, every guarantee the S3 sink relies on — versioning and Object Lock
enabled; COMPLIANCE retention recorded; a wrong Content-MD5 refused; a locked version cannot be
deleted (not even with the governance bypass), its retention cannot be shortened or downgraded;
overwrites and deletes leave it intact; versions are listed newest first and of two racing
writers exactly one wins; a legal hold outlives retention; an expired version can be disposed
of — and reports which hold. Some S3-compatible servers accept Object Lock headers and enforce
nothing: run this against any endpoint before trusting records to it.

It writes only under <prefix>offchannel-sink-check/<run>/, with seconds-long retention, waits
for that retention to end, and deletes what it wrote. It changes no bucket setting.

Options:
  --retention-seconds <n>  retention of the scratch objects (default 10; the run takes about as long)
  --json                   print the report as JSON
  -h, --help               show this help

${S3_USAGE}

Exit status: 0 every guarantee holds, 1 at least one does not, 2 usage error.`;

const MARK: Record<ProbeCheck['status'], string> = { pass: 'PASS', fail: 'FAIL', info: 'INFO' };

export async function sinkCheckCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { 'retention-seconds': { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false }, ...S3_OPTIONS },
  });
  if (values.help) {
    io.stdout.write(`${SINK_CHECK_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1 || !isS3Location(positionals[0] as string)) throw new UsageError('sink-check needs one s3://bucket/prefix');
  const seconds = values['retention-seconds'] === undefined ? 10 : Number(values['retention-seconds']);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) throw new UsageError('--retention-seconds must be a whole number from 1 to 600');
  const url = positionals[0] as string;
  if (!values.json) io.stdout.write(`Checking Object Lock on ${url}${values.endpoint ? ` at ${values.endpoint}` : ''} (about ${seconds + 2} s)\n`);
  const report = await probeObjectLock({
    ...s3ClientOptions(values),
    url,
    retentionSeconds: seconds,
    ...(values.json ? {} : { onCheck: (check: ProbeCheck) => io.stdout.write(`  ${MARK[check.status]}  ${check.title}: ${check.detail}\n`) }),
  });
  if (values.json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    const failed = report.checks.filter((check) => check.status === 'fail').length;
    io.stdout.write(report.ok ? `\nEvery guarantee the S3 sink relies on holds on this store.\n` : `\n${failed} guarantee${failed === 1 ? '' : 's'} do${failed === 1 ? 'es' : ''} not hold: do not use this store for records that must be write-once.\n`);
    if (!report.cleanedUp) io.stdout.write(`Note: some scratch objects under ${report.scratch} could not be removed.\n`);
  }
  return report.ok ? EXIT_OK : EXIT_FAILED;
}
