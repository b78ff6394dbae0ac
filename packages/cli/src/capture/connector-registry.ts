/**
 * Which package runs each `channel` of the config. Connector packages are loaded only when a
 * config names their channel, so the CLI runs without the ones a firm does not use.
 * Each connector package exports `parse<Channel>ConnectorConfig(entry, key, { baseDir, env })`
 * (validates its settings, throwing `ConfigError` naming the key; relative paths are relative to
 * `baseDir`, the config file's directory; `<secret>Env` settings are read from `env`, the
 * capture process's environment) and `create<Channel>Connector(options)`.
 */
import { type Connector, ConfigError } from '@offchannel/core';
import type { ConnectorConfig } from './capture-config.ts';
import { DemoConnector } from './demo-connector.ts';

export interface ConnectorPackage {
  readonly name: string;
  readonly parse: string;
  readonly create: string;
}

export const CONNECTOR_PACKAGES: Readonly<Record<string, ConnectorPackage>> = {
  whatsapp: { name: '@offchannel/whatsapp', parse: 'parseWhatsAppConnectorConfig', create: 'createWhatsAppConnector' },
  signal: { name: '@offchannel/signal', parse: 'parseSignalConnectorConfig', create: 'createSignalConnector' },
  imessage: { name: '@offchannel/imessage', parse: 'parseIMessageConnectorConfig', create: 'createIMessageConnector' },
  telegram: { name: '@offchannel/telegram', parse: 'parseTelegramConnectorConfig', create: 'createTelegramConnector' },
};

/** Builds the connector for one config entry; every problem is a `ConfigError` naming the entry. */
export async function createConnector(config: ConnectorConfig, load: Loader = (name) => import(name), env: Environment = process.env): Promise<Connector> {
  if (config.channel === 'demo') return DemoConnector.fromConfig(config.options, config.key, config.baseDir);
  const { module, known, options } = await loadConnectorPackage(config, load, env);
  const create = module[known.create];
  if (typeof create !== 'function') throw new ConfigError(`${config.key}.channel`, `${known.name} does not export ${known.create}; is it a matching version?`);
  return (create as (options: unknown) => Connector)(options);
}

export type Loader = (name: string) => Promise<unknown>;

/** Where connector settings such as `botTokenEnv` find their secrets: the CLI's environment. */
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Checks a config entry without starting anything: its channel's package is installed and
 * accepts its settings. A problem is a `ConfigError` naming the entry. `offchannel capture`
 * checks every entry this way before it starts (and on SIGHUP, before it applies a new config).
 */
export async function checkConnectorEntry(config: ConnectorConfig, load: Loader = (name) => import(name), env: Environment = process.env): Promise<void> {
  if (config.channel === 'demo') {
    DemoConnector.fromConfig(config.options, config.key, config.baseDir);
    return;
  }
  await loadConnectorPackage(config, load, env);
}

/**
 * Loads the package of a config entry's channel and validates the entry with its
 * `parse<Channel>ConnectorConfig`. A channel with no package, a package that is not installed,
 * or one without the parse function is a `ConfigError` naming the entry.
 */
export async function loadConnectorPackage(config: ConnectorConfig, load: Loader, env: Environment = process.env): Promise<{ readonly module: Record<string, unknown>; readonly known: ConnectorPackage; readonly options: Record<string, unknown> }> {
  const known = CONNECTOR_PACKAGES[config.channel];
  if (!known) throw new ConfigError(`${config.key}.channel`, `"${config.channel}" is not a known channel; use one of demo, ${Object.keys(CONNECTOR_PACKAGES).join(', ')}`);
  let module: Record<string, unknown>;
  try {
    module = (await load(known.name)) as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`${config.key}.channel`, `"${config.channel}" needs the package ${known.name}, which is not installed (npm install ${known.name})`, { cause: error });
  }
  const parse = module[known.parse];
  if (typeof parse !== 'function') throw new ConfigError(`${config.key}.channel`, `${known.name} does not export ${known.parse}; is it a matching version?`);
  return { module, known, options: (parse as (entry: unknown, key: string, context: { readonly baseDir: string; readonly env: Environment }) => Record<string, unknown>)(config.options, config.key, { baseDir: config.baseDir, env }) };
}
