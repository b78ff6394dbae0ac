import { OffchannelError } from './offchannel-error.ts';

/**
 * A configuration value is missing or wrong. `key` is the dotted path of the offending entry
 * as the user wrote it (`connectors[0].options.chatDb`), so the message can name it; the
 * message never echoes the value, which may be a secret.
 */
export class ConfigError extends OffchannelError {
  /** Dotted path of the bad entry, e.g. `archive.url` or `connectors[1].account`. */
  readonly key: string;

  constructor(key: string, problem: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', `${key} ${problem}`, options);
    this.key = key;
  }
}
