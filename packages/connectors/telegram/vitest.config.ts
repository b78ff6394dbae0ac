import { packageProject } from '../../../vitest.shared.ts';

// Generous per-test timeout: the connector tests run mtcute's real updates engine, whose gap
// handling waits 0.5 s by design, on CI machines that may be heavily shared.
export default packageProject('@offchannel/telegram', { testTimeout: 60_000 });
