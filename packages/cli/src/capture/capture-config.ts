/**
 * `offchannel.config.json`: what `offchannel capture` runs. Every key is checked; an unknown or
 * mistyped key is an error naming it. Paths in `archive`, `state`, `signing` and `policy` are
 * relative to the config file's directory. No secret is written here: keys are files (0600), and
 * a URL carrying credentials (`https://user:pass@…`) is refused.
 *
 * ```json
 * {
 *   "archive": { "dir": "./archive" },
 *   "state": { "dir": "./state", "keyFile": "./state.key" },
 *   "signing": { "keyFile": "./signing.key", "everyRecords": 1000, "everyMs": 60000,
 *                "witnesses": [{ "url": "http://127.0.0.1:7380", "key": "witness.example+1a2b3c4d+BA…" }],
 *                "archiveLog": { "everyMs": 60000 } },
 *   "policy": { "version": "firm-comms-policy@2026-11-01", "identifierKeyFile": "./policy-identifier.key" },
 *   "log": { "level": "info" },
 *   "metrics": { "listen": "127.0.0.1:9464", "tokenFile": "./metrics.token" },
 *   "connectors": [
 *     { "channel": "imessage", "account": "alice@firm.example",
 *       "policy": { "exclude": { "contacts": ["+15550199"] } } }
 *   ]
 * }
 * ```
 */
import path from 'node:path';
import { ConfigError, type WitnessEndpoint, assertAccountName, assertChannelName, assertWitnessUrl, isHostId, parseCosignatureVerifierKey } from '@offchannel/core';
import { describeKeyMaterial } from '../keys.ts';
import { type DeliveryEntry, parseDeliveryConfig } from './capture-deliveries.ts';
import { type MetricsConfig, parseMetricsConfig } from './metrics-config.ts';
import { type Json, object, oneOf, optionalBoolean, optionalInteger, optionalString, requiredString, stringList } from './config-reader.ts';

export type ArchiveConfig =
  | { readonly kind: 'dir'; readonly dir: string }
  | {
      readonly kind: 's3';
      readonly url: string;
      /** Local spool the recorder acknowledges on; the forwarder copies it to S3. */
      readonly spool: string;
      readonly endpoint?: string;
      readonly region?: string;
      readonly profile?: string;
      readonly forcePathStyle?: boolean;
      readonly retentionYears?: number;
      /**
       * Bounded spool: drop spooled segments S3 already holds (with a signed checkpoint after
       * them) once sealed `minAgeMs` ago, or while a stream's spool exceeds `maxBytes`.
       * Absent: the spool keeps everything.
       */
      readonly spoolPrune?: { readonly minAgeMs: number; readonly maxBytes?: number };
    };

/** Who is out of scope for one account (personal contacts and conversations). */
export interface PolicyRules {
  /** Direct conversations with these party ids (or aliases) are not stored. */
  readonly excludeContacts: readonly string[];
  /** Conversations with these ids are not stored. */
  readonly excludeConversations: readonly string[];
  /** When set, only these conversations (and direct chats with these contacts) are stored. */
  readonly onlyContacts?: readonly string[];
  readonly onlyConversations?: readonly string[];
}

export interface ConnectorConfig {
  readonly channel: string;
  readonly account: string;
  readonly policy: PolicyRules;
  /** Channel-specific settings, validated by the connector package (includes `account`). */
  readonly options: Json;
  /** Dotted path of this entry, for the connector's own error messages. */
  readonly key: string;
  /** The config file's directory: relative paths in `options` are relative to it. */
  readonly baseDir: string;
}

export interface CaptureConfig {
  readonly file: string;
  readonly archive: ArchiveConfig;
  readonly state: { readonly dir: string; readonly keyFile?: string; readonly unencrypted: boolean };
  readonly signing?: {
    readonly keyFile: string;
    readonly everyRecords?: number;
    readonly everyMs?: number;
    readonly tsaUrl?: string;
    readonly tsaCerts: readonly string[];
    /** Independent witnesses each checkpoint is submitted to (c2sp.org/tlog-witness). */
    readonly witnesses: readonly WitnessEndpoint[];
    /**
     * Witness the archive log instead of each stream (docs/witnessing.md): every stream
     * checkpoint becomes an entry of one log, checkpointed every `everyMs` (default 60,000) and
     * submitted to the witnesses — one request per witness per interval, whatever the streams.
     */
    readonly archiveLog?: { readonly everyMs: number };
  };
  /**
   * Host attestations (needs `signing`): every `attestEveryMs` (default 300,000; 0 turns them
   * off) one signed note for all streams of this process, under host id `host` (default derived
   * from a hash of the machine's hostname, see docs/capture.md).
   */
  readonly coverage: { readonly attestEveryMs: number; readonly host?: string };
  /** `identifierKeyFile`: the key excluded identifiers are HMACed with (required when anything is excluded). */
  readonly policy: { readonly version?: string; readonly reportEveryMs: number; readonly identifierKeyFile?: string };
  readonly log: { readonly level: string };
  readonly statusEveryMs: number;
  /** Restart backoff of an account whose connector failed (see account-supervisor.ts). */
  readonly supervision: { readonly restartInitialMs: number; readonly restartMaxMs: number };
  readonly connectors: readonly ConnectorConfig[];
  /** SMTP journaling targets fed while capturing (docs/delivery.md). */
  readonly delivery: readonly DeliveryEntry[];
  /** The opt-in Prometheus endpoint (docs/metrics.md); absent: no listener. */
  readonly metrics?: MetricsConfig;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Validates parsed JSON from `file`. Throws `ConfigError` naming the first bad key. */
export function parseCaptureConfig(value: unknown, file: string): CaptureConfig {
  const base = path.dirname(path.resolve(file));
  const at = (relative: string): string => path.resolve(base, relative);
  const root = object(value, 'config', ['$schema', 'archive', 'state', 'signing', 'policy', 'log', 'status', 'supervision', 'connectors', 'delivery', 'metrics', 'coverage']);

  const archive = parseArchive(root.archive ?? { dir: './archive' }, at);
  const stateConfig = object(root.state ?? {}, 'config.state', ['dir', 'keyFile', 'unencrypted']);
  const keyFile = keyFileName(optionalString(stateConfig.keyFile, 'config.state.keyFile'), 'config.state.keyFile');
  const unencrypted = optionalBoolean(stateConfig.unencrypted, 'config.state.unencrypted') ?? false;
  if (keyFile === undefined && !unencrypted) throw new ConfigError('config.state.keyFile', 'is required: connector sessions are secrets and are encrypted at rest (create one with: offchannel keygen --state --out state.key). For a throwaway test only, set "unencrypted": true instead');
  if (keyFile !== undefined && unencrypted) throw new ConfigError('config.state.unencrypted', 'cannot be true together with keyFile');

  let signing: CaptureConfig['signing'];
  if (root.signing !== undefined) {
    const entry = object(root.signing, 'config.signing', ['keyFile', 'everyRecords', 'everyMs', 'tsaUrl', 'tsaCerts', 'witnesses', 'archiveLog']);
    const tsaUrl = optionalString(entry.tsaUrl, 'config.signing.tsaUrl');
    if (tsaUrl !== undefined && !/^https?:\/\//.test(tsaUrl)) throw new ConfigError('config.signing.tsaUrl', 'must be an http(s) URL of an RFC 3161 timestamp authority');
    if (tsaUrl !== undefined) refuseCredentials(tsaUrl, 'config.signing.tsaUrl');
    const everyRecords = optionalInteger(entry.everyRecords, 'config.signing.everyRecords', 1, 10_000_000);
    const everyMs = optionalInteger(entry.everyMs, 'config.signing.everyMs', 1000, 86_400_000);
    signing = {
      keyFile: at(keyFileName(requiredString(entry.keyFile, 'config.signing.keyFile'), 'config.signing.keyFile')),
      ...(everyRecords === undefined ? {} : { everyRecords }),
      ...(everyMs === undefined ? {} : { everyMs }),
      ...(tsaUrl === undefined ? {} : { tsaUrl }),
      tsaCerts: stringList(entry.tsaCerts, 'config.signing.tsaCerts').map(at),
      witnesses: parseWitnesses(entry.witnesses),
      ...parseArchiveLog(entry.archiveLog),
    };
  }

  const policy = object(root.policy ?? {}, 'config.policy', ['version', 'reportEveryMs', 'identifierKeyFile']);
  const version = optionalString(policy.version, 'config.policy.version');
  const identifierKeyFile = optionalString(policy.identifierKeyFile, 'config.policy.identifierKeyFile');
  const log = object(root.log ?? {}, 'config.log', ['level']);
  const status = object(root.status ?? {}, 'config.status', ['everyMs']);
  const supervision = object(root.supervision ?? {}, 'config.supervision', ['restartInitialMs', 'restartMaxMs']);
  const restartInitialMs = optionalInteger(supervision.restartInitialMs, 'config.supervision.restartInitialMs', 100, 3_600_000) ?? 1000;
  const restartMaxMs = optionalInteger(supervision.restartMaxMs, 'config.supervision.restartMaxMs', 1000, 86_400_000) ?? 300_000;
  if (restartMaxMs < restartInitialMs) throw new ConfigError('config.supervision.restartMaxMs', 'must be at least restartInitialMs');
  const coverageEntry = object(root.coverage ?? {}, 'config.coverage', ['attestEveryMs', 'host']);
  const attestEveryMs = optionalInteger(coverageEntry.attestEveryMs, 'config.coverage.attestEveryMs', 0, 86_400_000) ?? 300_000;
  if (attestEveryMs > 0 && attestEveryMs < 1000) throw new ConfigError('config.coverage.attestEveryMs', 'must be 0 (off) or at least 1000');
  const attestHost = optionalString(coverageEntry.host, 'config.coverage.host');
  if (attestHost !== undefined && !isHostId(attestHost)) throw new ConfigError('config.coverage.host', 'must be 1–63 characters of a-z, 0-9, "." and "-" (a machine\'s name, never a person\'s)');

  if (!Array.isArray(root.connectors) || root.connectors.length === 0) throw new ConfigError('config.connectors', 'must be a non-empty list of connectors ({"channel": …, "account": …})');
  const connectors = root.connectors.map((entry, index) => parseConnector(entry, `config.connectors[${index}]`, base));
  const seen = new Set<string>();
  connectors.forEach((connector, index) => {
    const stream = `${connector.channel}:${connector.account}`;
    if (seen.has(stream)) throw new ConfigError(`config.connectors[${index}]`, `repeats ${stream}: one connector per channel and account`);
    seen.add(stream);
  });
  const anyPolicy = connectors.some((connector) => connector.policy.excludeContacts.length + connector.policy.excludeConversations.length > 0 || connector.policy.onlyContacts || connector.policy.onlyConversations);
  if (anyPolicy && version === undefined) throw new ConfigError('config.policy.version', 'is required when any connector excludes contacts or conversations: every record names the policy in force');
  if (anyPolicy && identifierKeyFile === undefined) {
    throw new ConfigError('config.policy.identifierKeyFile', 'is required when any connector excludes contacts or conversations: exclusions are recorded as HMACs under this key, which the firm keeps and can give an examiner (create it with: offchannel keygen --identifier-key --out policy-identifier.key)');
  }

  const metrics = parseMetricsConfig(root.metrics, at);

  return {
    file: path.resolve(file),
    archive,
    state: { dir: at(optionalString(stateConfig.dir, 'config.state.dir') ?? './state'), ...(keyFile === undefined ? {} : { keyFile: at(keyFile) }), unencrypted },
    ...(signing ? { signing } : {}),
    policy: {
      ...(version === undefined ? {} : { version }),
      reportEveryMs: optionalInteger(policy.reportEveryMs, 'config.policy.reportEveryMs', 1000, 86_400_000) ?? 3_600_000,
      ...(identifierKeyFile === undefined ? {} : { identifierKeyFile: at(identifierKeyFile) }),
    },
    log: { level: oneOf(log.level, 'config.log.level', LOG_LEVELS) ?? 'info' },
    statusEveryMs: optionalInteger(status.everyMs, 'config.status.everyMs', 100, 3_600_000) ?? 1000,
    supervision: { restartInitialMs, restartMaxMs },
    coverage: { attestEveryMs, ...(attestHost === undefined ? {} : { host: attestHost }) },
    connectors,
    delivery: parseDeliveryConfig(root.delivery, at),
    ...(metrics ? { metrics } : {}),
  };
}

function parseArchive(value: unknown, at: (relative: string) => string): ArchiveConfig {
  if (typeof value === 'string') value = value.startsWith('s3://') ? { url: value } : { dir: value };
  const entry = object(value, 'config.archive', ['dir', 'url', 'spool', 'spoolPrune', 'endpoint', 'region', 'profile', 'forcePathStyle', 'retentionYears']);
  const dir = optionalString(entry.dir, 'config.archive.dir');
  const url = optionalString(entry.url, 'config.archive.url');
  if ((dir === undefined) === (url === undefined)) throw new ConfigError('config.archive', 'needs exactly one of "dir" (a local directory) or "url" (s3://bucket/prefix)');
  if (dir !== undefined) {
    for (const name of ['spool', 'spoolPrune', 'endpoint', 'region', 'profile', 'forcePathStyle', 'retentionYears']) if (entry[name] !== undefined) throw new ConfigError(`config.archive.${name}`, 'applies only to an s3:// archive');
    return { kind: 'dir', dir: at(dir) };
  }
  if (!url?.startsWith('s3://') || url.length <= 5) throw new ConfigError('config.archive.url', 'must be s3://bucket[/prefix]');
  const endpoint = optionalString(entry.endpoint, 'config.archive.endpoint');
  if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) throw new ConfigError('config.archive.endpoint', 'must be an http(s) URL');
  if (endpoint !== undefined) refuseCredentials(endpoint, 'config.archive.endpoint');
  const region = optionalString(entry.region, 'config.archive.region');
  const profile = optionalString(entry.profile, 'config.archive.profile');
  const forcePathStyle = optionalBoolean(entry.forcePathStyle, 'config.archive.forcePathStyle');
  const retentionYears = optionalInteger(entry.retentionYears, 'config.archive.retentionYears', 1, 100);
  let spoolPrune: { minAgeMs: number; maxBytes?: number } | undefined;
  if (entry.spoolPrune !== undefined) {
    const prune = object(entry.spoolPrune, 'config.archive.spoolPrune', ['minAgeMs', 'maxBytes']);
    const minAgeMs = optionalInteger(prune.minAgeMs, 'config.archive.spoolPrune.minAgeMs', 0, 10 * 366 * 86_400_000);
    if (minAgeMs === undefined) throw new ConfigError('config.archive.spoolPrune.minAgeMs', 'is required: how long a forwarded segment stays in the spool (e.g. 604800000 for 7 days)');
    const maxBytes = optionalInteger(prune.maxBytes, 'config.archive.spoolPrune.maxBytes', 1_048_576, Number.MAX_SAFE_INTEGER);
    spoolPrune = { minAgeMs, ...(maxBytes === undefined ? {} : { maxBytes }) };
  }
  return {
    kind: 's3',
    url,
    spool: at(optionalString(entry.spool, 'config.archive.spool') ?? './spool'),
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(region === undefined ? {} : { region }),
    ...(profile === undefined ? {} : { profile }),
    ...(forcePathStyle === undefined ? {} : { forcePathStyle }),
    ...(retentionYears === undefined ? {} : { retentionYears }),
    ...(spoolPrune === undefined ? {} : { spoolPrune }),
  };
}

/** A URL with a user name or password puts a secret in the config: refused (the URL is not echoed). */
function refuseCredentials(url: string, key: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(key, 'is not a valid URL');
  }
  if (parsed.username !== '' || parsed.password !== '') throw new ConfigError(key, 'must not carry a user name or password: that would put a secret in the config');
}

function parseConnector(value: unknown, key: string, baseDir: string): ConnectorConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(key, 'must be an object with "channel" and "account"');
  const { channel, policy, ...options } = value as Json;
  const channelName = requiredString(channel, `${key}.channel`);
  try {
    assertChannelName(channelName);
  } catch {
    throw new ConfigError(`${key}.channel`, 'must be a channel name like "whatsapp" (lower-case letters, digits, dashes)');
  }
  const account = requiredString(options.account, `${key}.account`);
  try {
    assertAccountName(account);
  } catch {
    throw new ConfigError(`${key}.account`, 'must be an account name: letters, digits and . _ @ + = - (up to 128), e.g. "alice@firm.example"');
  }
  return { channel: channelName, account, policy: parsePolicy(policy, `${key}.policy`), options, key, baseDir };
}

function parsePolicy(value: unknown, key: string): PolicyRules {
  const entry = object(value ?? {}, key, ['exclude', 'only']);
  const exclude = object(entry.exclude ?? {}, `${key}.exclude`, ['contacts', 'conversations']);
  const rules: PolicyRules = { excludeContacts: stringList(exclude.contacts, `${key}.exclude.contacts`), excludeConversations: stringList(exclude.conversations, `${key}.exclude.conversations`) };
  if (entry.only === undefined) return rules;
  const only = object(entry.only, `${key}.only`, ['contacts', 'conversations']);
  const onlyContacts = stringList(only.contacts, `${key}.only.contacts`);
  const onlyConversations = stringList(only.conversations, `${key}.only.conversations`);
  if (onlyContacts.length + onlyConversations.length === 0) throw new ConfigError(`${key}.only`, 'must list at least one contact or conversation (or be removed: the default captures everything)');
  return { ...rules, onlyContacts, onlyConversations };
}

/** A key file's name — never the key itself: secrets do not belong in a config file, and the error does not print it. */
function keyFileName<T extends string | undefined>(value: T, key: string): T {
  const kind = value === undefined ? undefined : describeKeyMaterial(value);
  if (kind !== undefined) throw new ConfigError(key, `must name a key file, but holds ${kind} (not printed). Keys never go in the config: put it in a file readable only by the capture user (chmod 600), name that file here, and if it is a secret key treat it as exposed and replace it`);
  return value;
}

/** `signing.archiveLog`: `true`, or `{ "everyMs": <ms> }` (1 s – 1 day); absent or `false`: each stream is witnessed on its own. */
function parseArchiveLog(value: unknown): { archiveLog?: { everyMs: number } } {
  if (value === undefined || value === false) return {};
  if (value === true) return { archiveLog: { everyMs: 60_000 } };
  const entry = object(value, 'config.signing.archiveLog', ['everyMs']);
  return { archiveLog: { everyMs: optionalInteger(entry.everyMs, 'config.signing.archiveLog.everyMs', 1000, 86_400_000) ?? 60_000 } };
}

/** `signing.witnesses`: `[{ "url": …, "key": <witness verifier key> }]`, each key once. */
function parseWitnesses(value: unknown): WitnessEndpoint[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError('config.signing.witnesses', 'must be a list of {"url": …, "key": <witness verifier key>}');
  const seen = new Set<string>();
  return value.map((item, index) => {
    const where = `config.signing.witnesses[${index}]`;
    const entry = object(item, where, ['url', 'key']);
    const url = requiredString(entry.url, `${where}.url`);
    refuseCredentials(url, `${where}.url`);
    try {
      assertWitnessUrl(url);
    } catch (error) {
      throw new ConfigError(`${where}.url`, (error as Error).message);
    }
    const text = requiredString(entry.key, `${where}.key`);
    if (describeKeyMaterial(text) !== 'a verifier key') throw new ConfigError(`${where}.key`, `must be a witness verifier key (the last line \`offchannel keygen --witness\` prints), not ${describeKeyMaterial(text) ?? 'this'} (not printed)`);
    let key;
    try {
      key = parseCosignatureVerifierKey(text);
    } catch (error) {
      throw new ConfigError(`${where}.key`, (error as Error).message);
    }
    if (seen.has(key.verifierKey)) throw new ConfigError(`${where}.key`, 'names a witness already listed');
    seen.add(key.verifierKey);
    return { url, key };
  });
}
