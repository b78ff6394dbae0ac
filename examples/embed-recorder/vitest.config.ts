import { packageProject } from '../../vitest.shared.ts';

export default packageProject('@offchannel-example/embed-recorder');
