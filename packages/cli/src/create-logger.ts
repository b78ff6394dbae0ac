import { type Logger, redactingLogger } from '@offchannel/core';
import { pino } from 'pino';
import { UsageError } from './usage-error.ts';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * The CLI's logger: pino, JSON lines on stderr (stdout is for results), behind the fixed
 * redaction of message content. Level from `--log-level`, else `OFFCHANNEL_LOG_LEVEL`, else `fallback`.
 */
export function createLogger(level: string | undefined, env: Readonly<Record<string, string | undefined>>, fallback = 'warn'): Logger {
  const chosen = level ?? env.OFFCHANNEL_LOG_LEVEL ?? fallback;
  if (!LEVELS.includes(chosen)) throw new UsageError(`unknown log level "${chosen}"; use one of ${LEVELS.join(', ')}`);
  return redactingLogger(pino({ level: chosen, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true })));
}
