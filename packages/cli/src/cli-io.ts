/** Where a command writes and what it reads from its environment — injected so tests run commands in-process. */
export interface CliIo {
  readonly stdout: { write(text: string): unknown; readonly isTTY?: boolean };
  readonly stderr: { write(text: string): unknown; readonly isTTY?: boolean };
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Aborted on SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
  /**
   * Subscribes to SIGHUP ("re-read the config") for as long as a command wants it; returns the
   * unsubscribe. Absent in-process (tests, embedding): nothing to subscribe to.
   */
  readonly onHangup?: (listener: () => void) => () => void;
}

/** Exit codes: 0 success, 1 the archive (or the job) failed a check, 2 the command was used wrongly. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
