/**
 * Adapts core's redacting logger to Baileys' pino-shaped `ILogger`.
 *
 * Baileys logs whole protocol nodes and messages at debug/trace level, and sometimes objects
 * holding message content at higher levels. None of that may reach our logs, so this adapter
 * drops trace/debug entirely and, for info/warn/error, forwards only the message string and
 * an error's name/code — never Baileys' structured fields.
 */
import type { Logger } from '@offchannel/core';
import type { ILogger } from '@whiskeysockets/baileys/lib/Utils/logger.js';

export function baileysLogger(logger: Logger): ILogger {
  const forward = (level: 'info' | 'warn' | 'error') => (obj: unknown, msg?: string) => {
    const text = typeof obj === 'string' ? obj : typeof msg === 'string' ? msg : 'baileys event';
    const err = typeof obj === 'object' && obj !== null ? (obj as { err?: unknown; error?: unknown }).err ?? (obj as { error?: unknown }).error : undefined;
    const fields: Record<string, string | number> = { component: 'baileys' };
    if (err && typeof err === 'object') {
      const e = err as { name?: unknown; code?: unknown; output?: { statusCode?: unknown } };
      if (typeof e.name === 'string') fields['error'] = e.name;
      if (typeof e.code === 'string' || typeof e.code === 'number') fields['code'] = e.code;
      if (typeof e.output?.statusCode === 'number') fields['status'] = e.output.statusCode;
    }
    logger[level](fields, text.slice(0, 200));
  };
  const adapter: ILogger = {
    level: 'info',
    child: () => adapter,
    trace: () => undefined,
    debug: () => undefined,
    info: forward('info'),
    warn: forward('warn'),
    error: forward('error'),
  };
  return adapter;
}
