/**
 * The logger contract: a structural subset of pino's `BaseLogger`, so a pino instance can be
 * passed as is, and nothing depends on pino at runtime.
 *
 * Logs are diagnostics, never evidence. Message text, attachment bytes, raw platform bytes and
 * secrets MUST NOT be logged; {@link redactingLogger} enforces that for structured fields, and
 * offchannel's own code never interpolates content into log messages (tested).
 */

/** Values allowed in child-logger bindings: fixed keys, scalar values. */
export type LogBindings = Readonly<Record<string, string | number | boolean>>;

/** pino-style log method: `log(fields, message)` or `log(message)`. */
export interface LogFn {
  (fields: object, message?: string): void;
  (message: string): void;
}

export interface Logger {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  /**
   * A logger that adds `bindings` to every line. Keys MUST be fixed names chosen by code
   * (`component`, `stream`…), never taken from input (pino: user keys can collide with `level`).
   */
  child(bindings: LogBindings): Logger;
}

const noop: LogFn = () => undefined;

/** The default logger: discards everything. */
export const noopLogger: Logger = {
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  child: () => noopLogger,
};
