/** Test helpers: fresh buckets on the test server, and sink options for them. */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, PutBucketVersioningCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { type S3SinkOptions, openS3Sink } from '../s3-sink.ts';
import type { S3TestServer } from './ceph-global-setup.ts';

export const server: S3TestServer = inject('s3');

/** A plain SDK client on the test server (for setting up buckets and inspecting objects). */
export function adminClient(): S3Client {
  return new S3Client({ endpoint: server.endpoint, forcePathStyle: true, region: 'us-east-1' });
}

/** Creates a bucket (with Object Lock unless told otherwise) and returns its name. */
export async function createBucket(options: { readonly objectLock?: boolean; readonly versioning?: boolean } = {}): Promise<string> {
  const bucket = `oc-test-${randomBytes(6).toString('hex')}`;
  const client = adminClient();
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket, ...(options.objectLock === false ? {} : { ObjectLockEnabledForBucket: true }) }));
    if (options.objectLock === false && options.versioning) await client.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/** Options for a sink on `bucket` of the test server; records locked for a day unless given. */
export function sinkOptions(bucket: string, extra: Partial<S3SinkOptions> = {}): S3SinkOptions {
  return { endpoint: server.endpoint, bucket, retention: { records: { days: 1 } }, ...extra };
}

/** Opens a sink on a fresh lock-enabled bucket. */
export async function freshSink(extra: Partial<S3SinkOptions> = {}) {
  const bucket = await createBucket();
  return { bucket, sink: await openS3Sink(sinkOptions(bucket, extra)) };
}
