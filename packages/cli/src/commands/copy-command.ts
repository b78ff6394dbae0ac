import { parseArgs } from 'node:util';
import { Forwarder, type Sink } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { openS3Sink, parseRetentionPeriod } from '@offchannel/sink-s3';
import { S3_OPTIONS, S3_USAGE, isS3Location, openArchive, s3ClientOptions } from '../archive-location.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { plural } from '../format.ts';
import { UsageError } from '../usage-error.ts';

export const COPY_USAGE = `Usage: offchannel copy <from> <to> [options]

Copies an archive — every record, blob, Merkle tile, checkpoint and timestamp token, byte for
byte — from <from> to <to>, each a directory or s3://bucket/prefix: to take a local copy of a
bucket for an auditor (then docs/storage-format.md's by-hand checks work on it), or to fill a
second, independent store. It is the forwarder that runs behind a spool: blobs before the
records that name them, records through the target's own compare-and-append, checkpoints after
their records; it resumes where an earlier run stopped, and stops at once if the target already
holds different records. Run offchannel verify on the copy afterwards.

Options:
  --retention <period>   Object Lock retention in an s3:// target, e.g. 7y, 2555d (default 7y)
  --give-up-after <s>    stop when the target has kept failing for this long (default 120)
  --log-level <level>    diagnostics on stderr (default warn)
  -h, --help             show this help

${S3_USAGE}
The S3 options apply to whichever side is s3://.`;

export async function copyCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { retention: { type: 'string' }, 'give-up-after': { type: 'string' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h', default: false }, ...S3_OPTIONS },
  });
  if (values.help) {
    io.stdout.write(`${COPY_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 2) throw new UsageError('copy needs <from> and <to>');
  const [from, to] = positionals as [string, string];
  if (from === to) throw new UsageError('<from> and <to> are the same');
  const giveUp = Number(values['give-up-after'] ?? '120');
  if (!Number.isFinite(giveUp) || giveUp <= 0) throw new UsageError('--give-up-after must be a positive number of seconds');
  if (values.retention !== undefined && !isS3Location(to)) throw new UsageError('--retention applies to an s3:// target only');
  const logger = createLogger(values['log-level'], io.env);
  const s3Values = isS3Location(from) ? values : {};
  const source = await openArchive(from, s3Values, logger);
  let target: Sink;
  try {
    target = isS3Location(to)
      ? await openS3Sink({ ...s3ClientOptions(values), url: to, logger, ...(values.retention === undefined ? {} : { retention: { records: parseRetentionPeriod(values.retention) } }) })
      : await openFsSink({ dir: to, logger });
  } catch (error) {
    await source.sink.close();
    throw error;
  }
  let copied = 0;
  const forwarder = new Forwarder({
    spool: source.sink,
    targets: [{ name: to, sink: target }],
    logger,
    maxRetryMs: 5_000,
    onForwarded: (event) => {
      copied += event.lastSeq - event.firstSeq + 1;
    },
  });
  try {
    forwarder.start();
    const failing = new Map<string, number>();
    let timer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        for (const lane of forwarder.status().targets[0]?.streams ?? []) {
          if (lane.state !== 'retrying') failing.delete(lane.stream);
          else if (!failing.has(lane.stream)) failing.set(lane.stream, Date.now());
          else if (Date.now() - (failing.get(lane.stream) ?? 0) > giveUp * 1000) {
            clearInterval(timer);
            reject(new Error(`stream ${lane.stream} could not be copied for ${giveUp} s: ${lane.lastError ?? 'unknown error'}`));
          }
        }
      }, 250);
      timer.unref();
      io.signal.addEventListener('abort', () => {
        clearInterval(timer);
        reject(new Error('interrupted; run the same command again to continue where it stopped'));
      });
    });
    watchdog.catch(() => undefined);
    try {
      await Promise.race([forwarder.drain({ timeoutMs: 7 * 24 * 3600 * 1000 }), watchdog]);
    } catch (error) {
      io.stderr.write(`offchannel copy: ${(error as Error).message}\n`);
      return EXIT_FAILED;
    } finally {
      clearInterval(timer);
    }
    const streams = forwarder.status().targets[0]?.streams ?? [];
    io.stdout.write(`Copied ${source.label} to ${to}: ${plural(streams.length, 'stream')}, ${plural(copied, 'record')} added (${streams.map((lane) => `${lane.stream} at seq ${lane.seq ?? 0}`).join(', ') || 'nothing to copy'}).\n`);
    return EXIT_OK;
  } finally {
    await forwarder.stop();
    await target.close();
    await source.sink.close();
  }
}
