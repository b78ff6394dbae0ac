import { parseArgs } from 'node:util';
import { isStreamName } from '@offchannel/core';
import { openS3Sink } from '@offchannel/sink-s3';
import { S3_OPTIONS, S3_USAGE, isS3Location, s3ClientOptions } from '../archive-location.ts';
import { type CliIo, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { UsageError } from '../usage-error.ts';

export const LEGAL_HOLD_USAGE = `Usage: offchannel legal-hold s3://bucket/prefix --stream <name> [--seq <n>] (--on | --off) [--reason <text>]

Places (--on) or lifts (--off) an S3 Object Lock legal hold: on every stored version of a
stream — its batches, checkpoints, tiles and every blob its records name — or, with --seq, on
the batch holding that record and the blobs it names. A held version cannot be deleted even
after its retention ends. Each change is logged as a locked JSON object under legal-holds/;
lifting a hold leaves held whatever another hold in force (from that log) still covers.
New records of a held stream are held only by writers configured to hold it (see the sink's
legalHold option), so run this again after capture of a held stream stops.

Options:
  --stream <name>    the stream, e.g. whatsapp:desk-42
  --seq <n>          only the record with this seq
  --on, --off        place or lift the hold
  --reason <text>    why (a matter number); stored in the log entry
  -h, --help         show this help

${S3_USAGE}`;

export async function legalHoldCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      stream: { type: 'string' },
      seq: { type: 'string' },
      on: { type: 'boolean', default: false },
      off: { type: 'boolean', default: false },
      reason: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...S3_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(`${LEGAL_HOLD_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1 || !isS3Location(positionals[0] as string)) throw new UsageError('legal-hold needs one s3://bucket/prefix (legal holds are an S3 Object Lock feature)');
  if (values.on === values.off) throw new UsageError('give exactly one of --on and --off');
  if (values.stream === undefined || !isStreamName(values.stream)) throw new UsageError('--stream <channel:account> is required');
  const seq = values.seq === undefined ? undefined : Number(values.seq);
  if (seq !== undefined && (!Number.isSafeInteger(seq) || seq < 1)) throw new UsageError('--seq must be a positive integer');
  const sink = await openS3Sink({ ...s3ClientOptions(values), url: positionals[0] as string, logger: createLogger(values['log-level'], io.env) });
  try {
    const { objects, kept } = await sink.setLegalHold({ stream: values.stream, ...(seq === undefined ? {} : { seq }) }, values.on, values.reason === undefined ? {} : { reason: values.reason });
    io.stdout.write(`Legal hold ${values.on ? 'placed on' : 'lifted from'} ${objects} object version${objects === 1 ? '' : 's'} of ${values.stream}${seq === undefined ? '' : ` seq ${seq}`}${kept > 0 ? `; ${kept} stay held by other holds in force` : ''}.\n`);
    return EXIT_OK;
  } finally {
    await sink.close();
  }
}
