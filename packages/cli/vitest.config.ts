import { packageProject } from '../../vitest.shared.ts';

// The s3:// tests run against the same kind of throwaway Ceph RGW as @offchannel/sink-s3's;
// the coverage page is opened in the same headless Chromium as @offchannel/export's pages.
export default packageProject('offchannel', {
  globalSetup: ['../sinks/s3/src/__fixtures__/ceph-global-setup.ts', '../export/src/__fixtures__/chromium-global-setup.ts'],
  setupFiles: ['../sinks/s3/src/__fixtures__/s3-test-env.ts'],
});
