/**
 * Runs configured connectors into the configured archive until stopped: opens the sink (a
 * directory, or a local spool forwarded to S3), the encrypted state store and the signing key,
 * and hands each account of this process's shard to its own supervisor
 * (`account-supervisor.ts`), so one account's failure never stops another. `reload` applies a
 * re-read config (SIGHUP): added accounts start, removed ones stop, unchanged ones are left
 * alone (a parked one is tried again). On stop, captures in flight finish, pending policy
 * counts are recorded, final checkpoints are signed and the spool is drained.
 */
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import {
  type Connector,
  type ConnectorStatus,
  ConfigError,
  Forwarder,
  HostAttestor,
  type NoteSigner,
  isAttestedState,
  type StreamAttestation,
  type Logger,
  Recorder,
  WitnessClient,
  ArchiveLog,
  type ArchiveLogIndex,
  archiveLogName,
  type KeyIndex,
  type Sink,
  type StateStore,
  createTsaClient,
  loadStateKey,
  openArchiveLogIndex,
  openKeyIndex,
  openStateStore,
} from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { openS3Sink } from '@offchannel/sink-s3';
import { loadCertificates, loadIdentifierKey, loadSigningKey } from '../keys.ts';
import { type AccountSnapshot, AccountSupervisor } from './account-supervisor.ts';
import { type CaptureConfig, type ConnectorConfig, parseCaptureConfig } from './capture-config.ts';
import type { CapturePolicy } from './capture-policy.ts';
import { type Shard, inShard, shardText } from './capture-shard.ts';
import { PARKED_STATES } from './classify-failure.ts';
import { type Environment, type Loader, checkConnectorEntry } from './connector-registry.ts';
import { CLI_PACKAGE } from '../version.ts';
import { CaptureDeliveries, type DeliverySnapshot } from './capture-deliveries.ts';
import { CaptureMetrics } from './capture-metrics.ts';
import { readMetricsToken } from './metrics-config.ts';
import { type MetricsServer, startMetricsServer } from './metrics-server.ts';

export interface RunningConnector {
  readonly stream: string;
  readonly connector: Connector;
  readonly policy: CapturePolicy;
}

export interface CaptureSnapshot {
  /** Every account of this process's shard, running or not. */
  readonly accounts: readonly AccountSnapshot[];
  /** The accounts whose connector runs, with its own status. */
  readonly connectors: readonly { readonly stream: string; readonly status: ConnectorStatus; readonly excluded: number }[];
  /** Per `<target>:<stream>`, the last seq copied from the spool to S3 (S3 archives only). */
  readonly forwarded?: Readonly<Record<string, number>>;
  /** SMTP journaling targets (config `delivery`): state, backlog, lag. */
  readonly deliveries?: readonly DeliverySnapshot[];
}

export interface CaptureRunnerOptions {
  /** Imports connector packages (default: `import()`); tests hand in a local harness. */
  readonly load?: Loader;
  /** Capture only the accounts of this shard. */
  readonly shard?: Shard;
  /**
   * One-shot commands (reconcile): `start()` rejects with the first account's start error
   * instead of supervising it.
   */
  readonly strict?: boolean;
  /** How often supervisors check their connector's status. Default 1,000 ms. */
  readonly watchEveryMs?: number;
  /** Where connector secrets named by `<secret>Env` settings are read (default `process.env`). */
  readonly env?: Environment;
}

/** How many accounts start at once: a large config starts in waves, not all at one instant. */
const START_CONCURRENCY = 16;

/** What a reload did, by stream name. */
export interface ReloadResult {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly restarted: readonly string[];
  readonly retried: readonly string[];
  readonly unchanged: number;
}

export class CaptureRunner {
  #config: CaptureConfig;
  readonly #logger: Logger;
  readonly #options: CaptureRunnerOptions;
  readonly #supervisors = new Map<string, AccountSupervisor>();
  readonly #runId = randomUUID();
  #records = 0;
  #sink: Sink | undefined;
  #forwarder: Forwarder | undefined;
  #recorder: Recorder | undefined;
  #keyIndex: KeyIndex | undefined;
  #state: StateStore | undefined;
  #policyTimer: NodeJS.Timeout | undefined;
  #attestor: HostAttestor | undefined;
  #attestTimer: NodeJS.Timeout | undefined;
  #attesting: Promise<void> = Promise.resolve();
  #deliveries: CaptureDeliveries | undefined;
  #deliveryArchive: Sink | undefined;
  /** The firm's key for excluded-contact HMACs (`policy.identifierKeyFile`). */
  #identifierKey: { readonly bytes: Uint8Array; readonly id: string } | undefined;
  #reloading: Promise<unknown> = Promise.resolve();
  #stopped = false;
  /** The Prometheus endpoint (config `metrics`), never in one-shot (`strict`) runs. */
  #metrics: CaptureMetrics | undefined;
  #metricsServer: MetricsServer | undefined;
  #witnesses: WitnessClient | undefined;
  /** With `signing.archiveLog`: what the stream checkpoints go to, and what is witnessed. */
  #archiveLog: ArchiveLog | undefined;
  #archiveLogIndex: ArchiveLogIndex | undefined;

  constructor(config: CaptureConfig, logger: Logger, options: CaptureRunnerOptions = {}) {
    this.#config = config;
    this.#logger = logger;
    this.#options = options;
  }

  /** The accounts whose connector is running now. */
  get connectors(): readonly RunningConnector[] {
    return [...this.#supervisors.values()].flatMap((supervisor) => {
      const running = supervisor.running;
      return running ? [{ stream: supervisor.stream, ...running }] : [];
    });
  }

  /** This process's random run id, stamped on its supervision records (`fields.run`). */
  get runId(): string {
    return this.#runId;
  }

  /** Where the metrics endpoint listens, when configured. */
  get metricsAddress(): { readonly host: string; readonly port: number } | undefined {
    return this.#metricsServer ? { host: this.#metricsServer.host, port: this.#metricsServer.port } : undefined;
  }

  /**
   * The attestation hook: `stream` was attested live at `at`. Feeds the metric
   * `offchannel_seconds_since_last_attestation`; does nothing without a metrics endpoint.
   */
  noteAttestation(stream: string, at: Date): void {
    this.#metrics?.noteAttestation(stream, at);
  }

  /**
   * Checks every entry, opens the archive, state store and keys, and starts every account of
   * the shard. Rejects only when the process as a whole cannot run (config, archive, keys);
   * an account that cannot start is supervised (retried or parked) and does not reject this.
   */
  async start(): Promise<void> {
    const config = this.#config;
    try {
      for (const entry of config.connectors) await checkConnectorEntry(entry, this.#options.load, this.#options.env);
      // The token first: a metrics section that cannot be served stops capture before it opens anything.
      const metricsToken = config.metrics && !this.#options.strict ? await readMetricsToken(config.metrics.tokenFile) : undefined;
      if (metricsToken !== undefined) {
        this.#metrics = new CaptureMetrics({
          accounts: () => [...this.#supervisors.values()].map((supervisor) => supervisor.snapshot()),
          ...(config.archive.kind === 's3' ? { forwarded: () => this.#forwardedSeqs() } : {}),
        });
      }
      this.#state = await openConfiguredStateStore(config.state, this.#logger);
      const signer = config.signing ? await loadSigningKey(config.signing.keyFile) : undefined;
      this.#identifierKey = config.policy.identifierKeyFile === undefined ? undefined : await loadIdentifierKey(config.policy.identifierKeyFile);
      const trusted = config.signing && config.signing.tsaCerts.length > 0 ? await loadCertificates(config.signing.tsaCerts) : undefined;
      this.#sink = await this.#openSink();
      // Idempotency keys live on disk beside the state store: start-up reads only what is new.
      this.#keyIndex = openKeyIndex({ file: path.join(config.state.dir, 'key-index.sqlite') });
      if (config.signing && config.signing.witnesses.length > 0) {
        this.#witnesses = new WitnessClient({ witnesses: config.signing.witnesses, sink: this.#forwarder?.sink ?? this.#sink, logger: this.#logger });
      }
      if (signer && config.signing?.archiveLog) {
        const shard = this.#options.shard;
        this.#archiveLog = await ArchiveLog.open({
          sink: this.#forwarder?.sink ?? this.#sink,
          signer,
          log: archiveLogName(shard),
          everyMs: config.signing.archiveLog.everyMs,
          logger: this.#logger,
          ...(shard ? { owns: (stream: string) => inShard(stream, shard) } : {}),
          ...(this.#witnesses ? { witnesses: this.#witnesses } : {}),
          // What the archive log includes, beside the key index: start-up reads only its right edge.
          index: (this.#archiveLogIndex = openArchiveLogIndex({ file: path.join(config.state.dir, 'archive-log-index.sqlite') })),
        });
      }
      const checkpointWitnesses = this.#archiveLog ?? this.#witnesses;
      this.#recorder = new Recorder({
        sink: this.#forwarder?.sink ?? this.#sink,
        keyIndex: this.#keyIndex,
        logger: this.#logger,
        ...(this.#metrics ? { onCapture: this.#metrics.observeCapture } : {}),
        ...(signer && config.signing
          ? {
              checkpoints: {
                signer,
                memory: this.#state.scope('offchannel-checkpoints'),
                ...(config.signing.everyRecords === undefined ? {} : { everyRecords: config.signing.everyRecords }),
                ...(config.signing.everyMs === undefined ? {} : { everyMs: config.signing.everyMs }),
                ...(config.signing.tsaUrl ? { timestamp: createTsaClient({ url: config.signing.tsaUrl, ...(trusted ? { trusted } : {}) }) } : {}),
                ...(checkpointWitnesses ? { witnesses: checkpointWitnesses } : {}),
              },
            }
          : {}),
      });
      if (this.#metrics && config.metrics && metricsToken !== undefined) {
        const metrics = this.#metrics;
        this.#metricsServer = await startMetricsServer({
          host: config.metrics.host,
          port: config.metrics.port,
          token: metricsToken,
          render: () => metrics.render(),
          onUnauthorized: () => {
            metrics.noteUnauthorized();
          },
        });
        const { host, port } = this.#metricsServer;
        this.#logger.info({ listen: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}` }, 'metrics endpoint listening (GET /metrics with the bearer token)');
      }
      const processStart = signer && !this.#options.strict && config.coverage.attestEveryMs > 0 ? await this.#openAttestor(signer) : undefined;
      await this.#startAll(this.#mine(config.connectors), processStart);
      if (this.#attestor) {
        // The first attestation says at once that this process runs; then one per interval.
        await this.#attest();
        this.#attestTimer = setInterval(() => void this.#attest(), config.coverage.attestEveryMs);
        this.#attestTimer.unref();
      }
      if (this.#options.strict) {
        const failed = [...this.#supervisors.values()].find((supervisor) => supervisor.startError !== undefined);
        if (failed) throw failed.startError;
      }
      if (config.delivery.length > 0) {
        // Delivery reads records through its own read-only handle and records receipts where capture records.
        this.#deliveryArchive = await openFsSink({ dir: config.archive.kind === 'dir' ? config.archive.dir : config.archive.spool, readOnly: true, logger: this.#logger });
        this.#deliveries = await CaptureDeliveries.start(config.delivery, {
          archive: this.#deliveryArchive,
          receipts: this.#forwarder?.sink ?? this.#sink,
          prunedSpool: config.archive.kind !== 'dir',
          env: this.#options.env ?? process.env,
          ...(signer ? { verifiers: [signer.verifier], checkpoints: { signer, memory: this.#state.scope('offchannel-delivery-checkpoints') } } : {}),
          generator: `${CLI_PACKAGE.name} ${CLI_PACKAGE.version}`,
          logger: this.#logger,
        });
      }
      this.#policyTimer = setInterval(() => {
        for (const supervisor of this.#supervisors.values()) {
          supervisor.reportPolicy().catch((error: unknown) => {
            this.#logger.error({ stream: supervisor.stream, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'recording policy counts failed; they stay pending and are retried');
          });
        }
      }, config.policy.reportEveryMs);
      this.#policyTimer.unref();
    } catch (error) {
      await this.stop().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Applies a re-read config: accounts added to this shard start, removed ones stop cleanly,
   * changed ones restart, parked ones are tried again, the others are not touched. A config
   * that fails its checks is refused as a whole (`ConfigError`) and nothing changes. Only
   * `connectors` and `supervision` are re-read; archive, state, signing, policy, log, delivery and metrics need a
   * restart (a warning says so).
   */
  reload(next: CaptureConfig): Promise<ReloadResult> {
    const run = this.#reloading.then(() => this.#reload(next));
    this.#reloading = run.catch(() => undefined);
    return run;
  }

  async #reload(next: CaptureConfig): Promise<ReloadResult> {
    if (this.#stopped || !this.#recorder) throw new ConfigError('config', 'was not applied: capture is stopping');
    for (const entry of next.connectors) await checkConnectorEntry(entry, this.#options.load, this.#options.env);
    const current = this.#config;
    const fixed = (['archive', 'state', 'signing', 'policy', 'log', 'delivery', 'metrics'] as const).filter((key) => JSON.stringify(current[key]) !== JSON.stringify(next[key]));
    if (fixed.length > 0) this.#logger.warn({ settings: fixed }, 'these settings changed in the config but apply only after a restart; the connector list was applied');
    this.#config = { ...current, connectors: next.connectors, supervision: next.supervision };
    const wanted = new Map(this.#mine(next.connectors).map((entry) => [`${entry.channel}:${entry.account}`, entry]));
    const removed: string[] = [];
    const restarted: string[] = [];
    const retried: string[] = [];
    const added: ConnectorConfig[] = [];
    let unchanged = 0;
    const stopping: Promise<void>[] = [];
    for (const [stream, supervisor] of this.#supervisors) {
      const entry = wanted.get(stream);
      if (!entry) {
        removed.push(stream);
        stopping.push(supervisor.stop('removed-from-config'));
        this.#supervisors.delete(stream);
      } else if (!sameEntry(entry, supervisor.entry)) {
        restarted.push(stream);
        added.push(entry);
        stopping.push(supervisor.stop('config-changed'));
        this.#supervisors.delete(stream);
      } else if (PARKED_STATES.has(supervisor.state)) {
        retried.push(stream);
        void supervisor.retryIfParked();
      } else {
        unchanged++;
      }
    }
    await Promise.all(stopping);
    for (const [stream, entry] of wanted) if (!this.#supervisors.has(stream) && !added.includes(entry)) added.push(entry);
    await this.#startAll(added);
    const result = { added: added.filter((entry) => !restarted.includes(streamOf(entry))).map(streamOf), removed, restarted, retried, unchanged };
    this.#logger.info(result, 'config reloaded');
    return result;
  }

  snapshot(): CaptureSnapshot {
    const status = this.#forwarder?.status();
    const forwarded: Record<string, number> = {};
    for (const target of status?.targets ?? []) for (const stream of target.streams) forwarded[`${target.name}:${stream.stream}`] = stream.seq ?? 0;
    const accounts = [...this.#supervisors.values()].map((supervisor) => supervisor.snapshot());
    return {
      accounts,
      connectors: accounts.flatMap((account) => (account.connector ? [{ stream: account.stream, status: account.connector, excluded: account.excluded }] : [])),
      ...(status ? { forwarded } : {}),
      ...(this.#deliveries ? { deliveries: this.#deliveries.snapshot() } : {}),
    };
  }

  /** Clean shutdown; idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#policyTimer) clearInterval(this.#policyTimer);
    await this.#reloading;
    await this.#metricsServer?.close();
    this.#metricsServer = undefined;
    const errors: unknown[] = [];
    const attempt = async (what: string, action: () => Promise<unknown>): Promise<void> => {
      try {
        await action();
      } catch (error) {
        errors.push(error);
        this.#logger.error({ step: what, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'shutdown step failed');
      }
    };
    if (this.#deliveries) await attempt('delivery stop', () => (this.#deliveries as CaptureDeliveries).stop());
    if (this.#deliveryArchive) await attempt('delivery archive close', () => (this.#deliveryArchive as Sink).close());
    this.#deliveries = undefined;
    this.#deliveryArchive = undefined;
    if (this.#attestTimer) clearInterval(this.#attestTimer);
    await this.#attesting;
    // Supervisors never reject: a connector that fails to stop is logged by its supervisor.
    await Promise.all([...this.#supervisors.values()].map((supervisor) => supervisor.stop('shutdown')));
    // The last attestation of a clean stop: every stream `stopped`, at its final head.
    if (this.#attestor) await this.#attest();
    this.#attestor = undefined;
    if (this.#recorder) await attempt('recorder close (final checkpoints)', () => (this.#recorder as Recorder).close());
    // The last archive checkpoint includes the final stream checkpoints.
    if (this.#archiveLog) await attempt('archive log close (final archive checkpoint)', () => (this.#archiveLog as ArchiveLog).close());
    this.#archiveLog = undefined;
    if (this.#witnesses) {
      // The final checkpoints' cosignatures, if the witnesses answer promptly; never a long wait.
      const witnesses = this.#witnesses;
      await Promise.race([witnesses.settled(), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
      witnesses.close();
    }
    this.#keyIndex?.close();
    this.#keyIndex = undefined;
    this.#archiveLogIndex?.close();
    this.#archiveLogIndex = undefined;
    if (this.#forwarder) {
      await attempt('forward to S3', () => (this.#forwarder as Forwarder).drain({ timeoutMs: 30_000 }));
      await attempt('forwarder stop', () => (this.#forwarder as Forwarder).stop());
    }
    if (this.#sink) await attempt('archive close', () => (this.#sink as Sink).close());
    this.#recorder = undefined;
    this.#forwarder = undefined;
    this.#sink = undefined;
    if (errors.length > 0) throw errors[0];
  }

  /** Per stream, the last seq the S3 copy is known to hold. */
  #forwardedSeqs(): Map<string, number | undefined> {
    const seqs = new Map<string, number | undefined>();
    for (const target of this.#forwarder?.status().targets ?? []) for (const stream of target.streams) seqs.set(stream.stream, stream.seq);
    return seqs;
  }

  /** The entries of this process's shard. */
  #mine(entries: readonly ConnectorConfig[]): ConnectorConfig[] {
    return entries.filter((entry) => inShard(streamOf(entry), this.#options.shard));
  }

  /**
   * Opens this host's attestation chain; returns the fields each stream's first record carries
   * (the last attestation before this process: a reader sees the process was down since then).
   */
  async #openAttestor(signer: NoteSigner): Promise<Record<string, string>> {
    const host = this.#config.coverage.host ?? defaultHostId(this.#options.shard);
    const attestor = await HostAttestor.open({ sink: this.#forwarder?.sink ?? (this.#sink as Sink), host, signer, logger: this.#logger });
    this.#attestor = attestor;
    const last = attestor.last;
    this.#logger.info({ host, attestEveryMs: this.#config.coverage.attestEveryMs }, 'host attestations on');
    return {
      processStart: 'true',
      attestationHost: host,
      ...(last ? { lastAttestation: String(last.id.seq), lastAttestationHash: last.hash, ...(last.time ? { lastAttestationAt: last.time } : {}) } : {}),
    };
  }

  /**
   * Signs and stores one attestation for every stream this process supervises and holds the
   * Merkle state of. Serialized; a failure is logged and the next interval tries again.
   */
  #attest(): Promise<void> {
    const run = this.#attesting.then(async () => {
      const attestor = this.#attestor;
      const recorder = this.#recorder;
      if (!attestor || !recorder) return;
      try {
        const heads = new Map(recorder.merkleHeads().map((head) => [head.stream, head]));
        const lines: StreamAttestation[] = [];
        for (const supervisor of this.#supervisors.values()) {
          const head = heads.get(supervisor.stream);
          // Not held by this process (claimed elsewhere) or not yet read back: nothing to state.
          if (!head || supervisor.state === 'claimed-elsewhere') continue;
          // A third-party connector's status word that is not one lowercase word is `unknown`.
          const state = isAttestedState(supervisor.attestedState) ? supervisor.attestedState : 'unknown';
          lines.push({ stream: supervisor.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state });
        }
        const link = await attestor.attest(lines);
        const at = link.time === undefined ? new Date() : new Date(link.time);
        for (const line of lines) this.noteAttestation(line.stream, at);
      } catch (error) {
        this.#logger.error({ host: attestor.host, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'host attestation not written; the next interval tries again');
      }
    });
    this.#attesting = run;
    return run;
  }

  /** Starts a supervisor per entry, `START_CONCURRENCY` at a time; resolves when each first attempt settled. */
  async #startAll(entries: readonly ConnectorConfig[], processStart?: Readonly<Record<string, string>>): Promise<void> {
    const recorder = this.#recorder;
    const state = this.#state;
    if (!recorder || !state) return;
    const config = this.#config;
    const queue = entries.map((entry) => {
      const supervisor = new AccountSupervisor({
        entry,
        recorder,
        state,
        logger: this.#logger,
        policyVersion: config.policy.version,
        runId: this.#runId,
        nextRecord: () => ++this.#records,
        ...(this.#options.shard ? { shard: shardText(this.#options.shard) } : {}),
        restart: { initialMs: config.supervision.restartInitialMs, maxMs: config.supervision.restartMaxMs },
        ...(this.#options.watchEveryMs === undefined ? {} : { watchEveryMs: this.#options.watchEveryMs }),
        ...(this.#options.strict ? { strict: true } : {}),
        ...(this.#options.load ? { load: this.#options.load } : {}),
        ...(this.#options.env ? { env: this.#options.env } : {}),
        ...(this.#identifierKey ? { identifierKey: this.#identifierKey } : {}),
        ...(this.#metrics ? { onFailure: (stream: string, code: string) => this.#metrics?.noteFailure(stream, code) } : {}),
        ...(processStart ? { processStart } : {}),
      });
      this.#supervisors.set(supervisor.stream, supervisor);
      return supervisor;
    });
    const workers = Array.from({ length: Math.min(START_CONCURRENCY, queue.length) }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await next.start();
    });
    await Promise.all(workers);
  }

  /**
   * The delivery targets read the spool: pruning keeps what they still need — everything while
   * they are not running (before they start, after they stop).
   */
  #deliveryHold(stream: string): number | undefined {
    return this.#deliveries ? this.#deliveries.holdFrom(stream) : 1;
  }

  async #openSink(): Promise<Sink> {
    const archive = this.#config.archive;
    if (archive.kind === 'dir') return openFsSink({ dir: archive.dir, logger: this.#logger });
    const spool = await openFsSink({ dir: archive.spool, logger: this.#logger });
    try {
      const s3 = await openS3Sink({
        url: archive.url,
        logger: this.#logger,
        ...(archive.endpoint ? { endpoint: archive.endpoint } : {}),
        ...(archive.region ? { region: archive.region } : {}),
        ...(archive.profile ? { profile: archive.profile } : {}),
        ...(archive.forcePathStyle === undefined ? {} : { forcePathStyle: archive.forcePathStyle }),
        ...(archive.retentionYears === undefined ? {} : { retention: { records: { years: archive.retentionYears }, blobs: { years: archive.retentionYears }, checkpoints: { years: archive.retentionYears }, tiles: { years: archive.retentionYears } } }),
      });
      this.#forwarder = new Forwarder({
        spool,
        targets: [{ name: 's3', sink: s3 }],
        logger: this.#logger,
        ...(archive.spoolPrune ? { prune: { ...archive.spoolPrune, ...(this.#config.delivery.length > 0 ? { holds: (stream: string) => this.#deliveryHold(stream) } : {}) } } : {}),
        ...(this.#metrics ? { onForwarded: this.#metrics.observeForwarded, onPruned: this.#metrics.observePruned, onBlobsPruned: this.#metrics.observeBlobsPruned } : {}),
        ...(this.#config.signing?.archiveLog ? { archiveLogs: [archiveLogName(this.#options.shard)] } : {}),
      });
      this.#forwarder.start();
      return spool;
    } catch (error) {
      await spool.close();
      throw error;
    }
  }
}

/**
 * The default host id: `h-` and 12 hex digits of the SHA-256 of the machine's hostname (a
 * hostname can name a person; the hash cannot be read back, but the operator can recompute it),
 * with `-s<k>of<n>` for a shard so that each capture process keeps its own chain.
 */
export function defaultHostId(shard?: Shard, name = hostname()): string {
  const id = `h-${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;
  return shard ? `${id}-s${shard.index}of${shard.count}` : id;
}

function streamOf(entry: ConnectorConfig): string {
  return `${entry.channel}:${entry.account}`;
}

/** Same settings and policy: nothing to restart. */
function sameEntry(a: ConnectorConfig, b: ConnectorConfig): boolean {
  return JSON.stringify([a.options, a.policy, a.baseDir]) === JSON.stringify([b.options, b.policy, b.baseDir]);
}

/** The config's secret state store: encrypted with `keyFile`, or unencrypted only when the config says so. */
export async function openConfiguredStateStore(state: CaptureConfig['state'], logger: Logger): Promise<StateStore> {
  const key = state.keyFile === undefined ? undefined : await loadStateKey({ file: state.keyFile });
  return key ? openStateStore({ dir: state.dir, key, logger }) : openStateStore({ dir: state.dir, unencrypted: true, logger });
}

/** Reads and validates the config `file` and finds its connector entry for `channel:account`. */
export async function readConnectorEntry(file: string, channel: string, account: string): Promise<{ readonly config: CaptureConfig; readonly entry: ConnectorConfig }> {
  const config = parseCaptureConfig(await readConfigJson(file), file);
  const entry = config.connectors.find((connector) => connector.channel === channel && connector.account === account);
  if (!entry) throw new ConfigError('config.connectors', `has no ${channel} connector for account "${account}"; add one ({"channel": "${channel}", "account": "${account}", …}) first`);
  return { config, entry };
}

/**
 * Reads and parses the config file's JSON; problems become `ConfigError`s that never echo its
 * content. The file must be private to its owner (mode 0600 or 0400): it lists custodians, their
 * excluded personal contacts and where the secrets are, and whoever can change it decides what
 * is captured. A file that group or others can access is refused, as ssh refuses such keys.
 */
export async function readConfigJson(file: string): Promise<unknown> {
  let text: string;
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new ConfigError('--config', `cannot read ${file} (${(error as { code?: string }).code ?? 'error'}); create one (see docs/capture.md) or pass --config <file>`, { cause: error });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ConfigError('--config', `${file} is not a regular file; pass the config file with --config <file>`);
    if ((info.mode & 0o077) !== 0) throw new ConfigError('--config', `${file} can be read or changed by group or others (it lists custodians, excluded contacts and where the secrets are); run chmod 600 on it`);
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ConfigError('config', `${file} is not valid JSON (${(error as Error).message.replace(/"[^"]*"/g, '…')})`);
  }
}
