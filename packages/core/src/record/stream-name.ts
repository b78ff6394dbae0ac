import { InvalidStreamNameError } from '../errors/record-errors.ts';

const CHANNEL = /^[a-z][a-z0-9-]{0,31}$/;
const ACCOUNT = /^[A-Za-z0-9+][A-Za-z0-9._@+=-]{0,127}$/;

/** A whole stream name in one pattern (channel, account as groups 1 and 2); an account must also not contain `..`. */
export const STREAM_PATTERN = new RegExp(`^(${CHANNEL.source.slice(1, -1)}):(${ACCOUNT.source.slice(1, -1)})$`);

/**
 * Checks a channel name: lowercase letters, digits and `-`, starting with a letter, ≤ 32 chars.
 * Throws {@link InvalidStreamNameError}.
 */
export function assertChannelName(channel: unknown): asserts channel is string {
  if (typeof channel !== 'string' || !CHANNEL.test(channel)) {
    throw new InvalidStreamNameError('channel must match [a-z][a-z0-9-]{0,31}');
  }
}

/**
 * Checks an account name: letters, digits and `. _ @ + = -`, starting with a letter, digit or `+`,
 * ≤ 128 chars, never containing `..`. These names become directory and object-key segments,
 * so the rule is strict by design: no `/`, `\`, NUL, whitespace or control characters.
 * Throws {@link InvalidStreamNameError}.
 */
export function assertAccountName(account: unknown): asserts account is string {
  if (typeof account !== 'string' || !ACCOUNT.test(account) || account.includes('..')) {
    throw new InvalidStreamNameError('account must match [A-Za-z0-9+][A-Za-z0-9._@+=-]{0,127} and not contain ".."');
  }
}

/** Builds `<channel>:<account>` after checking both parts. */
export function streamName(channel: string, account: string): string {
  assertChannelName(channel);
  assertAccountName(account);
  return `${channel}:${account}`;
}

/** Splits and checks a stream name. Throws {@link InvalidStreamNameError}. */
export function parseStreamName(stream: unknown): { channel: string; account: string } {
  if (typeof stream !== 'string') throw new InvalidStreamNameError('stream must be a string');
  const colon = stream.indexOf(':');
  if (colon < 0) throw new InvalidStreamNameError('stream must contain ":"');
  const channel = stream.slice(0, colon);
  const account = stream.slice(colon + 1);
  assertChannelName(channel);
  assertAccountName(account);
  return { channel, account };
}

/** Checks a stream name. Throws {@link InvalidStreamNameError}. */
export function assertStreamName(stream: unknown): asserts stream is string {
  parseStreamName(stream);
}

/** True when `stream` is a valid stream name. */
export function isStreamName(stream: unknown): stream is string {
  try {
    parseStreamName(stream);
    return true;
  } catch {
    return false;
  }
}
