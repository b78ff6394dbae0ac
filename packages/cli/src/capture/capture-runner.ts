/**
 * Runs configured connectors into the configured archive until stopped: opens the sink (a
 * directory, or a local spool forwarded to S3), the encrypted state store and the signing key,
 * starts each connector behind its capture policy, and on stop lets captures in flight finish,
 * records pending policy counts, signs final checkpoints and drains the spool.
 */
import { readFile } from 'node:fs/promises';
import {
  type Connector,
  type ConnectorStatus,
  ConfigError,
  Forwarder,
  type Logger,
  Recorder,
  type Sink,
  type StateStore,
  createConnectorContext,
  createTsaClient,
  loadStateKey,
  openStateStore,
} from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { openS3Sink } from '@offchannel/sink-s3';
import { loadCertificates, loadSigningKey } from '../keys.ts';
import { CLI_PACKAGE } from '../version.ts';
import { type CaptureConfig, type ConnectorConfig, parseCaptureConfig } from './capture-config.ts';
import { CaptureDeliveries, type DeliverySnapshot } from './capture-deliveries.ts';
import { CapturePolicy } from './capture-policy.ts';
import { type Loader, createConnector } from './connector-registry.ts';

export interface RunningConnector {
  readonly stream: string;
  readonly connector: Connector;
  readonly policy: CapturePolicy;
}

export interface CaptureSnapshot {
  readonly connectors: readonly { readonly stream: string; readonly status: ConnectorStatus; readonly excluded: number }[];
  /** Per `<target>:<stream>`, the last seq copied from the spool to S3 (S3 archives only). */
  readonly forwarded?: Readonly<Record<string, number>>;
  /** SMTP journaling targets (config `delivery`): state, backlog, lag. */
  readonly deliveries?: readonly DeliverySnapshot[];
}

export class CaptureRunner {
  readonly #config: CaptureConfig;
  readonly #logger: Logger;
  readonly #running: RunningConnector[] = [];
  readonly #abort = new AbortController();
  #sink: Sink | undefined;
  #forwarder: Forwarder | undefined;
  #recorder: Recorder | undefined;
  #state: StateStore | undefined;
  #policyTimer: NodeJS.Timeout | undefined;
  #deliveries: CaptureDeliveries | undefined;
  #deliveryArchive: Sink | undefined;
  readonly #load: Loader | undefined;
  readonly #env: Readonly<Record<string, string | undefined>>;

  /** `load` imports connector packages (default: `import()`); tests hand in a local harness. `env` supplies OFFCHANNEL_SMTP_PASSWORD. */
  constructor(config: CaptureConfig, logger: Logger, options: { readonly load?: Loader; readonly env?: Readonly<Record<string, string | undefined>> } = {}) {
    this.#config = config;
    this.#logger = logger;
    this.#load = options.load;
    this.#env = options.env ?? process.env;
  }

  get connectors(): readonly RunningConnector[] {
    return this.#running;
  }

  /** Opens everything and starts every connector; on any failure, closes what was opened and rejects. */
  async start(): Promise<void> {
    const config = this.#config;
    try {
      this.#state = await openConfiguredStateStore(config.state, this.#logger);
      const signer = config.signing ? await loadSigningKey(config.signing.keyFile) : undefined;
      const trusted = config.signing && config.signing.tsaCerts.length > 0 ? await loadCertificates(config.signing.tsaCerts) : undefined;
      this.#sink = await this.#openSink();
      this.#recorder = new Recorder({
        sink: this.#forwarder?.sink ?? this.#sink,
        logger: this.#logger,
        ...(signer && config.signing
          ? {
              checkpoints: {
                signer,
                memory: this.#state.scope('offchannel-checkpoints'),
                ...(config.signing.everyRecords === undefined ? {} : { everyRecords: config.signing.everyRecords }),
                ...(config.signing.everyMs === undefined ? {} : { everyMs: config.signing.everyMs }),
                ...(config.signing.tsaUrl ? { timestamp: createTsaClient({ url: config.signing.tsaUrl, ...(trusted ? { trusted } : {}) }) } : {}),
              },
            }
          : {}),
      });
      for (const entry of config.connectors) {
        const connector = await createConnector(entry, this.#load);
        if (connector.channel !== entry.channel || connector.account !== entry.account) throw new ConfigError(entry.key, `the ${entry.channel} package built a connector for ${connector.channel}:${connector.account}`);
        const source = config.policy.version === undefined ? connector.source : { ...connector.source, policy: config.policy.version };
        // The context scopes the state store to the stream, `<channel>:<account>`: the scope `offchannel link` writes the session to.
        const ctx = createConnectorContext({ recorder: this.#recorder, connector: { channel: connector.channel, account: connector.account, source }, state: this.#state, logger: this.#logger, signal: this.#abort.signal });
        const policy = new CapturePolicy(ctx, entry.policy, config.policy.version);
        await policy.start();
        this.#logger.info({ stream: ctx.stream, policy: config.policy.version ?? null, excluding: policy.active }, 'starting connector');
        await connector.start(policy.wrap());
        this.#running.push({ stream: ctx.stream, connector, policy });
      }
      if (config.delivery.length > 0) {
        // Delivery reads records through its own read-only handle and records receipts where capture records.
        this.#deliveryArchive = await openFsSink({ dir: config.archive.kind === 'dir' ? config.archive.dir : config.archive.spool, readOnly: true, logger: this.#logger });
        this.#deliveries = await CaptureDeliveries.start(config.delivery, {
          archive: this.#deliveryArchive,
          receipts: this.#forwarder?.sink ?? this.#sink,
          env: this.#env,
          ...(signer ? { verifiers: [signer.verifier], checkpoints: { signer, memory: this.#state.scope('offchannel-delivery-checkpoints') } } : {}),
          generator: `${CLI_PACKAGE.name} ${CLI_PACKAGE.version}`,
          logger: this.#logger,
        });
      }
      this.#policyTimer = setInterval(() => {
        for (const { policy, stream } of this.#running) {
          policy.report().catch((error: unknown) => {
            this.#logger.error({ stream, code: (error as { code?: string }).code ?? 'UNKNOWN' }, 'recording policy counts failed; they stay pending and are retried');
          });
        }
      }, config.policy.reportEveryMs);
      this.#policyTimer.unref();
    } catch (error) {
      await this.stop().catch(() => undefined);
      throw error;
    }
  }

  snapshot(): CaptureSnapshot {
    const status = this.#forwarder?.status();
    const forwarded: Record<string, number> = {};
    for (const target of status?.targets ?? []) for (const stream of target.streams) forwarded[`${target.name}:${stream.stream}`] = stream.seq ?? 0;
    return {
      connectors: this.#running.map(({ stream, connector, policy }) => ({ stream, status: connector.status(), excluded: policy.excluded })),
      ...(status ? { forwarded } : {}),
      ...(this.#deliveries ? { deliveries: this.#deliveries.snapshot() } : {}),
    };
  }

  /** Clean shutdown; idempotent. */
  async stop(): Promise<void> {
    this.#abort.abort();
    if (this.#policyTimer) clearInterval(this.#policyTimer);
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
    for (const { connector } of this.#running) await attempt(`stop ${connector.channel}`, () => connector.stop());
    for (const { policy } of this.#running) await attempt('policy counts', () => policy.report());
    if (this.#recorder) await attempt('recorder close (final checkpoints)', () => (this.#recorder as Recorder).close());
    if (this.#forwarder) {
      await attempt('forward to S3', () => (this.#forwarder as Forwarder).drain({ timeoutMs: 30_000 }));
      await attempt('forwarder stop', () => (this.#forwarder as Forwarder).stop());
    }
    if (this.#sink) await attempt('archive close', () => (this.#sink as Sink).close());
    this.#running.length = 0;
    this.#recorder = undefined;
    this.#forwarder = undefined;
    this.#sink = undefined;
    if (errors.length > 0) throw errors[0];
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
      this.#forwarder = new Forwarder({ spool, targets: [{ name: 's3', sink: s3 }], logger: this.#logger });
      this.#forwarder.start();
      return spool;
    } catch (error) {
      await spool.close();
      throw error;
    }
  }
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

/** Reads and parses the config file's JSON; problems become `ConfigError`s that never echo its content. */
export async function readConfigJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError('--config', `cannot read ${file} (${(error as { code?: string }).code ?? 'error'}); create one (see docs/capture.md) or pass --config <file>`, { cause: error });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ConfigError('config', `${file} is not valid JSON (${(error as Error).message.replace(/"[^"]*"/g, '…')})`);
  }
}
