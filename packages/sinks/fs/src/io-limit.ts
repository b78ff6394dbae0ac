/**
 * At most `max` tasks run at once; the others wait, first come first served. The fs sink runs
 * each blob write through one, so a burst of captures (a history sync with thousands of media
 * files) cannot exhaust the process's file descriptors (EMFILE at the common limit of 1,024).
 */
export class IoLimit {
  readonly #max: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('IoLimit needs a positive integer');
    this.#max = max;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await task();
    } finally {
      // Hand the slot straight to the next waiter (the count stays), or free it.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
