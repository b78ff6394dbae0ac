/**
 * Validates a Telegram connector entry from a plain-JSON configuration file (the CLI strips
 * `channel` and `policy` before calling this). Errors name the offending key, never its value.
 *
 * Secrets — `apiHash`, the webhook `secretToken`, the `botToken` — are never written in the
 * config: each comes from `<name>File` (a file of mode 0600, relative to the config's
 * directory) or `<name>Env` (an environment variable of the capture process). A literal
 * secret is refused with a message saying so (see core's `configSecret`). Without
 * `apiHashFile`/`apiHashEnv`, `offchannel link telegram` asks for the api_hash and keeps it in
 * the account's encrypted state store, where the connector finds it.
 *
 * MTProto user session (default route):
 * ```json
 * { "account": "desk-42", "apiId": 123456, "apiHashFile": "./secrets/telegram-api-hash",
 *   "maxMediaBytes": 268435456, "maxFloodWaitMs": 60000,
 *   "reconcile": { "everyMs": 86400000, "dialogs": 50, "limit": 100 } }
 * ```
 * Bot API Business webhook:
 * ```json
 * { "route": "business", "account": "desk-42", "secretTokenFile": "./secrets/webhook-token",
 *   "listen": { "host": "127.0.0.1", "port": 8443, "path": "/telegram/business" }, "botTokenEnv": "TELEGRAM_BOT_TOKEN" }
 * ```
 */
import { ConfigError, type ConfigSecretContext, type ConfigSecretShape, assertAccountName, configObject, configSecret, optionalConfigInteger } from '@offchannel/core';
import type { TelegramBusinessOptions } from './business/business-connector.ts';
import type { TelegramConnectorOptions } from './telegram-connector.ts';

/** What an unknown key in an entry should have been, for `configObject`'s message. */
const SETTING = 'a Telegram connector setting here';
/** Each secret is accepted as `<name>File` or `<name>Env`; `<name>` itself is listed only to be refused with advice. */
const secret = (name: string): string[] => [name, `${name}File`, `${name}Env`];
const MTPROTO = ['route', 'account', 'apiId', ...secret('apiHash'), 'testMode', 'maxMediaBytes', 'indexCapacity', 'maxFloodWaitMs', 'leaseTtlMs', 'reconcile'];
const BUSINESS = ['route', 'account', ...secret('secretToken'), 'listen', ...secret('botToken'), 'maxBodyBytes', 'timeoutMs'];
const API_HASH: ConfigSecretShape = { test: (value) => /^[0-9a-f]{32}$/i.test(value), expected: 'the 32-character hexadecimal api_hash from my.telegram.org' };
const SECRET_TOKEN: ConfigSecretShape = { test: (value) => /^[A-Za-z0-9_-]{16,256}$/.test(value), expected: 'a webhook secret token: 16–256 characters of A-Z a-z 0-9 _ - (the secret_token given to setWebhook)' };
const BOT_TOKEN: ConfigSecretShape = { test: (value) => /^[0-9]{1,20}:[A-Za-z0-9_-]{20,100}$/.test(value), expected: 'a bot token from @BotFather (digits:characters)' };

/** A validated entry: the MTProto route's options, or the Business route's (with `route: 'business'`). */
export type TelegramConnectorConfig = TelegramConnectorOptions | (TelegramBusinessOptions & { readonly route: 'business' });

/**
 * `context.baseDir` resolves relative secret files (the config file's directory);
 * `context.env` is where `<name>Env` variables are read (default `process.env`).
 */
export function parseTelegramConnectorConfig(entry: unknown, key: string, context: ConfigSecretContext = {}): TelegramConnectorConfig {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(key, 'must be an object.');
  const route = (entry as { route?: unknown }).route;
  if (route !== undefined && route !== 'mtproto' && route !== 'business') throw new ConfigError(`${key}.route`, 'must be "mtproto" (user session, the default) or "business" (Bot API Business webhook).');
  return route === 'business' ? parseBusiness(entry, key, context) : parseMtproto(entry, key, context);
}

function parseMtproto(entry: object, key: string, context: ConfigSecretContext): TelegramConnectorOptions {
  const fields = configObject(entry, key, MTPROTO, SETTING);
  const account = accountOf(fields, key);
  const apiId = fields['apiId'];
  if (typeof apiId !== 'number' || !Number.isSafeInteger(apiId) || apiId <= 0) throw new ConfigError(`${key}.apiId`, 'is required: the numeric api_id from my.telegram.org.');
  // Neither apiHashFile nor apiHashEnv: `offchannel link telegram` asks for it and keeps it in the encrypted state store.
  const apiHash = configSecret(fields, 'apiHash', key, context, API_HASH);
  if (fields['testMode'] !== undefined && typeof fields['testMode'] !== 'boolean') throw new ConfigError(`${key}.testMode`, 'must be true or false.');
  return {
    route: 'mtproto',
    account,
    apiId,
    ...(apiHash === undefined ? {} : { apiHash }),
    ...(fields['testMode'] === true ? { testMode: true } : {}),
    ...optionalConfigInteger(fields, 'maxMediaBytes', `${key}.maxMediaBytes`, 1, 4 * 1024 ** 3),
    ...optionalConfigInteger(fields, 'indexCapacity', `${key}.indexCapacity`, 1000, 10_000_000),
    ...optionalConfigInteger(fields, 'maxFloodWaitMs', `${key}.maxFloodWaitMs`, 0, 3_600_000),
    ...optionalConfigInteger(fields, 'leaseTtlMs', `${key}.leaseTtlMs`, 3000, 3_600_000),
    ...(fields['reconcile'] === undefined ? {} : { reconcile: parseReconcile(fields['reconcile'], `${key}.reconcile`) }),
  };
}

function parseReconcile(value: unknown, key: string): NonNullable<TelegramConnectorOptions['reconcile']> {
  const fields = configObject(value, key, ['everyMs', 'dialogs', 'limit'], SETTING);
  const everyMs = fields['everyMs'];
  if (typeof everyMs !== 'number' || !Number.isInteger(everyMs) || everyMs < 60_000 || everyMs > 7 * 86_400_000) throw new ConfigError(`${key}.everyMs`, 'is required: how often to reconcile, in ms, from 60000 (a minute) to 604800000 (a week).');
  return {
    everyMs,
    ...optionalConfigInteger(fields, 'dialogs', `${key}.dialogs`, 1, 10_000),
    ...optionalConfigInteger(fields, 'limit', `${key}.limit`, 1, 10_000),
  };
}

function parseBusiness(entry: object, key: string, context: ConfigSecretContext): TelegramBusinessOptions & { readonly route: 'business' } {
  const fields = configObject(entry, key, BUSINESS, SETTING);
  const account = accountOf(fields, key);
  const secretToken = configSecret(fields, 'secretToken', key, context, SECRET_TOKEN);
  if (secretToken === undefined) throw new ConfigError(`${key}.secretTokenFile`, 'is required (or secretTokenEnv): where to read the webhook secret token, a secret kept out of the config.');
  const listenFields = configObject(fields['listen'], `${key}.listen`, ['host', 'port', 'path'], SETTING);
  const port = listenFields['port'];
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) throw new ConfigError(`${key}.listen.port`, 'is required: a TCP port from 1 to 65535.');
  const host = listenFields['host'];
  if (host !== undefined && (typeof host !== 'string' || host.length === 0 || host.length > 255)) throw new ConfigError(`${key}.listen.host`, 'must be a host name or address (default 127.0.0.1).');
  const path = listenFields['path'];
  if (path !== undefined && (typeof path !== 'string' || !/^\/[A-Za-z0-9/_.-]{0,200}$/.test(path))) throw new ConfigError(`${key}.listen.path`, 'must be a URL path such as /telegram/business.');
  const botToken = configSecret(fields, 'botToken', key, context, BOT_TOKEN);
  return {
    route: 'business',
    account,
    secretToken,
    listen: { port, ...(host === undefined ? {} : { host }), ...(path === undefined ? {} : { path }) },
    ...(botToken === undefined ? {} : { botToken }),
    ...optionalConfigInteger(fields, 'maxBodyBytes', `${key}.maxBodyBytes`, 1024, 64 * 1024 * 1024),
    ...optionalConfigInteger(fields, 'timeoutMs', `${key}.timeoutMs`, 1000, 600_000),
  };
}

function accountOf(fields: Record<string, unknown>, key: string): string {
  const account = fields['account'];
  if (typeof account !== 'string') throw new ConfigError(`${key}.account`, 'is required: the custodian account name (e.g. "desk-42").');
  try {
    assertAccountName(account);
  } catch {
    throw new ConfigError(`${key}.account`, 'is not a valid account name: up to 128 of letters, digits and . _ @ + = - (no "..").');
  }
  return account;
}
