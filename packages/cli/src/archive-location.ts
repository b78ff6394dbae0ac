/**
 * Where an archive is: a directory, or `s3://bucket/prefix`. Commands that read archives take
 * the same S3 options; credentials are never options — the AWS SDK's standard chain supplies
 * them (environment, AWS_PROFILE and ~/.aws files, SSO, web identity, instance roles).
 */
import { type Logger, OffchannelError, type Sink } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type S3ClientOptions, openS3Sink, parseS3Url } from '@offchannel/sink-s3';
import { type CliIo, EXIT_USAGE } from './cli-io.ts';
import { UsageError } from './usage-error.ts';

/** parseArgs options every archive-reading command accepts. */
export const S3_OPTIONS = {
  endpoint: { type: 'string' },
  region: { type: 'string' },
  profile: { type: 'string' },
  'path-style': { type: 'boolean' },
  'virtual-host': { type: 'boolean' },
} as const;

export const S3_USAGE = `S3 archives (s3://bucket/prefix); credentials come from the AWS SDK's standard chain only:
  --endpoint <url>      S3 endpoint (default AWS, or AWS_ENDPOINT_URL_S3): Ceph RGW, other stores
  --region <name>       region (default AWS_REGION, else us-east-1 with --endpoint)
  --profile <name>      shared-config profile (like AWS_PROFILE)
  --path-style          https://host/bucket/key addressing (default with --endpoint)
  --virtual-host        https://bucket.host/key addressing (default on AWS)`;

export interface S3OptionValues {
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  readonly profile?: string | undefined;
  readonly 'path-style'?: boolean | undefined;
  readonly 'virtual-host'?: boolean | undefined;
}

export function isS3Location(location: string): boolean {
  return location.startsWith('s3://');
}

/** The S3 client settings given on the command line. */
export function s3ClientOptions(values: S3OptionValues): S3ClientOptions {
  if (values['path-style'] && values['virtual-host']) throw new UsageError('--path-style and --virtual-host exclude each other');
  if (values.endpoint !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(values.endpoint)) throw new UsageError('--endpoint must be a URL such as https://s3.example.com');
  return {
    ...(values.endpoint === undefined ? {} : { endpoint: values.endpoint }),
    ...(values.region === undefined ? {} : { region: values.region }),
    ...(values.profile === undefined ? {} : { profile: values.profile }),
    ...(values['path-style'] ? { forcePathStyle: true } : {}),
    ...(values['virtual-host'] ? { forcePathStyle: false } : {}),
  };
}

/** Opens the archive at `location` read-only (for verify, prove, export). */
export async function openArchive(location: string, values: S3OptionValues, logger: Logger): Promise<{ readonly sink: Sink; readonly label: string }> {
  if (isS3Location(location)) {
    const { bucket, prefix } = parseS3Url(location);
    const sink = await openS3Sink({ ...s3ClientOptions(values), url: location, readOnly: true, logger });
    return { sink, label: `s3://${bucket}/${prefix}` };
  }
  if (Object.keys(S3_OPTIONS).some((name) => values[name as keyof S3OptionValues] !== undefined)) throw new UsageError('--endpoint, --region, --profile, --path-style and --virtual-host apply to s3:// archives only');
  const sink = await openFsSink({ dir: location, readOnly: true, logger });
  return { sink, label: sink.dir };
}

/**
 * {@link openArchive} for a command: a location that is not an archive the sink can open
 * (`SINK_UNSUITABLE`) is reported on stderr as `offchannel <command>: …` and answered with
 * exit status 2, which is returned instead of the archive. Other errors are thrown.
 */
export async function openArchiveForCommand(command: string, location: string, values: S3OptionValues, logger: Logger, io: CliIo): Promise<{ readonly sink: Sink; readonly label: string } | typeof EXIT_USAGE> {
  try {
    return await openArchive(location, values, logger);
  } catch (error) {
    if (!OffchannelError.hasCode(error, 'SINK_UNSUITABLE')) throw error;
    io.stderr.write(`offchannel ${command}: ${error.message}\n`);
    return EXIT_USAGE;
  }
}
