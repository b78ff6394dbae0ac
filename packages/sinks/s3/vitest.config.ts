import { packageProject } from '../../../vitest.shared.ts';

// The tests run against a real S3 server with Object Lock: a single-node Ceph RGW that the
// global setup starts on 127.0.0.1 (scripts/ceph/up.sh) — or the one OFFCHANNEL_S3_ENDPOINT names.
export default packageProject('@offchannel/sink-s3', {
  globalSetup: ['src/__fixtures__/ceph-global-setup.ts'],
  setupFiles: ['src/__fixtures__/s3-test-env.ts'],
  testTimeout: 120_000,
  // Hooks start and stop radosgw instances and buckets: seconds, more on a busy machine.
  hookTimeout: 120_000,
});
