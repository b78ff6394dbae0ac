/**
 * Options of the iMessage relay, and the parser for the plain-JSON config entry the CLI
 * passes in (`{ "account": "alice@firm.example", "chatDb": "…", "pollMs": 1000 }`).
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '@offchannel/core';

/** Options for {@link createIMessageConnector}. */
export interface IMessageConnectorOptions {
  /** The custodian's account name (the stream's account part), e.g. `alice@firm.example`. */
  readonly account: string;
  /** Path of chat.db. Default `~/Library/Messages/chat.db`. */
  readonly chatDb?: string;
  /**
   * The only directory attachment files are read from; replaces `~/Library/Messages/Attachments`
   * in stored paths. Default `~/Library/Messages/Attachments`. A row naming a file whose real
   * path is elsewhere is recorded `unavailable` (`outside-attachments`).
   */
  readonly attachmentsDir?: string;
  /** How often to check `PRAGMA data_version`, in ms (50–60,000). Default 1,000. */
  readonly pollMs?: number;
  /** Party id recorded as the sender of outgoing messages. Default `account`. */
  readonly self?: string;
  /** On the very first start: archive the whole history (`beginning`, default) or only what arrives from now on. */
  readonly startAt?: 'beginning' | 'now';
  /** Rows sent within this many ms are re-checked for edits, unsends and receipts on every change. Default 24 h. */
  readonly sweepLookbackMs?: number;
  /** How often to scan the whole table for edits and unsends (catches up after sleep), in ms. Default 10 min. */
  readonly fullSweepMs?: number;
  /** Largest attachment archived, in bytes; larger ones are recorded as unavailable (`too-large`). Default 256 MiB. */
  readonly maxAttachmentBytes?: number;
  /** Watch chat.db's directory for changes (default true); the poll runs either way. */
  readonly watch?: boolean;
  /**
   * How often to compare chat.db with the archive and capture rows it never recorded, in ms
   * (1,000 – 7 days). Default 1 h. A sweep also runs once right after every start.
   */
  readonly reconcileMs?: number;
  /** Observes acknowledgements: the message GUIDs each cursor save covers (tests, metrics). Not a config-file option. */
  readonly onAcknowledge?: (guids: readonly string[]) => void;
}

/** The options with every default filled in. */
export type ResolvedOptions = Required<Omit<IMessageConnectorOptions, 'attachmentsDir' | 'onAcknowledge'>> & Pick<IMessageConnectorOptions, 'attachmentsDir' | 'onAcknowledge'>;

const KNOWN = ['account', 'chatDb', 'attachmentsDir', 'pollMs', 'self', 'startAt', 'sweepLookbackMs', 'fullSweepMs', 'maxAttachmentBytes', 'watch', 'reconcileMs'];
const DAY = 86_400_000;

/**
 * Validates a plain-JSON connector entry (the CLI strips `channel` and `policy` first) and
 * returns it as options for {@link createIMessageConnector}. Relative `chatDb` and
 * `attachmentsDir` are resolved against `context.baseDir` (the CLI passes the config file's
 * directory), else against the working directory when the connector is created. Throws
 * `ConfigError` naming the bad key, e.g. `connectors[0].pollMs`; values are never echoed.
 */
export function parseIMessageConnectorConfig(entry: unknown, key: string, context: { readonly baseDir?: string } = {}): IMessageConnectorOptions {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(key, 'must be an object');
  const fields = entry as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    if (!KNOWN.includes(name)) throw new ConfigError(`${key}.${name}`, `is not an iMessage option (known: ${KNOWN.join(', ')})`);
  }
  const options = fields as unknown as IMessageConnectorOptions;
  resolveOptions(options, key); // validates; defaults are filled in when the connector is created
  const base = context.baseDir;
  if (base === undefined) return { ...options };
  return {
    ...options,
    ...(options.chatDb === undefined ? {} : { chatDb: path.resolve(base, options.chatDb) }),
    ...(options.attachmentsDir === undefined ? {} : { attachmentsDir: path.resolve(base, options.attachmentsDir) }),
  };
}

/** Checks options given in code or config and fills in defaults. */
export function resolveOptions(options: IMessageConnectorOptions, key = 'options'): ResolvedOptions {
  const text = (name: string, value: unknown): string | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value.length === 0 || value.length > 4096) throw new ConfigError(`${key}.${name}`, 'must be a non-empty string');
    return value;
  };
  const integer = (name: string, value: unknown, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${key}.${name}`, `must be an integer from ${min} to ${max}`);
    return value;
  };
  const account = text('account', options.account);
  if (account === undefined) throw new ConfigError(`${key}.account`, 'is required: the custodian account name, e.g. alice@firm.example');
  if (options.startAt !== undefined && options.startAt !== 'beginning' && options.startAt !== 'now') throw new ConfigError(`${key}.startAt`, 'must be "beginning" or "now"');
  if (options.watch !== undefined && typeof options.watch !== 'boolean') throw new ConfigError(`${key}.watch`, 'must be true or false');
  const attachmentsDir = text('attachmentsDir', options.attachmentsDir);
  return {
    account,
    chatDb: path.resolve(text('chatDb', options.chatDb) ?? path.join(homedir(), 'Library', 'Messages', 'chat.db')),
    ...(attachmentsDir === undefined ? {} : { attachmentsDir: path.resolve(attachmentsDir) }),
    pollMs: integer('pollMs', options.pollMs, 50, 60_000, 1000),
    self: text('self', options.self) ?? account,
    startAt: options.startAt ?? 'beginning',
    sweepLookbackMs: integer('sweepLookbackMs', options.sweepLookbackMs, 60_000, 30 * DAY, DAY),
    fullSweepMs: integer('fullSweepMs', options.fullSweepMs, 1000, DAY, 600_000),
    maxAttachmentBytes: integer('maxAttachmentBytes', options.maxAttachmentBytes, 1, 4 * 1024 ** 3, 256 * 1024 ** 2),
    watch: options.watch ?? true,
    reconcileMs: integer('reconcileMs', options.reconcileMs, 1000, 7 * DAY, 3_600_000),
    ...(options.onAcknowledge === undefined ? {} : { onAcknowledge: options.onAcknowledge }),
  };
}
