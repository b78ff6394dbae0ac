import { existsSync } from 'node:fs';
import path from 'node:path';
import { CONNECTOR_SPEC_VERSION, type CaptureInput, ConfigError, type Connector, type ConnectorContext, type ConnectorStatus, OffchannelError } from '@offchannel/core';
import { DEMO_ACCOUNT, DEMO_RAW_FORMAT, demoExchange } from '../demo/demo-exchange.ts';
import { CLI_PACKAGE } from '../version.ts';
import { type Json, object, optionalBoolean, optionalInteger } from './config-reader.ts';

/**
 * The built-in `demo` channel: replays the generated business exchange (the same events as
 * `offchannel demo`) through the real capture path, one event every `intervalMs`. For trying
 * `offchannel capture`, its policy and its shutdown without any platform account. With
 * `repeat`, it then keeps sending one numbered desk message per interval (`tick-1`, `tick-2`…,
 * fixed platform times), to watch a long-running capture: restarts, reloads, shards.
 *
 * With `loggedOutWhile` (a file path), the demo account is logged out while that file exists,
 * checked before each event: the connector reports the transition `logged-out` (reason
 * `demo-control-file`) and the state `logged-out`, as a platform ending the session would, and
 * its supervisor parks it. Remove the file and send SIGHUP to "relink". For trying (and testing)
 * what `offchannel coverage` reports for a logged-out account.
 */
export class DemoConnector implements Connector {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'demo';
  readonly account: string;
  readonly source = { package: CLI_PACKAGE.name, version: CLI_PACKAGE.version, upstream: 'offchannel-demo-generator@1' };
  readonly #intervalMs: number;
  readonly #events: readonly CaptureInput[];
  readonly #repeat: boolean;
  readonly #loggedOutWhile: string | undefined;
  #status: ConnectorStatus = { state: 'idle', since: new Date().toISOString(), captured: 0, duplicates: 0, errors: 0 };
  #loop: Promise<void> | undefined;
  #stop = new AbortController();

  constructor(options: { readonly account?: string; readonly intervalMs?: number; readonly events?: readonly CaptureInput[]; readonly repeat?: boolean; readonly loggedOutWhile?: string } = {}) {
    this.account = options.account ?? DEMO_ACCOUNT;
    this.#loggedOutWhile = options.loggedOutWhile;
    this.#intervalMs = options.intervalMs ?? 200;
    this.#events = options.events ?? demoExchange();
    this.#repeat = options.repeat ?? false;
  }

  /** `baseDir`: where a relative `loggedOutWhile` path starts (the config file's directory). */
  static fromConfig(entry: Json, key: string, baseDir = '.'): DemoConnector {
    const options = object(entry, key, ['account', 'intervalMs', 'repeat', 'loggedOutWhile']);
    const control = options.loggedOutWhile;
    if (control !== undefined && (typeof control !== 'string' || control === '' || control.includes('\0'))) throw new ConfigError(`${key}.loggedOutWhile`, 'must be a file path: while that file exists, the demo account is logged out');
    const intervalMs = optionalInteger(options.intervalMs, `${key}.intervalMs`, 0, 3_600_000);
    const repeat = optionalBoolean(options.repeat, `${key}.repeat`);
    if (repeat === true && intervalMs === 0) throw new ConfigError(`${key}.intervalMs`, 'must be at least 1 with "repeat": true (it would send messages as fast as the archive takes them)');
    return new DemoConnector({
      account: options.account as string,
      ...(intervalMs === undefined ? {} : { intervalMs }),
      ...(repeat === undefined ? {} : { repeat }),
      ...(typeof control === 'string' ? { loggedOutWhile: path.resolve(baseDir, control) } : {}),
    });
  }

  async start(ctx: ConnectorContext): Promise<void> {
    this.#set({ state: 'running', detail: `replaying ${this.#events.length} demo events` });
    this.#loop = this.#run(ctx);
  }

  async #run(ctx: ConnectorContext): Promise<void> {
    for (const event of this.#replay()) {
      if (this.#stop.signal.aborted || ctx.signal.aborted) break;
      if (this.#loggedOutWhile !== undefined && existsSync(this.#loggedOutWhile)) {
        await this.#logOut(ctx);
        return;
      }
      try {
        const result = await ctx.capture(event);
        if (result.status === 'recorded') this.#set({ captured: this.#status.captured + 1, ...(event.sentAt ? { lastEventAt: new Date(event.sentAt).toISOString() } : {}) });
        else if (result.status === 'duplicate') this.#set({ duplicates: this.#status.duplicates + 1 });
      } catch (error) {
        this.#set({ errors: this.#status.errors + 1 });
        ctx.logger.error({ code: OffchannelError.isInstance(error) ? error.code : 'UNKNOWN' }, 'demo capture failed');
      }
      if (this.#intervalMs > 0) await sleep(this.#intervalMs, this.#stop.signal);
    }
    if (!this.#stop.signal.aborted) this.#set({ detail: 'all demo events replayed; idle' });
  }

  /** The control file says the platform ended the session: report it, as a real connector does. */
  async #logOut(ctx: ConnectorContext): Promise<void> {
    try {
      await ctx.transition?.({ event: 'logged-out', at: new Date().toISOString(), reason: 'demo-control-file' });
    } catch (error) {
      ctx.logger.error({ code: OffchannelError.isInstance(error) ? error.code : 'UNKNOWN' }, 'demo could not record its logout');
    }
    this.#set({ state: 'logged-out', detail: 'logged out by the control file (loggedOutWhile)' });
  }

  *#replay(): Generator<CaptureInput> {
    yield* this.#events;
    for (let n = 1; this.#repeat; n++) yield demoTick(n);
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    this.#set({ state: 'stopping' });
    await this.#loop;
    this.#set({ state: 'stopped' });
  }

  status(): ConnectorStatus {
    return this.#status;
  }

  #set(change: Partial<ConnectorStatus>): void {
    const since = change.state !== undefined && change.state !== this.#status.state ? new Date().toISOString() : this.#status.since;
    this.#status = { ...this.#status, ...change, since };
  }
}

const TICKS_FROM = Date.UTC(2026, 10, 20, 9, 0, 0);
const desk = { id: 'group:rates-desk', type: 'group', title: 'Rates desk' } as const;
const dan = { id: 'dan@firm.example', name: 'Dan Okafor' };

/** The `n`th repeated desk message: same key, content and platform time on every run. */
export function demoTick(n: number): CaptureInput {
  const id = `tick-${n}`;
  const event = { kind: 'message', key: `message:${id}`, conversation: desk, sender: dan, direction: 'inbound', native: { id, chat: desk.id }, text: `Desk update ${n}`, sentAt: new Date(TICKS_FROM + n * 1000).toISOString() } as const;
  return { ...event, raw: { bytes: new TextEncoder().encode(JSON.stringify({ platform: 'demo', event })), format: DEMO_RAW_FORMAT } };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
