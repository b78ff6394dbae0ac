import { packageProject } from '../../../vitest.shared.ts';

export default packageProject('@offchannel/imessage', { testTimeout: 20_000 });
