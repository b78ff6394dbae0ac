import { packageProject } from '../../vitest.shared.ts';

// The Postfix tests start throwaway Postfix instances on loopback (scripts/postfix), installed
// once from Debian when missing.
export default packageProject('@offchannel/delivery', { testTimeout: 60_000, globalSetup: ['src/__fixtures__/postfix-global-setup.ts'] });
