/**
 * `offchannel reconcile imessage --account <name>`: starts that one relay, lets it catch up on
 * chat.db, then sweeps: every row up to its cursor that the archive lacks is recorded, with a
 * `chat-db-sweep` record saying what was checked, recovered and lost.
 *
 * `offchannel reconcile telegram --account <name>`: starts that one connector of the config
 * (its session, archive stream, state store, signing key and capture policy, exactly as
 * `offchannel capture` would), lets it catch up on updates, compares each recent chat's history
 * on Telegram with the archive, records what is missing (messages, edits, deletes) and stops:
 * final checkpoints signed, the S3 spool drained. Running it twice records nothing twice.
 *
 * `offchannel reconcile whatsapp --account <name>`: starts that one connector, lets the server
 * deliver what queued while it was away, then asks the phone (on-demand history fetch) for the
 * history around every gap still pending and records what comes back; one `gap-backfilled` or
 * `gap-not-recovered` record per gap. Signal cannot be reconciled: it has no history API.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OffchannelError } from '@offchannel/core';
import type { ReconcileReport } from '@offchannel/imessage';
import type { ReconcileTelegramOptions, ReconcileTelegramReport } from '@offchannel/telegram';
import type { ReconcileWhatsAppOptions, ReconcileWhatsAppReport } from '@offchannel/whatsapp';
import { CaptureRunner, readConnectorEntry } from '../capture/capture-runner.ts';
import type { Loader } from '../capture/connector-registry.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { parseDuration } from '../coverage-report/parse-duration.ts';
import { plural } from '../format.ts';
import { ProgressLine } from '../progress-line.ts';
import { UsageError } from '../usage-error.ts';

export const RECONCILE_USAGE = `Usage: offchannel reconcile telegram --account <name> [--config offchannel.config.json] [options]
       offchannel reconcile imessage --account <name> [--config offchannel.config.json] [--json]
       offchannel reconcile whatsapp --account <name> [--config offchannel.config.json] [--timeout 60s] [--count 50] [--json]

WhatsApp: the phone holds the history, not WhatsApp's servers. For every gap still pending in
the account's stream (the server announced more offline messages than arrived), asks the phone
for the history of each chat active since the gap, page by page (--count messages each) back to
before it, and records what the archive lacks (marked recovered; what it holds already is not
recorded twice). One "gap-backfilled" record per gap the phone answered, or "gap-not-recovered"
when it did not answer within --timeout (a phone offline is common; the gap stays pending and
capture tries again by itself after each gap and every hour: "reconcile" in the connector entry).
Stop "offchannel capture" for this account first (one writer per stream).

Signal cannot be reconciled: it gives a linked device no message history.

iMessage: compares every row of the account's chat.db (up to what the relay has read) with the
archive, through the archive's key index, and records the rows it never recorded — written
while the relay was stopped below its cursor, restored from a backup, or missed by a watcher —
with one "chat-db-sweep" system record saying how many rows were checked, recovered, and lost
(unsent, or edited with no earlier versions left, before any capture saw them). The relay does
the same after every start and every "reconcileMs" (default 1 h) while capturing; running this
next to a capture of the same account is refused by the archive (one writer per stream).

Telegram:
Compares the recent history of the account's chats on Telegram with the archive and records
what the archive is missing: messages it never received (sent before linking, or lost in a
"difference too long" gap), edits made while nothing listened, and messages deleted without a
notification. It uses the config's connector entry, state store and signing key, and respects
its capture policy. Updates since the last capture are caught up first.

Telegram allows one live session per account: stop "offchannel capture" for this account
first, or give its config entry "reconcile": {"everyMs": …} to reconcile while capturing.

Options:
  --account <name>   the connector's account in the config (required)
  --config <file>    the config (default ./offchannel.config.json)
  --chat <id>        a marked chat id to check (repeatable; default: the most recent dialogs)
  --dialogs <n>      how many recent dialogs to check (default 50)
  --limit <n>        how many recent messages to compare per chat (default 100, at most 10000)
  --timeout <dur>    WhatsApp: how long to wait for each answer from the phone (default 60s)
  --count <n>        WhatsApp: messages asked per page (default 50, at most 500)
  --json             print the report as JSON
  --log-level <lvl>  JSON logs on stderr (default warn)
  -h, --help         show this help

Exit status: 0 every chat checked, 1 some chat could not be read, the run was interrupted or
the archive failed (run it again: nothing is recorded twice), 2 bad arguments or config.`;

/** What the command needs of the connector (the package is loaded only when used). */
interface Reconcilable {
  reconcile(options: ReconcileTelegramOptions): Promise<ReconcileTelegramReport>;
}

/** What the command needs of the WhatsApp connector. */
interface AsksThePhone {
  reconcile(options: ReconcileWhatsAppOptions): Promise<ReconcileWhatsAppReport>;
}

/** What the command needs of the iMessage relay. */
interface SweepsChatDb {
  reconcile(): Promise<ReconcileReport>;
}

export async function reconcileCommand(argv: readonly string[], io: CliIo, load?: Loader): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      account: { type: 'string' },
      config: { type: 'string', default: 'offchannel.config.json' },
      chat: { type: 'string', multiple: true },
      dialogs: { type: 'string' },
      limit: { type: 'string' },
      timeout: { type: 'string' },
      count: { type: 'string' },
      json: { type: 'boolean', default: false },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${RECONCILE_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals[0] === 'signal') throw new UsageError('Signal cannot be reconciled: it gives a linked device no message history, so what was sent while capture was down cannot be fetched (see docs/coverage.md)');
  if (positionals.length !== 1 || (positionals[0] !== 'telegram' && positionals[0] !== 'imessage' && positionals[0] !== 'whatsapp')) throw new UsageError('reconcile needs one channel: telegram, imessage or whatsapp (Signal has no history to reconcile with)');
  if (values.account === undefined) throw new UsageError('--account <name> is required');
  if (positionals[0] !== 'whatsapp' && (values.timeout !== undefined || values.count !== undefined)) throw new UsageError('--timeout and --count are for whatsapp');
  if (positionals[0] === 'whatsapp') {
    if (values.chat !== undefined || values.dialogs !== undefined || values.limit !== undefined) throw new UsageError('--chat, --dialogs and --limit are for telegram; WhatsApp asks the phone about the chats around each pending gap');
    const options = {
      ...(values.timeout === undefined ? {} : { timeoutMs: Math.min(parseDuration(values.timeout, '--timeout'), 600_000) }),
      ...(values.count === undefined ? {} : { count: count(values.count, '--count', 500) ?? 50 }),
    };
    return reconcileWhatsApp(values.account, values.config, options, values.json, values['log-level'], io, load);
  }
  if (positionals[0] === 'imessage') {
    if (values.chat !== undefined || values.dialogs !== undefined || values.limit !== undefined) throw new UsageError('--chat, --dialogs and --limit are for telegram; an iMessage sweep checks every row of chat.db');
    return reconcileIMessage(values.account, values.config, values.json, values['log-level'], io, load);
  }
  const chats = values.chat?.map((chat) => {
    if (!/^-?[1-9][0-9]{0,18}$/.test(chat)) throw new UsageError(`--chat takes a marked chat id such as 123456, -4001 or -1001500000001, not "${chat}"`);
    return chat;
  });
  const dialogs = count(values.dialogs, '--dialogs', 10_000);
  const limit = count(values.limit, '--limit', 10_000);
  if (chats && dialogs !== undefined) throw new UsageError('give --chat or --dialogs, not both');

  const file = path.resolve(io.cwd, values.config);
  const { config, entry } = await readConnectorEntry(file, 'telegram', values.account);
  if ((entry.options as { route?: unknown }).route === 'business') throw new UsageError(`the telegram connector for "${entry.account}" uses the Bot API Business route, which cannot read chat history; only the user-session route can be reconciled`);

  const logger = createLogger(values['log-level'], io.env);
  const runner = new CaptureRunner({ ...config, connectors: [entry] }, logger, { strict: true, env: io.env, ...(load ? { load } : {}) });
  try {
    await runner.start();
  } catch (error) {
    if (OffchannelError.hasCode(error, 'TELEGRAM_SESSION_IN_USE')) {
      io.stderr.write(`offchannel reconcile: ${error.message} [${error.code}]\nTo reconcile while capturing, give the account's config entry "reconcile": {"everyMs": 86400000}.\n`);
      return EXIT_FAILED;
    }
    throw error;
  }
  const running = runner.connectors[0];
  const progress = new ProgressLine(io);
  let report: ReconcileTelegramReport;
  try {
    if (!running || typeof (running.connector as Partial<Reconcilable>).reconcile !== 'function') throw new OffchannelError('RECONCILE_UNSUPPORTED', 'this version of @offchannel/telegram cannot reconcile; update it to the version of this CLI.');
    report = await (running.connector as unknown as Reconcilable).reconcile({
      ...(chats ? { chats } : {}),
      ...(dialogs === undefined ? {} : { dialogs }),
      ...(limit === undefined ? {} : { limit }),
      signal: io.signal,
      onProgress: ({ done, total }) => {
        progress.update('reconciling', done, total, 'chats');
      },
    });
  } catch (error) {
    progress.done();
    await runner.stop().catch(() => undefined);
    throw error;
  }
  progress.done();
  const written = runner.snapshot().connectors[0]?.status.captured ?? 0;
  if (!(await stopCleanly(runner, io))) return EXIT_FAILED;
  if (values.json) io.stdout.write(`${JSON.stringify({ stream: running.stream, ...report, recordsWritten: written })}\n`);
  else io.stdout.write(describe(running.stream, report, written));
  return report.skipped.length > 0 || report.interrupted ? EXIT_FAILED : EXIT_OK;
}

/** What one reconcile run gives back: its stream, the connector's report and the records written. */
interface Reconciled<T> {
  readonly stream: string;
  readonly report: T;
  readonly written: number;
}

/**
 * Runs one account's connector (strict: a start failure throws), has `reconcile` ask it, then
 * stops it. The shared lifecycle of the iMessage and WhatsApp runs (Telegram's is in
 * `reconcileCommand`). Returns EXIT_FAILED when the shutdown did not complete cleanly.
 */
async function withConnector<T>(kind: 'imessage' | 'whatsapp', account: string, configFile: string, logLevel: string | undefined, io: CliIo, load: Loader | undefined, reconcile: (connector: object) => Promise<T>): Promise<Reconciled<T> | typeof EXIT_FAILED> {
  const { config, entry } = await readConnectorEntry(path.resolve(io.cwd, configFile), kind, account);
  const runner = new CaptureRunner({ ...config, connectors: [entry] }, createLogger(logLevel, io.env), { strict: true, env: io.env, ...(load ? { load } : {}) });
  await runner.start();
  const running = runner.connectors[0];
  let report: T;
  try {
    if (!running) throw new OffchannelError('RECONCILE_UNSUPPORTED', `no ${kind} connector started for this account; check the config.`);
    report = await reconcile(running.connector);
  } catch (error) {
    await runner.stop().catch(() => undefined);
    throw error;
  }
  const written = runner.snapshot().connectors[0]?.status.captured ?? 0;
  if (!(await stopCleanly(runner, io))) return EXIT_FAILED;
  return { stream: running.stream, report, written };
}

/** Stops the runner; false, having said so on stderr, when the shutdown did not complete cleanly. */
async function stopCleanly(runner: CaptureRunner, io: CliIo): Promise<boolean> {
  try {
    await runner.stop();
    return true;
  } catch {
    io.stderr.write('offchannel reconcile: shutdown did not complete cleanly; see the log. What was recorded is durable: run reconcile again to finish.\n');
    return false;
  }
}

async function reconcileIMessage(account: string, configFile: string, json: boolean, logLevel: string | undefined, io: CliIo, load?: Loader): Promise<number> {
  const done = await withConnector<ReconcileReport>('imessage', account, configFile, logLevel, io, load, (connector) => {
    if (typeof (connector as Partial<SweepsChatDb>).reconcile !== 'function') throw new OffchannelError('RECONCILE_UNSUPPORTED', 'this version of @offchannel/imessage cannot reconcile; update it to the version of this CLI.');
    const sweeping = (connector as SweepsChatDb).reconcile();
    const stopped = new Promise<never>((_, reject) => { io.signal.addEventListener('abort', () => { reject(new OffchannelError('RECONCILE_INTERRUPTED', 'interrupted before the sweep finished: run it again (nothing is recorded twice)')); }, { once: true }); });
    return Promise.race([sweeping, stopped]);
  });
  if (done === EXIT_FAILED) return done;
  const { stream, report, written } = done;
  if (json) io.stdout.write(`${JSON.stringify({ stream, ...report, recordsWritten: written })}\n`);
  else {
    const found = report.sinceStart;
    const lost = found.unsentBeforeCapture + found.editedWithoutHistory;
    io.stdout.write(`reconciled ${stream}: ${plural(report.checked, 'chat.db row')} compared with the archive\n  recorded: ${found.recovered} missing (${lost} of them with content lost before any capture: ${found.unsentBeforeCapture} unsent, ${found.editedWithoutHistory} edited without history), ${plural(written, 'record')} written in all\n`);
  }
  return EXIT_OK;
}

async function reconcileWhatsApp(account: string, configFile: string, options: ReconcileWhatsAppOptions, json: boolean, logLevel: string | undefined, io: CliIo, load?: Loader): Promise<number> {
  const done = await withConnector<ReconcileWhatsAppReport>('whatsapp', account, configFile, logLevel, io, load, (connector) => {
    if (typeof (connector as Partial<AsksThePhone>).reconcile !== 'function') throw new OffchannelError('RECONCILE_UNSUPPORTED', 'this version of @offchannel/whatsapp cannot reconcile; update it to the version of this CLI.');
    return (connector as AsksThePhone).reconcile({ ...options, signal: io.signal });
  });
  if (done === EXIT_FAILED) return done;
  const { stream, report, written } = done;
  if (json) io.stdout.write(`${JSON.stringify({ stream, ...report, recordsWritten: written })}\n`);
  else {
    const lines = [
      `reconciled ${stream}: ${plural(report.gaps, 'pending gap')}, ${report.chatsAnswered} of ${plural(report.chatsAsked, 'chat')} answered by the phone`,
      `  recovered: ${report.recovered} of ${plural(report.gaps, 'gap')}; ${report.recorded} missing of ${plural(report.returned, 'message')} returned recorded (${plural(written, 'record')} written in all)`,
    ];
    for (const { gap, reason } of report.notRecovered) lines.push(`  not recovered: gap ${gap} (${reason}); it stays pending: run again when the phone is online`);
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.notRecovered.length > 0 ? EXIT_FAILED : EXIT_OK;
}

function describe(stream: string, report: ReconcileTelegramReport, written: number): string {
  const lines = [
    `reconciled ${stream}: ${plural(report.chats, 'chat')}, ${plural(report.messagesChecked, 'message')} compared with the archive`,
    `  recorded: ${report.missingRecorded} missing, ${plural(report.editsRecorded, 'edit')}, ${plural(report.deletesRecorded, 'delete')} (${plural(written, 'record')} written in all, with updates caught up since the last capture)`,
  ];
  for (const { chat, code } of report.skipped) lines.push(`  not checked: chat ${chat} (${code})`);
  if (report.interrupted) lines.push('  interrupted before every chat was checked: run it again to finish (nothing is recorded twice)');
  return `${lines.join('\n')}\n`;
}

function count(value: string | undefined, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < 1 || n > max) throw new UsageError(`${flag} takes a whole number from 1 to ${max}, not "${value}"`);
  return n;
}
