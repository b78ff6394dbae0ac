import { OffchannelError } from '@offchannel/core';

/** The command line was wrong (unknown command or option, missing argument). Exit code 2. */
export class UsageError extends OffchannelError {
  constructor(message: string) {
    super('USAGE', message);
  }
}
