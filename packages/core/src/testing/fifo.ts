import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';

/** Creates a FIFO (named pipe, mode 0600) at `file`, for tests that plant one where a file is read. */
export function mkfifo(file: string): void {
  execFileSync('mkfifo', ['-m', '600', file], { timeout: 10_000 });
}

/**
 * How `promise` settles: the error it rejects with, `{ value }` if it resolves, or 'hung' if it
 * is still waiting after 10 s. Then `fifo` is opened for writing, which wakes a reader blocked
 * on it (code that waited on a FIFO planted at `fifo`), so a failing check does not hang the run.
 */
export async function settleOrHang(fifo: string, promise: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise((resolve) => {
    timer = setTimeout(() => {
      resolve('hung');
    }, 10_000);
  });
  try {
    return await Promise.race([promise.then((value: unknown) => ({ value }), (error: unknown) => error), hung]);
  } finally {
    clearTimeout(timer);
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // no FIFO, or no reader waiting on it
    }
  }
}
