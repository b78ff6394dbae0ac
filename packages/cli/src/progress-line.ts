import type { CliIo } from './cli-io.ts';

/**
 * A one-line progress display on stderr, redrawn at most every 100 ms, only when stderr is a
 * terminal (logs and pipes never see it). Shows a bar when the total is known, else a count and
 * rate. Never prints message content: callers pass phases and counts only.
 */
export class ProgressLine {
  readonly #io: CliIo;
  readonly #enabled: boolean;
  readonly #started = Date.now();
  #last = 0;
  #shown = false;

  constructor(io: CliIo, enabled = true) {
    this.#io = io;
    this.#enabled = enabled && io.stderr.isTTY === true;
  }

  update(phase: string, done: number, total?: number, unit = 'records'): void {
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#last < 100 && (total === undefined || done < total)) return;
    this.#last = now;
    const seconds = Math.max((now - this.#started) / 1000, 0.001);
    const count = `${done.toLocaleString('en-US')}${total === undefined ? '' : `/${total.toLocaleString('en-US')}`} ${unit}`;
    const rate = `${Math.round(done / seconds).toLocaleString('en-US')}/s`;
    const bar = total === undefined || total === 0 ? '' : ` [${'#'.repeat(Math.round((Math.min(done, total) / total) * 24)).padEnd(24, '.')}] ${Math.floor((Math.min(done, total) / total) * 100)}%`;
    this.#io.stderr.write(`\r  ${phase}${bar} ${count} (${rate})\u001b[K`);
    this.#shown = true;
  }

  /** Clears the line. */
  done(): void {
    if (this.#shown) this.#io.stderr.write('\r\u001b[K');
    this.#shown = false;
  }
}
