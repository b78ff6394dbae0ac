import { packageProject } from '../../vitest.shared.ts';

// The HTML transcript tests drive Debian's headless Chromium (found or installed once here).
export default packageProject('@offchannel/export', { testTimeout: 30_000, globalSetup: ['src/__fixtures__/chromium-global-setup.ts'] });
