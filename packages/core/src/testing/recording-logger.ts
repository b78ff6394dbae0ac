import type { LogBindings, LogFn, Logger } from '../logger/logger.ts';

/** One captured log call. */
export interface LogLine {
  readonly level: 'error' | 'warn' | 'info' | 'debug';
  readonly bindings: LogBindings;
  readonly fields: object | undefined;
  readonly message: string | undefined;
}

/**
 * A logger that keeps every call in memory, for asserting what is (and is not) logged —
 * e.g. that no message text ever reaches the logs: `expect(logger.text()).not.toContain(secret)`.
 */
export interface RecordingLogger extends Logger {
  readonly lines: LogLine[];
  /** Every line serialized as JSON, joined by newlines: search it for leaked content. */
  text(): string;
}

export function createRecordingLogger(): RecordingLogger {
  const lines: LogLine[] = [];
  const make = (bindings: LogBindings): Logger => {
    const method =
      (level: LogLine['level']): LogFn =>
      (first: object | string, message?: string) => {
        if (typeof first === 'string') lines.push({ level, bindings, fields: undefined, message: first });
        else lines.push({ level, bindings, fields: first, message });
      };
    return {
      error: method('error'),
      warn: method('warn'),
      info: method('info'),
      debug: method('debug'),
      child: (more: LogBindings) => make({ ...bindings, ...more }),
    };
  };
  const root = make({});
  return {
    ...root,
    lines,
    text: () =>
      lines
        .map((line) =>
          JSON.stringify(line, (_key, value: unknown) => (value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : typeof value === 'bigint' ? value.toString() : value)),
        )
        .join('\n'),
  };
}
