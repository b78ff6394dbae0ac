import { packageProject } from '../../vitest.shared.ts';

// The s3:// tests run against the same kind of throwaway Ceph RGW as @offchannel/sink-s3's.
export default packageProject('offchannel', {
  globalSetup: ['../sinks/s3/src/__fixtures__/ceph-global-setup.ts'],
  setupFiles: ['../sinks/s3/src/__fixtures__/s3-test-env.ts'],
});
