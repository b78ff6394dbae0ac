/**
 * `offchannel link <channel> --account <name>`: links the capture host to an employee's account
 * (WhatsApp and Signal as a linked device by QR code or pairing code; Telegram by phone, code
 * and 2FA password) and stores the session in the encrypted state store of the config, under
 * the same scope `offchannel capture` gives the connector. The connector packages do the work
 * (`linkWhatsApp`, `linkSignalDevice`, `linkTelegram`); they are loaded only when used.
 */
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { type Logger, type StateStore } from '@offchannel/core';
import { renderUnicodeCompact } from 'uqr';
import { openConfiguredStateStore, readConnectorEntry } from '../capture/capture-runner.ts';
import { type Loader, loadConnectorPackage } from '../capture/connector-registry.ts';
import { type CliIo, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { UsageError } from '../usage-error.ts';

export const LINK_USAGE = `Usage: offchannel link <whatsapp|signal|telegram> --account <name> [--config offchannel.config.json] [options]

Links this capture host to the employee's account and stores the session, encrypted, in the
state store of the config (the account must be one of its connectors):
  whatsapp   shows a QR code to scan in WhatsApp → Linked devices (or, with --phone, a pairing
             code to type on the phone); the first capture then receives the history sync
  signal     shows a QR code to scan in Signal → Settings → Linked devices
  telegram   asks for the phone number, the login code and the two-step password (if any);
             when the config names no apiHashFile/apiHashEnv, also the api_hash from
             my.telegram.org, kept encrypted in the state store (never in the config)
Run offchannel capture afterwards. Nothing is sent to any other service.

Options:
  --account <name>   the connector's account in the config (required)
  --config <file>    the config (default ./offchannel.config.json)
  --phone <digits>   WhatsApp: link by pairing code for this number (country code first)
  --replace          Signal, Telegram: replace a session already stored for this account
  --log-level <lvl>  diagnostics on stderr (default warn)
  -h, --help         show this help`;

export async function linkCommand(argv: readonly string[], io: CliIo, load: Loader = (name) => import(name)): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      account: { type: 'string' },
      config: { type: 'string', default: 'offchannel.config.json' },
      phone: { type: 'string' },
      replace: { type: 'boolean', default: false },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${LINK_USAGE}\n`);
    return EXIT_OK;
  }
  const channel = positionals[0];
  if (positionals.length !== 1 || !channel || !['whatsapp', 'signal', 'telegram'].includes(channel)) throw new UsageError('link needs one channel: whatsapp, signal or telegram');
  if (values.account === undefined) throw new UsageError('--account <name> is required');
  if (values.phone !== undefined && channel !== 'whatsapp') throw new UsageError('--phone applies to whatsapp only');
  const logger = createLogger(values['log-level'], io.env);
  const file = path.resolve(io.cwd, values.config);
  const { config, entry } = await readConnectorEntry(file, channel, values.account);
  const { module, options } = await loadConnectorPackage(entry, load, io.env);
  const root = await openConfiguredStateStore(config.state, logger);
  const state = root.scope(`${channel}:${entry.account}`);
  const qr = (text: string): void => {
    io.stdout.write(`\n${renderUnicodeCompact(text)}\n`);
  };
  if (channel === 'whatsapp') {
    await (module.linkWhatsApp as (options: unknown) => Promise<unknown>)({
      state,
      logger,
      ...(values.phone === undefined ? {} : { phoneNumber: values.phone }),
      io: {
        showQr: (_text: string, terminal: string) => io.stdout.write(`\nScan with WhatsApp → Settings → Linked devices:\n${terminal}\n`),
        showPairingCode: (code: string) => io.stdout.write(`\nOn the phone: WhatsApp → Linked devices → Link with phone number, and enter ${code}\n`),
        status: (message: string) => io.stderr.write(`${message}\n`),
      },
    });
  } else if (channel === 'signal') {
    await (module.linkSignalDevice as (options: unknown) => Promise<unknown>)({
      state,
      logger,
      replace: values.replace,
      signal: io.signal,
      ...(options.server === undefined ? {} : { server: options.server }),
      io: {
        showLinkUri: (uri: string) => {
          io.stdout.write('\nScan with Signal → Settings → Linked devices → Link new device:');
          qr(uri);
        },
      },
    });
  } else {
    await linkTelegramInteractively(module, options, state, logger, io, values.replace);
  }
  io.stdout.write(`linked: ${channel}:${entry.account}; its session is in ${config.state.dir} (encrypted). Now run: offchannel capture --config ${path.relative(io.cwd, file) || file}\n`);
  return EXIT_OK;
}

async function linkTelegramInteractively(module: Record<string, unknown>, options: Record<string, unknown>, state: StateStore, logger: Logger, io: CliIo, replace: boolean): Promise<void> {
  if (options.route === 'business') throw new UsageError('this Telegram connector uses the Bot API Business route: there is nothing to link; the employee connects the bot in Telegram Business settings');
  const prompts = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY });
  try {
    const ask = async (question: string, secret = false): Promise<string> => {
      if (!secret || !process.stdin.isTTY) return prompts.question(question);
      // Hide the typed password: echo nothing while it is entered.
      const output = prompts as unknown as { _writeToOutput?: ((text: string) => void) | undefined };
      const original = output._writeToOutput;
      io.stderr.write(question);
      output._writeToOutput = () => undefined;
      try {
        return await prompts.question('');
      } finally {
        output._writeToOutput = original;
        io.stderr.write('\n');
      }
    };
    // The api_hash: from the config's file or environment variable, else the one kept by an earlier link, else asked for (hidden) and kept encrypted.
    let apiHash = options.apiHash as string | undefined;
    const storeApiHash = apiHash === undefined;
    apiHash ??= await (module.storedApiHash as (state: StateStore) => Promise<string | undefined>)(state);
    if (apiHash === undefined) {
      const answer = (await ask('api_hash of the firm\'s Telegram app (my.telegram.org → API development tools; kept encrypted in the state store): ', true)).trim();
      if (!/^[0-9a-f]{32}$/i.test(answer)) throw new UsageError('the api_hash is 32 hexadecimal characters (my.telegram.org → API development tools)');
      apiHash = answer;
    }
    await (module.linkTelegram as (options: unknown) => Promise<unknown>)({
      account: options.account,
      apiId: options.apiId,
      apiHash,
      storeApiHash,
      state,
      logger,
      replace,
      io: {
        phone: () => ask('Phone number (international format, e.g. +15551234567): '),
        code: (attempt: number) => ask(attempt > 1 ? 'That code was not accepted. Login code: ' : 'Login code (sent in Telegram or by SMS): '),
        password: (hint: string | undefined, attempt: number) => ask(`${attempt > 1 ? 'Wrong password. ' : ''}Two-step verification password${hint ? ` (hint: ${hint})` : ''}: `, true),
        notice: (message: string) => io.stderr.write(`${message}\n`),
      },
    });
  } finally {
    prompts.close();
  }
}
