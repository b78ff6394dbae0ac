import { OffchannelError } from './offchannel-error.ts';

/**
 * An operating-system lock ({@link takeOsLock}) was not taken. `code` is one of:
 * - `OS_LOCK_HELD` — another process, or this one, holds it: the one thing a caller expects,
 *   mapped to its own "stop the other one first" error;
 * - `OS_LOCK_REFUSED` — something else is in the lock file's place (a FIFO, a symbolic link, a
 *   directory, a device, a file holding other data), or it was swapped while being locked; it
 *   is refused, never waited on nor followed;
 * - `OS_LOCK_FAILED` — anything else (no `node:sqlite`, no permission, I/O error).
 * `problem` says what is wrong in words that follow the file's name ("is a FIFO (named pipe), not a
 * regular file"), so callers can build their own message around it.
 */
export class OsLockError extends OffchannelError {
  readonly file: string;
  readonly problem: string;

  constructor(code: 'OS_LOCK_HELD' | 'OS_LOCK_REFUSED' | 'OS_LOCK_FAILED', file: string, problem: string, options?: { cause?: unknown }) {
    super(code, `the lock ${file} ${problem}`, options);
    this.file = file;
    this.problem = problem;
  }
}
