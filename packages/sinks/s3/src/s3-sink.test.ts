import { randomBytes } from 'node:crypto';
import { runSinkConformance } from '@offchannel/core/testing';
import { describe, it } from 'vitest';
import { createBucket, sinkOptions } from './__fixtures__/buckets.ts';
import { openS3Sink } from './s3-sink.ts';

describe('S3 sink on a real Ceph RGW with Object Lock', () => {
  let bucket: Promise<string> | undefined;
  runSinkConformance({
    test: it,
    checkpointRanges: true,
    // One bucket for the suite, one fresh prefix per test: locked objects cannot be deleted anyway.
    createFixture: async () => {
      bucket ??= createBucket();
      const options = sinkOptions(await bucket, { prefix: `conformance/${randomBytes(6).toString('hex')}` });
      return {
        open: () => openS3Sink(options),
        openReadOnly: () => openS3Sink({ ...options, readOnly: true }),
        destroy: async () => undefined,
      };
    },
  });
});
