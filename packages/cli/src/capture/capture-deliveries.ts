/**
 * The `delivery` section of `offchannel.config.json`: SMTP journaling targets that `offchannel
 * capture` keeps fed while it captures (see docs/delivery.md). Each target runs on its own: a
 * refusal, TLS or credential failure stops that target (logged, shown in the status) and never
 * the capture or another target.
 *
 * ```json
 * "delivery": [
 *   { "name": "journal", "smtp": "smtp://journal.archive.example:587", "to": "journal@archive.example",
 *     "from": "offchannel@firm.example", "user": "offchannel", "passwordFile": "./smtp.pass",
 *     "mode": "record", "stateDir": "./delivery-state" }
 * ]
 * ```
 * The password comes from `passwordFile` (0600) or `OFFCHANNEL_SMTP_PASSWORD`; never the config.
 */
import { stat } from 'node:fs/promises';
import { setTimeout as wait } from 'node:timers/promises';
import { ConfigError, type CheckpointOptions, type Logger, MAX_SECRET_FILE_BYTES, type NoteVerifier, OffchannelError, type Sink, isRetryable, readSmallFile } from '@offchannel/core';
import { type DeliveryStatus, type DeliveryTarget, Deliverer } from '@offchannel/delivery';
import { object, oneOf, optionalBoolean, optionalInteger, optionalString, requiredString } from './config-reader.ts';

export interface DeliveryEntry {
  readonly name: string;
  readonly smtp: string;
  readonly to: string;
  readonly from: string;
  readonly mode: 'record' | 'day';
  readonly user?: string;
  readonly passwordFile?: string;
  readonly caFile?: string;
  readonly allowPlaintextLoopback: boolean;
  readonly maxPerSecond?: number;
  readonly pollMs: number;
  readonly stateDir: string;
}

/** Parses the `delivery` list; paths resolve with `at` (against the config's directory). */
export function parseDeliveryConfig(value: unknown, at: (relative: string) => string): DeliveryEntry[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError('config.delivery', 'must be a list of SMTP journaling targets ({"name", "smtp", "to", "from", …})');
  const names = new Set<string>();
  return value.map((item, index) => {
    const key = `config.delivery[${index}]`;
    if (typeof item === 'object' && item !== null && 'password' in item) throw new ConfigError(`${key}.password`, 'is not allowed: secrets never go in the config; use "passwordFile" (0600) or OFFCHANNEL_SMTP_PASSWORD');
    const entry = object(item, key, ['name', 'smtp', 'to', 'from', 'mode', 'user', 'passwordFile', 'caFile', 'allowPlaintextLoopback', 'maxPerSecond', 'pollMs', 'stateDir']);
    const name = optionalString(entry.name, `${key}.name`) ?? 'journal';
    if (names.has(name)) throw new ConfigError(`${key}.name`, `repeats "${name}": each target needs its own name (it names its receipts stream delivery:<name>)`);
    names.add(name);
    const user = optionalString(entry.user, `${key}.user`);
    const passwordFile = optionalString(entry.passwordFile, `${key}.passwordFile`);
    const caFile = optionalString(entry.caFile, `${key}.caFile`);
    const maxPerSecond = optionalInteger(entry.maxPerSecond, `${key}.maxPerSecond`, 1, 10_000);
    if (passwordFile !== undefined && user === undefined) throw new ConfigError(`${key}.passwordFile`, 'needs "user"');
    return {
      name,
      smtp: requiredString(entry.smtp, `${key}.smtp`),
      to: requiredString(entry.to, `${key}.to`),
      from: requiredString(entry.from, `${key}.from`),
      mode: oneOf(entry.mode, `${key}.mode`, ['record', 'day'] as const) ?? 'record',
      ...(user === undefined ? {} : { user }),
      ...(passwordFile === undefined ? {} : { passwordFile: at(passwordFile) }),
      ...(caFile === undefined ? {} : { caFile: at(caFile) }),
      allowPlaintextLoopback: optionalBoolean(entry.allowPlaintextLoopback, `${key}.allowPlaintextLoopback`) ?? false,
      ...(maxPerSecond === undefined ? {} : { maxPerSecond }),
      pollMs: optionalInteger(entry.pollMs, `${key}.pollMs`, 100, 3_600_000) ?? 5000,
      stateDir: at(optionalString(entry.stateDir, `${key}.stateDir`) ?? './delivery-state'),
    };
  });
}

/** A target's state for status lines and logs. */
export interface DeliverySnapshot {
  readonly name: string;
  /** `retrying`: it could not open for a reason that may pass (the archive unreachable), tried again with backoff. */
  readonly state: 'running' | 'retrying' | 'failed' | 'stopped';
  /** The error code that stopped it (`DELIVERY_REFUSED` …), or that it is retrying after. */
  readonly error?: string;
  readonly status: DeliveryStatus | undefined;
}

interface Running {
  readonly entry: DeliveryEntry;
  deliverer: Deliverer | undefined;
  loop: Promise<void> | undefined;
  state: DeliverySnapshot['state'];
  error: string | undefined;
}

/** What every target is opened with: records read through `archive` (read-only), receipts recorded through `receipts`. */
interface StartOptions {
  readonly archive: Sink;
  readonly receipts: Sink;
  /** `archive` is the spool in front of S3 (it may prune); never for an archive directory of record. */
  readonly prunedSpool?: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly verifiers?: readonly NoteVerifier[];
  readonly checkpoints?: CheckpointOptions;
  readonly generator: string;
  readonly logger: Logger;
}

/** Backoff of a target that could not open for a reason that may pass. */
const REOPEN_MIN_MS = 1_000;
const REOPEN_MAX_MS = 5 * 60_000;

/** Runs every configured target beside capture. */
export class CaptureDeliveries {
  readonly #running: Running[] = [];
  readonly #abort = new AbortController();
  readonly #logger: Logger;

  private constructor(logger: Logger) {
    this.#logger = logger;
  }

  /**
   * Opens each target (reading records through `archive`, a read-only handle; recording receipts
   * through `receipts`) and starts following. A target that cannot open is reported failed — or,
   * when the reason may pass (its receipts store or the archive of record unreachable),
   * `retrying` and opened again with backoff.
   */
  static async start(entries: readonly DeliveryEntry[], options: StartOptions): Promise<CaptureDeliveries> {
    const deliveries = new CaptureDeliveries(options.logger);
    for (const entry of entries) {
      const running: Running = { entry, deliverer: undefined, loop: undefined, state: 'running', error: undefined };
      deliveries.#running.push(running);
      const failed = await deliveries.#open(running, options).then(
        () => undefined,
        (error: unknown) => ({ error }),
      );
      if (failed === undefined) running.loop = deliveries.#follow(running, options);
      else if (isRetryable(failed.error)) running.loop = deliveries.#reopen(running, options, failed.error);
      else deliveries.#fail(running, failed.error);
    }
    return deliveries;
  }

  async #open(running: Running, options: StartOptions): Promise<void> {
    running.deliverer = await Deliverer.open({
      archive: options.archive,
      receipts: options.receipts,
      // With an S3 archive they read its spool, which may prune after forwarding (held, see holdFrom).
      ...(options.prunedSpool === true ? { prunedSpool: true } : {}),
      target: await targetOf(running.entry, options.env),
      stateDir: running.entry.stateDir,
      ...(options.verifiers ? { verifiers: options.verifiers } : {}),
      ...(options.checkpoints ? { checkpoints: options.checkpoints } : {}),
      generator: options.generator,
      logger: options.logger,
    });
  }

  /**
   * A target whose open failed for a reason that may pass (its receipts or the archive of record
   * unreachable): tried again after 1 s, doubling to 5 min, until it opens or capture stops.
   * Meanwhile it holds the whole spool (`holdFrom`: its cursor is unknown).
   */
  async #reopen(running: Running, options: StartOptions, first: unknown): Promise<void> {
    let error = first;
    for (let delayMs = REOPEN_MIN_MS; !this.#abort.signal.aborted; delayMs = Math.min(REOPEN_MAX_MS, delayMs * 2)) {
      running.state = 'retrying';
      running.error = OffchannelError.isInstance(error) ? error.code : 'UNKNOWN';
      this.#logger.warn({ deliveryTarget: running.entry.name, code: running.error, retryInMs: delayMs }, 'delivery target could not open for a reason that may pass; trying again');
      // False when capture stops first (the timer rejects with an AbortError).
      if (!(await wait(delayMs, true, { signal: this.#abort.signal }).catch(() => false))) return;
      try {
        await this.#open(running, options);
      } catch (caught) {
        if (!isRetryable(caught)) {
          this.#fail(running, caught);
          return;
        }
        error = caught;
        continue;
      }
      running.state = 'running';
      running.error = undefined;
      await this.#follow(running, options);
      return;
    }
  }

  /** Follows until capture stops; a failure that cannot pass stops this target alone. */
  async #follow(running: Running, options: StartOptions): Promise<void> {
    const deliverer = running.deliverer as Deliverer;
    const entry = running.entry;
    await deliverer
      .follow({
        signal: this.#abort.signal,
        pollMs: entry.pollMs,
        onPass: (pass) => {
          if (pass.sent > 0 || pass.backlog > 0) options.logger.info({ deliveryTarget: entry.name, sent: pass.sent, backlog: pass.backlog, lagMs: pass.lagMs, notDue: pass.notDue, inDoubt: pass.inDoubt }, 'delivery status');
        },
      })
      .catch((error: unknown) => {
        this.#fail(running, error);
      });
  }

  #fail(running: Running, error: unknown): void {
    running.state = 'failed';
    running.error = OffchannelError.isInstance(error) ? error.code : 'UNKNOWN';
    this.#logger.error({ deliveryTarget: running.entry.name, code: running.error, reason: OffchannelError.isInstance(error) ? error.message : 'unexpected error' }, 'delivery target stopped; capture continues. Fix the cause and restart capture (or run offchannel deliver) to resume from the named record');
  }

  /**
   * For spool pruning (`PruneOptions.holds`): the lowest seq of `stream` any target still needs.
   * A target that stopped on an error holds where it stopped (it resumes there after a restart);
   * one that could not even open holds everything (its cursor is unknown). Only the spool's size
   * cap passes a hold, and each target then records the records it lost (`status.missed`).
   */
  holdFrom(stream: string): number | undefined {
    let hold: number | undefined;
    for (const running of this.#running) {
      const seq = running.deliverer ? running.deliverer.holdFrom(stream) : 1;
      if (seq !== undefined) hold = Math.min(hold ?? seq, seq);
    }
    return hold;
  }

  snapshot(): DeliverySnapshot[] {
    return this.#running.map((running) => ({ name: running.entry.name, state: running.state, ...(running.error === undefined ? {} : { error: running.error }), status: running.deliverer?.status() }));
  }

  /** Stops following, waits for the message in flight, and closes every target (signing its receipts). */
  async stop(): Promise<void> {
    this.#abort.abort();
    for (const running of this.#running) {
      await running.loop;
      await running.deliverer?.close();
      if (running.state === 'running' || running.state === 'retrying') running.state = 'stopped';
    }
  }
}

/** Largest CA file read: a bundle of PEM certificates (a system's whole bundle is a few hundred KiB). */
const MAX_CA_FILE_BYTES = 16 * 1024 * 1024;

/**
 * A file a delivery entry names: only a regular file up to `maxBytes` is read; a FIFO in its
 * place is refused, never waited on (links are followed: mounted secrets are links).
 */
async function readConfigFile(file: string, maxBytes: number, refuse: (problem: string) => ConfigError): Promise<Buffer> {
  try {
    return await readSmallFile(file, { maxBytes, followLinks: true, refuse });
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw refuse(`cannot be read (${(error as { code?: string }).code ?? 'error'})`);
  }
}

async function targetOf(entry: DeliveryEntry, env: Readonly<Record<string, string | undefined>>): Promise<DeliveryTarget> {
  let password: string | undefined;
  if (entry.user !== undefined) {
    if (entry.passwordFile !== undefined) {
      const info = await stat(entry.passwordFile).catch(() => undefined);
      if (!info) throw new ConfigError(`delivery "${entry.name}" passwordFile`, `${entry.passwordFile} cannot be read`);
      if ((info.mode & 0o077) !== 0) throw new ConfigError(`delivery "${entry.name}" passwordFile`, `${entry.passwordFile} is readable by group or others; run chmod 600 ${entry.passwordFile}`);
      const refuse = (problem: string): ConfigError => new ConfigError(`delivery "${entry.name}" passwordFile`, `${entry.passwordFile} ${problem}; it must be a regular file holding only the password (chmod 600)`);
      password = (await readConfigFile(entry.passwordFile, MAX_SECRET_FILE_BYTES, refuse)).toString('utf8').replace(/\r?\n$/, '');
    } else {
      password = env.OFFCHANNEL_SMTP_PASSWORD;
      if (password === undefined || password === '') throw new ConfigError(`delivery "${entry.name}" user`, 'needs a password: "passwordFile" (0600) or OFFCHANNEL_SMTP_PASSWORD');
    }
  }
  return {
    name: entry.name,
    smtp: entry.smtp,
    to: entry.to,
    from: entry.from,
    mode: entry.mode,
    ...(entry.user !== undefined && password !== undefined ? { user: entry.user, password } : {}),
    ...(entry.caFile === undefined ? {} : { ca: await readConfigFile(entry.caFile, MAX_CA_FILE_BYTES, (problem) => new ConfigError(`delivery "${entry.name}" caFile`, `${entry.caFile} ${problem}; it must be a regular file of PEM certificates`)) }),
    ...(entry.allowPlaintextLoopback ? { allowPlaintextLoopback: true } : {}),
    ...(entry.maxPerSecond === undefined ? {} : { maxPerSecond: entry.maxPerSecond }),
  };
}
