/**
 * Linking an employee's Telegram account: the interactive login (phone number, login code,
 * two-step verification password) that creates the MTProto session the connector captures
 * with. The session (auth key) and the update state are written to the account's secret state
 * store; nothing is written anywhere else and no secret is logged.
 *
 * The I/O is a seam ({@link TelegramLinkIo}) so the CLI can prompt on a terminal and tests can
 * answer programmatically. Linking records the current update state, so capture starts from
 * the moment of linking and catches up on anything that arrives before it first runs.
 */
import { OffchannelError, noopLogger, streamName, type Logger, type StateStore } from '@offchannel/core';
import { tl } from '@mtcute/core';
import { checkPassword, sendCode, signIn } from '@mtcute/core/methods.js';
import { clientOptions, defaultClientFactory, type TelegramClientFactory } from './client-factory.ts';
import { StateStoreStorage, hasTelegramSession, storeApiHash } from './state-storage.ts';

/** Answers the login prompts. Each may be called again after a wrong answer. */
export interface TelegramLinkIo {
  /** The phone number in international format, e.g. `+15551234567`. */
  phone(): Promise<string>;
  /** The login code Telegram sent (in the app or by SMS). `attempt` starts at 1. */
  code(attempt: number): Promise<string>;
  /** The two-step verification password, when the account has one. `hint` is Telegram's hint. */
  password(hint: string | undefined, attempt: number): Promise<string>;
  /** Progress notes for the operator (never secrets). */
  notice?(message: string): void;
}

export interface LinkTelegramOptions {
  readonly account: string;
  readonly apiId: number;
  readonly apiHash: string;
  /**
   * Also keep `apiHash` in the account's encrypted state (`offchannel link telegram` does this
   * when the config names no `apiHashFile`/`apiHashEnv`), so the connector needs no other copy.
   */
  readonly storeApiHash?: boolean;
  /**
   * The account's state: `rootStore.scope('telegram:<account>')`, the same scope the connector
   * receives as `ctx.state` (see {@link telegramStateScope}).
   */
  readonly state: StateStore;
  readonly io: TelegramLinkIo;
  /** Replace an existing session (default: refuse). */
  readonly replace?: boolean;
  readonly testMode?: boolean;
  readonly logger?: Logger;
  readonly clientFactory?: TelegramClientFactory;
  /** Wrong codes / passwords accepted before giving up (default 3). */
  readonly maxAttempts?: number;
}

export interface LinkedTelegramAccount {
  /** Telegram user id of the linked account. */
  readonly userId: string;
  /** Display name, for the operator's confirmation. */
  readonly name: string;
}

/** The account-scoped state store the connector and `linkTelegram` use. */
export function telegramStateScope(root: StateStore, account: string): StateStore {
  return root.scope(streamName('telegram', account));
}

/** Logs in interactively and stores the session. */
export async function linkTelegram(options: LinkTelegramOptions): Promise<LinkedTelegramAccount> {
  const { io, state } = options;
  const attempts = options.maxAttempts ?? 3;
  if (!options.replace && (await hasTelegramSession(state))) {
    throw new OffchannelError('TELEGRAM_ALREADY_LINKED', `account "${options.account}" already has a Telegram session; pass --replace to link it again (the old session stops working).`);
  }
  if (options.replace) for (const name of ['mtcute.kv', 'mtcute.auth', 'mtcute.peers']) await state.delete(name);
  const storage = new StateStoreStorage(state);
  const client = (options.clientFactory ?? defaultClientFactory)(
    clientOptions({ apiId: options.apiId, apiHash: options.apiHash, storage, logger: options.logger ?? noopLogger, testMode: options.testMode === true }),
  );
  try {
    await client.prepare();
    const phone = (await io.phone()).trim();
    if (!/^\+?[0-9 ()-]{5,20}$/.test(phone)) throw new OffchannelError('TELEGRAM_LINK_INPUT', 'the phone number must be in international format, e.g. +15551234567.');
    const sent = await sendCode(client, { phone });
    if (!('phoneCodeHash' in sent)) throw new OffchannelError('TELEGRAM_LINK_UNEXPECTED', 'Telegram did not ask for a login code; this account type cannot be linked here.');
    io.notice?.(`Telegram sent a login code (${sent.type}).`);
    let user: { id: number; displayName: string } | undefined;
    for (let attempt = 1; !user; attempt++) {
      const code = (await io.code(attempt)).trim();
      try {
        user = await signIn(client, { phone, phoneCodeHash: sent.phoneCodeHash, phoneCode: code });
      } catch (error) {
        if (tl.RpcError.is(error, 'SESSION_PASSWORD_NEEDED')) {
          user = await passwordLogin(client, io, attempts);
        } else if (tl.RpcError.is(error, 'PHONE_CODE_INVALID') && attempt < attempts) {
          io.notice?.('That code is not valid; try again.');
        } else {
          throw linkError(error);
        }
      }
    }
    const updatesState = await client.call({ _: 'updates.getState' });
    await client.storage.updates.setPts(updatesState.pts);
    await client.storage.updates.setQts(updatesState.qts);
    await client.storage.updates.setDate(updatesState.date);
    await client.storage.updates.setSeq(updatesState.seq);
    await client.mt.storage.save();
    if (options.storeApiHash === true) await storeApiHash(state, options.apiHash);
    io.notice?.(`Linked Telegram user ${user.id}.`);
    return { userId: String(user.id), name: user.displayName };
  } finally {
    await client.destroy().catch(() => undefined);
  }
}

async function passwordLogin(client: Parameters<typeof checkPassword>[0], io: TelegramLinkIo, attempts: number): Promise<{ id: number; displayName: string }> {
  const { hint } = await client.call({ _: 'account.getPassword' });
  for (let attempt = 1; ; attempt++) {
    const password = await io.password(hint, attempt);
    try {
      // Each attempt fetches a fresh SRP challenge (a challenge answers once).
      return await checkPassword(client, { password });
    } catch (error) {
      if (!tl.RpcError.is(error, 'PASSWORD_HASH_INVALID') || attempt >= attempts) throw linkError(error);
      io.notice?.('That password is not correct; try again.');
    }
  }
}

function linkError(error: unknown): Error {
  if (OffchannelError.isInstance(error)) return error;
  const code = tl.RpcError.is(error) ? error.text : error instanceof Error ? error.name : 'unknown';
  return new OffchannelError('TELEGRAM_LINK_FAILED', `Telegram refused the login (${code}); check the phone number and code and try again.`, { cause: error });
}
