import { packageProject } from '../../../vitest.shared.ts';

export default packageProject('@offchannel/signal-mock-tests', { testTimeout: 30_000 });
