/**
 * Supervises one account of `offchannel capture` so that its trouble never stops another's:
 *
 * 1. **Claim** the stream first (read its head: the fs sink takes the stream's OS writer lock),
 *    before any platform connection, so a second process on the same account is refused before
 *    it could kick the first one's session. Refused: parked `claimed-elsewhere`, nothing written.
 * 2. **Create and start** the connector behind the capture policy. A throw is classified by code
 *    (`classify-failure.ts`): not linked / broken entry → parked; anything else → restart with
 *    exponential backoff (a new connector instance each attempt).
 * 3. **Watch** the running connector's status: `logged-out` parks the account; `failed` or an
 *    unrequested stop restarts it with backoff. After `stableMs` running, the backoff resets.
 *
 * Every change of state is one `system` record in the account's own stream
 * (`capture-started`, `capture-restarting`, `capture-not-linked`, `capture-logged-out`,
 * `capture-failed`, `capture-stopped`; see docs/record-schema.md). Restarts are recorded at
 * attempts 1, 2, 4, 8, …, so a year of retries adds a handful of records, not a storm. Each
 * connection change the connector reports (`ctx.transition`: connected, disconnected,
 * reconnecting, logged-out, banned, replaced, stopped) is a `connector-<event>` record with the
 * platform's reason code. The first record of a process names the host's last attestation
 * before it started (`processStart`), so a reader can tell the process was down in between.
 * Logs carry the stream name and error codes only.
 */
import {
  type Connector,
  type ConnectorStatus,
  type ConnectorTransition,
  ConfigError,
  type Logger,
  type Recorder,
  type StateStore,
  type StreamWriter,
  createConnectorContext,
} from '@offchannel/core';
import { CLI_PACKAGE } from '../version.ts';
import type { ConnectorConfig } from './capture-config.ts';
import { CapturePolicy } from './capture-policy.ts';
import { type AccountState, type FailureVerdict, PARKED_STATES, classifyConnectorState, classifyFailure } from './classify-failure.ts';
import { type Environment, type Loader, createConnector } from './connector-registry.ts';

export interface SupervisorOptions {
  readonly entry: ConnectorConfig;
  readonly recorder: Recorder;
  readonly state: StateStore;
  readonly logger: Logger;
  /** The config's `policy.version`, stamped on every record. */
  readonly policyVersion: string | undefined;
  /** Identifies this process's records (`fields.run`): one random id per capture process. */
  readonly runId: string;
  /**
   * The next number for a record key `capture-state:<run>:<n>`: shared by every supervisor of
   * the process, so a stream supervised twice in one run (a changed entry) never repeats a key.
   */
  readonly nextRecord: () => number;
  /** `k/n` when sharded, for `capture-started`. */
  readonly shard?: string;
  readonly restart: { readonly initialMs: number; readonly maxMs: number };
  /** How often a running connector's status is checked. Default 1,000 ms. */
  readonly watchEveryMs?: number;
  /** Running this long resets the backoff. Default 60,000 ms. */
  readonly stableMs?: number;
  /**
   * For one-shot commands (reconcile): no supervision records, and a failed first start is kept
   * in `startError` and the account left `failed`, without retries, for the command to report.
   */
  readonly strict?: boolean;
  readonly load?: Loader;
  /** Where connector secrets named by `<secret>Env` settings are read (default `process.env`). */
  readonly env?: Environment;
  /** The firm's key for excluded-contact HMACs (`policy.identifierKeyFile`). */
  readonly identifierKey?: { readonly bytes: Uint8Array; readonly id: string };
  /**
   * Fields added to this supervisor's first record when it starts with the process: the host's
   * last attestation before this process (`lastAttestation`, `lastAttestationHash`,
   * `lastAttestationAt`) and `processStart: "true"`.
   */
  readonly processStart?: Readonly<Record<string, string>>;
}

/** One account, for status lines and the shutdown summary. */
export interface AccountSnapshot {
  readonly stream: string;
  readonly state: AccountState;
  /** When `state` last changed, ISO 8601 UTC. */
  readonly since: string;
  /** The error code behind a restart or a parked state. */
  readonly code?: string;
  /** Restart attempts since the connector last ran stably. */
  readonly attempt: number;
  /** The running connector's own status. */
  readonly connector?: ConnectorStatus;
  /** Totals over every attempt of this process. */
  readonly captured: number;
  readonly duplicates: number;
  readonly errors: number;
  readonly excluded: number;
}

interface Totals {
  captured: number;
  duplicates: number;
  errors: number;
  excluded: number;
}

export class AccountSupervisor {
  readonly stream: string;
  readonly entry: ConnectorConfig;
  readonly #options: SupervisorOptions;
  readonly #logger: Logger;
  readonly #writer: StreamWriter;
  #state: AccountState = 'starting';
  #since = new Date().toISOString();
  #code: string | undefined;
  #attempt = 0;
  #claimed = false;
  #stopping = false;
  #connector: Connector | undefined;
  #policy: CapturePolicy | undefined;
  #abort: AbortController | undefined;
  #runningSince = 0;
  #watch: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #work: Promise<void> = Promise.resolve();
  #startError: unknown;
  /** The last connection change the running connector reported. */
  #transition: ConnectorTransition['event'] | undefined;
  #processStart: Readonly<Record<string, string>> | undefined;
  readonly #done: Totals = { captured: 0, duplicates: 0, errors: 0, excluded: 0 };

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.entry = options.entry;
    this.stream = `${options.entry.channel}:${options.entry.account}`;
    this.#logger = options.logger;
    this.#processStart = options.processStart;
    const source = { package: CLI_PACKAGE.name, version: CLI_PACKAGE.version, ...(options.policyVersion === undefined ? {} : { policy: options.policyVersion }) };
    this.#writer = options.recorder.writer({ channel: options.entry.channel, account: options.entry.account, source });
  }

  get state(): AccountState {
    return this.#state;
  }

  /**
   * One word for host attestations: the connector's last reported connection change
   * (`connected`, `disconnected`, `logged-out`…) while it runs, else its status, else this
   * supervisor's state (`starting`, `restarting`, `not-linked`, `failed`, `stopped`…).
   */
  get attestedState(): string {
    if (this.#state !== 'running') return this.#state;
    return this.#transition ?? statusOf(this.#connector)?.state ?? 'running';
  }

  /** The running connector and its policy, if any. */
  get running(): { readonly connector: Connector; readonly policy: CapturePolicy } | undefined {
    return this.#connector && this.#policy ? { connector: this.#connector, policy: this.#policy } : undefined;
  }

  /** With `strict`, why the first start failed. */
  get startError(): unknown {
    return this.#startError;
  }

  /** Starts the first attempt; resolves once it settled (running, parked or a retry scheduled). Never rejects. */
  start(): Promise<void> {
    return this.#serial(() => this.#attemptStart());
  }

  /** For SIGHUP: a parked account is tried again (it may have been relinked); others are untouched. */
  retryIfParked(): Promise<void> {
    if (!PARKED_STATES.has(this.#state) || this.#stopping) return Promise.resolve();
    this.#attempt = 0;
    return this.#serial(() => this.#attemptStart());
  }

  /** Records pending exclusion counts of the running connector's policy. */
  async reportPolicy(): Promise<void> {
    await this.#policy?.report();
  }

  /** Stops the connector (captures in flight finish) and records `capture-stopped`. Idempotent. */
  async stop(reason: 'shutdown' | 'removed-from-config' | 'config-changed'): Promise<void> {
    if (this.#stopping) return this.#work;
    this.#stopping = true;
    clearTimeout(this.#retry);
    // Tell a connector still starting (connecting, syncing) to give up now rather than at the end of its start.
    this.#abort?.abort();
    return this.#serial(async () => {
      await this.#stopConnector();
      if (this.#claimed) await this.#record('capture-stopped', { reason });
      this.#set('stopped', undefined);
      this.#logger.info({ stream: this.stream, reason }, 'account stopped');
    });
  }

  snapshot(): AccountSnapshot {
    const status = statusOf(this.#connector);
    const excluded = this.#done.excluded + (this.#policy?.excluded ?? 0);
    return {
      stream: this.stream,
      state: this.#state,
      since: this.#since,
      ...(this.#code === undefined ? {} : { code: this.#code }),
      attempt: this.#attempt,
      ...(status ? { connector: status } : {}),
      captured: this.#done.captured + (status?.captured ?? 0),
      duplicates: this.#done.duplicates + (status?.duplicates ?? 0),
      errors: this.#done.errors + (status?.errors ?? 0),
      excluded,
    };
  }

  /** Runs `step` after every earlier step: start, watch verdicts, retries and stop never overlap. */
  #serial(step: () => Promise<void>): Promise<void> {
    const run = this.#work.then(step).catch((error: unknown) => {
      // A supervisor step must never take the process down; say so and leave the account parked.
      this.#logger.error({ stream: this.stream, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'account supervision step failed');
    });
    this.#work = run;
    return run;
  }

  async #attemptStart(): Promise<void> {
    if (this.#stopping) return;
    this.#set('starting', undefined);
    const abort = new AbortController();
    this.#abort = abort;
    let connector: Connector | undefined;
    let policy: CapturePolicy | undefined;
    try {
      if (!this.#claimed) {
        // Reading the head takes the stream's writer lock: refused here if another process holds it.
        await this.#options.recorder.lookup(this.stream, 'offchannel-capture:claim');
        this.#claimed = true;
      }
      const entry = this.entry;
      connector = await createConnector(entry, this.#options.load, this.#options.env);
      if (connector.channel !== entry.channel || connector.account !== entry.account) throw new ConfigError(entry.key, `the ${entry.channel} package built a connector for another stream; check its version`);
      const version = this.#options.policyVersion;
      const source = version === undefined ? connector.source : { ...connector.source, policy: version };
      this.#transition = undefined;
      const ctx = createConnectorContext({
        recorder: this.#options.recorder,
        connector: { channel: connector.channel, account: connector.account, source },
        state: this.#options.state,
        logger: this.#logger,
        signal: abort.signal,
        // Every connection change is a record with the platform's reason (not for one-shot commands).
        recordTransitions: this.#options.strict !== true,
        onTransition: (transition) => {
          if (this.#abort === abort) this.#transition = transition.event;
        },
      });
      policy = new CapturePolicy(ctx, entry.policy, version, this.#options.identifierKey);
      await policy.start();
      this.#logger.info({ stream: this.stream, policy: version ?? null, excluding: policy.active, attempt: this.#attempt }, 'starting connector');
      await connector.start(policy.wrap());
    } catch (error) {
      abort.abort();
      this.#abort = undefined;
      if (connector) await stopQuietly(connector);
      if (policy) this.#done.excluded += policy.excluded;
      this.#absorb(connector);
      if (this.#options.strict) {
        this.#startError = error;
        this.#set('failed', classifyFailure(error).code);
        return;
      }
      await this.#failed(classifyFailure(error), error);
      return;
    }
    this.#connector = connector;
    this.#policy = policy;
    this.#runningSince = Date.now();
    this.#set('running', undefined);
    await this.#record('capture-started', { attempt: String(this.#attempt), connector: `${connector.source.package}@${connector.source.version}`, ...(this.#options.shard === undefined ? {} : { shard: this.#options.shard }) });
    this.#logger.info({ stream: this.stream }, 'account capturing');
    if (this.#stopping) return;
    this.#watch = setInterval(() => {
      this.#check();
    }, this.#options.watchEveryMs ?? 1000);
  }

  #check(): void {
    const connector = this.#connector;
    if (!connector || this.#stopping) return;
    // A status() that throws is a connector in trouble: restart it.
    const verdict = classifyConnectorState(statusOf(connector)?.state ?? 'failed');
    if (!verdict) {
      if (this.#attempt > 0 && Date.now() - this.#runningSince >= (this.#options.stableMs ?? 60_000)) this.#attempt = 0;
      return;
    }
    clearInterval(this.#watch);
    void this.#serial(async () => {
      if (this.#stopping || this.#connector !== connector) return;
      await this.#stopConnector();
      await this.#failed(verdict, undefined);
    });
  }

  /** Parks the account, or schedules the next attempt. */
  async #failed(verdict: FailureVerdict, error: unknown): Promise<void> {
    if (this.#stopping) return;
    if (verdict.state === 'claimed-elsewhere') {
      // Not ours to write: the other process records its own state.
      this.#set('claimed-elsewhere', verdict.code);
      this.#logger.error({ stream: this.stream, code: verdict.code }, `account ${this.stream} is captured by another process (it holds the stream's writer lock); check --shard and that one process per account runs. This account is parked; the others keep running`);
      return;
    }
    if (verdict.state !== 'restarting') {
      this.#set(verdict.state, verdict.code);
      await this.#record(`capture-${verdict.state}`, { code: verdict.code });
      const hint = verdict.state === 'failed' ? `fix it (${describe(error)}), then send SIGHUP` : `link it (offchannel link ${this.entry.channel} --account …), then send SIGHUP`;
      this.#logger.error({ stream: this.stream, state: verdict.state, code: verdict.code }, `account parked: ${hint}; the other accounts keep running`);
      return;
    }
    this.#attempt += 1;
    const { initialMs, maxMs } = this.#options.restart;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(this.#attempt - 1, 30));
    const backoffMs = Math.round(base * (0.8 + Math.random() * 0.4));
    this.#set('restarting', verdict.code);
    // Attempts 1, 2, 4, 8…: a bounded trail, never one record per retry.
    if ((this.#attempt & (this.#attempt - 1)) === 0) await this.#record('capture-restarting', { attempt: String(this.#attempt), backoffMs: String(backoffMs), code: verdict.code });
    this.#logger.warn({ stream: this.stream, code: verdict.code, attempt: this.#attempt, backoffMs }, 'account restarting after a failure');
    this.#retry = setTimeout(() => {
      void this.#serial(() => this.#attemptStart());
    }, backoffMs);
  }

  async #stopConnector(): Promise<void> {
    clearInterval(this.#watch);
    const connector = this.#connector;
    if (!connector) return;
    this.#abort?.abort();
    const error = await stopQuietly(connector);
    if (error !== undefined) this.#logger.error({ stream: this.stream, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'connector stop failed');
    const policy = this.#policy;
    if (policy) {
      await policy.report().catch((error: unknown) => {
        this.#logger.error({ stream: this.stream, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'recording policy counts failed; they stay pending in the state store');
      });
      this.#done.excluded += policy.excluded;
    }
    this.#absorb(connector);
    this.#connector = undefined;
    this.#policy = undefined;
    this.#abort = undefined;
  }

  #absorb(connector: Connector | undefined): void {
    const status = statusOf(connector);
    if (!status) return;
    this.#done.captured += status.captured;
    this.#done.duplicates += status.duplicates;
    this.#done.errors += status.errors;
  }

  #set(state: AccountState, code: string | undefined): void {
    if (state !== this.#state) this.#since = new Date().toISOString();
    this.#state = state;
    this.#code = code;
  }

  /** One `system` record of a supervision change; a failure to record is logged, never thrown. */
  async #record(event: string, fields: Record<string, string>): Promise<void> {
    if (this.#options.strict) return;
    const start = this.#processStart ?? {};
    this.#processStart = undefined;
    try {
      await this.#writer.capture({ kind: 'system', key: `capture-state:${this.#options.runId}:${this.#options.nextRecord()}`, system: { event, fields: { ...start, ...fields, run: this.#options.runId } } });
    } catch (error) {
      if (Object.keys(start).length > 0) this.#processStart = start; // the next record carries it
      this.#logger.error({ stream: this.stream, event, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'could not record the account state change');
    }
  }
}

/** The connector's status, or `undefined` if it has none or `status()` throws. */
function statusOf(connector: Connector | undefined): ConnectorStatus | undefined {
  try {
    return connector?.status();
  } catch {
    return undefined;
  }
}

/** Stops `connector`; resolves with what it threw (synchronously or not), never rejects. */
async function stopQuietly(connector: Connector): Promise<unknown> {
  try {
    await connector.stop();
    return undefined;
  } catch (error) {
    return error ?? new Error('connector stop failed');
  }
}

/** A config error's message names the key and never the value; other errors are named by code only. */
function describe(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  return (error as { code?: string } | undefined)?.code ?? 'see the log';
}
