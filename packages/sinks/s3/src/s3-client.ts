/**
 * Internal: the S3 client the sink uses. Credentials come only from the AWS SDK's standard
 * chain (environment, shared config/credentials files and `profile`, SSO, web identity,
 * container and instance roles) — offchannel never takes a secret as an option or flag.
 */
import { S3Client } from '@aws-sdk/client-s3';

export interface S3ClientOptions {
  /** Custom endpoint (Ceph RGW, other S3-compatible stores). Default: AWS (or `AWS_ENDPOINT_URL_S3`). */
  readonly endpoint?: string;
  /** Region. Default: the SDK's chain (`AWS_REGION`, the profile), else `us-east-1` with a custom endpoint. */
  readonly region?: string;
  /**
   * Path-style URLs (`https://host/bucket/key`) instead of virtual-host style
   * (`https://bucket.host/key`). Default: path-style with a custom endpoint, virtual-host on AWS.
   */
  readonly forcePathStyle?: boolean;
  /** A named profile of the shared config files (the standard chain's `AWS_PROFILE`). */
  readonly profile?: string;
  /** Per-request timeout in ms (default 30,000). */
  readonly requestTimeoutMs?: number;
  /** Attempts per request, with the SDK's backoff (default 3). */
  readonly maxAttempts?: number;
}

export function createS3Client(options: S3ClientOptions): S3Client {
  const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (options.endpoint === undefined ? undefined : 'us-east-1');
  return new S3Client({
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    ...(region === undefined ? {} : { region }),
    ...(options.profile === undefined ? {} : { profile: options.profile }),
    forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
    followRegionRedirects: true,
    maxAttempts: options.maxAttempts ?? 3,
    // The sink sends Content-MD5 and x-amz-checksum-sha256 itself, on every upload.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 5_000, requestTimeout: options.requestTimeoutMs ?? 30_000 },
  });
}
