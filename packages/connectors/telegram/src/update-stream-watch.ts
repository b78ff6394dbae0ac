/**
 * Watches the Telegram update stream for what the records themselves cannot show, and records
 * it as `system` records (see docs/record-schema.md, "Telegram completeness signals"):
 *
 * - every `updates.getDifference` sequence: the start-up catch-up always, later ones when they
 *   recovered something (`difference-fetched`);
 * - frozen accounts (`account-frozen`, once);
 * - updates that silently stop: after `quietMs` without an update or an answered difference,
 *   `updates.getState`; the server ahead of the engine → `updates-behind` and a forced
 *   getDifference; the probe failing → `updates-probe-failed`.
 *
 * These are observations, not platform events: they are captured beside the connector runtime's
 * pipeline (in order, retried while the archive is unavailable, until stop), acknowledge nothing
 * and are not counted as captured.
 */
import { isRetryable, type CaptureInput, type ConnectorContext } from '@offchannel/core';
import type { tl } from '@mtcute/core';
import type { BaseTelegramClient } from '@mtcute/core/client.js';
import { errorCode } from './error-code.ts';
import { accountFrozenInput, differenceInput, updatesStalledInput, type DifferenceTrigger } from './map-telegram.ts';

/** Defaults: probe after 20 min without updates (mtcute's own keepalive is every 15 min). */
export const DEFAULT_QUIET_MS = 20 * 60_000;
const CHECK_EVERY_MS = 60_000;

export interface UpdateStreamWatchOptions {
  readonly ctx: Pick<ConnectorContext, 'capture' | 'logger'>;
  /** The connected client, or undefined once closed. */
  readonly client: () => BaseTelegramClient | undefined;
  /** Whether capture runs (the probe only runs then). */
  readonly running: () => boolean;
  readonly quietMs?: number;
  readonly checkEveryMs?: number;
}

export class UpdateStreamWatch {
  readonly #o: UpdateStreamWatchOptions;
  readonly #quietMs: number;
  readonly #stopped = new AbortController();
  #signals: Promise<void> = Promise.resolve();
  /** The getDifference sequence in progress (slices until the final answer). */
  #difference: { trigger: DifferenceTrigger; fromPts: number; messages: number; other: number } | undefined;
  #caughtUp = false;
  #probeForced = false;
  #frozenReported = false;
  #lastProof = Date.now();
  #probing = false;
  #timer: NodeJS.Timeout | undefined;
  #startDone: () => void = () => undefined;
  /** Resolves once the start-up catch-up is recorded, failed, or the watch closed. */
  readonly started: Promise<void>;

  constructor(options: UpdateStreamWatchOptions) {
    this.#o = options;
    this.#quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
    this.started = new Promise((resolve) => (this.#startDone = resolve));
  }

  /** Starts the liveness check. */
  watch(): void {
    this.#lastProof = Date.now();
    this.#timer = setInterval(() => {
      if (this.#probing || !this.#o.running() || Date.now() - this.#lastProof < this.#quietMs) return;
      this.#probing = true;
      void this.#probe().finally(() => {
        this.#probing = false;
      });
    }, this.#o.checkEveryMs ?? CHECK_EVERY_MS);
    this.#timer.unref();
  }

  /** An update arrived: updates flow. */
  updateSeen(): void {
    this.#lastProof = Date.now();
  }

  /** The start need not wait for the catch-up any longer (it failed, or the session ended). */
  startSettled(): void {
    this.#startDone();
  }

  /** An answer to `updates.getDifference` for `requestPts`. */
  difference(requestPts: number, result: tl.updates.TypeDifference): void {
    this.#lastProof = Date.now();
    const trigger: DifferenceTrigger = !this.#caughtUp ? 'start' : this.#probeForced ? 'probe' : 'running';
    const run = (this.#difference ??= { trigger, fromPts: requestPts, messages: 0, other: 0 });
    if (result._ === 'updates.differenceSlice' || result._ === 'updates.difference') {
      run.messages += result.newMessages.length + result.newEncryptedMessages.length;
      run.other += result.otherUpdates.length;
    }
    if (result._ === 'updates.differenceSlice') return; // more to come
    const toPts = result._ === 'updates.difference' ? result.state.pts : result._ === 'updates.differenceTooLong' ? result.pts : requestPts;
    this.#difference = undefined;
    this.#caughtUp = true;
    this.#probeForced = false;
    if (run.trigger === 'start' || run.messages + run.other > 0) this.record(differenceInput(run.trigger, run.fromPts, toPts, run.messages, run.other, new Date()));
    this.#signals = this.#signals.then(() => {
      this.#startDone();
    });
  }

  /** Telegram answered `code` (`FROZEN_…`) to `method`. */
  frozen(code: string, method: string): void {
    if (this.#frozenReported) return;
    this.#frozenReported = true;
    this.#o.ctx.logger.warn({ code, method }, 'Telegram says this account is frozen; capture continues while updates arrive');
    this.record(accountFrozenInput(code, method, new Date()));
  }

  /** Records a signal: in order, retried with backoff while the archive is unavailable, until closed. */
  record(input: CaptureInput): void {
    const { ctx } = this.#o;
    const stopped = this.#stopped.signal;
    this.#signals = this.#signals.then(async () => {
      for (let delayMs = 200; ; delayMs = Math.min(delayMs * 2, 30_000)) {
        try {
          await ctx.capture(input);
          return;
        } catch (error) {
          if (stopped.aborted || !isRetryable(error)) {
            ctx.logger.warn({ code: errorCode(error), event: input.system?.event }, 'completeness signal not recorded');
            return;
          }
          await new Promise((resolve) => {
            const timer = setTimeout(resolve, delayMs);
            stopped.addEventListener('abort', () => { clearTimeout(timer); resolve(undefined); }, { once: true });
          });
        }
      }
    });
  }

  /** Stops probing and retrying; resolves once the signals in progress are settled. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stopped.abort();
    this.#startDone();
    await this.#signals;
  }

  async #probe(): Promise<void> {
    const client = this.#o.client();
    if (!client) return;
    const quietMs = this.#quietMs;
    try {
      const state = await client.call({ _: 'updates.getState' });
      const localPts = client.updates?.pts;
      this.#lastProof = Date.now();
      if (localPts === undefined || state.pts <= localPts) return; // quiet, not behind
      this.#o.ctx.logger.warn({ localPts, serverPts: state.pts }, 'updates stopped arriving; forcing getDifference');
      this.record(updatesStalledInput({ localPts, serverPts: state.pts, quietMs }, new Date()));
      this.#probeForced = true;
      client.updates?.catchUp();
    } catch (error) {
      const code = errorCode(error);
      this.#o.ctx.logger.warn({ code }, 'liveness probe failed; mtcute keeps reconnecting');
      this.#lastProof = Date.now(); // one record per quiet period
      this.record(updatesStalledInput({ code, quietMs }, new Date()));
    }
  }
}
