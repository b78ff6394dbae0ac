import { packageProject } from '../../vitest.shared.ts';

export default packageProject('@offchannel/export', { testTimeout: 30_000 });
