import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, type ConnectorStatus, type Logger, OffchannelError } from '@offchannel/core';
import type { AccountSnapshot } from '../capture/account-supervisor.ts';
import { parseCaptureConfig } from '../capture/capture-config.ts';
import type { DeliverySnapshot } from '../capture/capture-deliveries.ts';
import { CaptureRunner, readConfigJson } from '../capture/capture-runner.ts';
import { inShard, parseShard, shardText } from '../capture/capture-shard.ts';
import { checkConnectorEntry } from '../capture/connector-registry.ts';
import { readMetricsToken } from '../capture/metrics-config.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { plural } from '../format.ts';
import { UsageError } from '../usage-error.ts';

export const CAPTURE_USAGE = `Usage: offchannel capture [--config offchannel.config.json] [options]

Runs the configured connectors into the configured archive until SIGINT or SIGTERM: every
event is recorded durably before the connector acknowledges it upstream. Each account is
supervised on its own: one that is not linked, logged out, or whose connector fails is parked
or restarted with backoff while the others keep capturing. SIGHUP re-reads the config: added
accounts start, removed ones stop, unchanged ones are not touched (parked ones are tried again,
e.g. after offchannel link). On SIGINT/SIGTERM, captures in flight finish, excluded-conversation
counts are recorded, final checkpoints are signed, and (for S3) the spool is copied before exit.
See docs/capture.md for every setting, the capture policy and running it as a service.

Options:
  --config <file>     the config (default ./offchannel.config.json)
  --shard <k/n>       capture only the accounts in shard k of n (0 <= k < n), so several
                      hosts share one config; default: OFFCHANNEL_SHARD, else every account.
                      An account's shard: first 4 bytes of sha256("<channel>:<account>") mod n
  --check             validate the config and every connector entry, and exit
  --log-level <lvl>   JSON logs on stderr (default: the config's log.level, else info)
  -h, --help          show this help

A status line is shown on stdout when it is a terminal; otherwise the status is logged every
minute, and every account state change is logged as it happens. Exit status: 0 stopped
cleanly (whatever state the accounts were in), 1 the archive, keys or a shutdown step failed,
2 bad arguments or config.`;

export async function captureCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      config: { type: 'string', default: 'offchannel.config.json' },
      shard: { type: 'string' },
      check: { type: 'boolean', default: false },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${CAPTURE_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0] ?? ''}"; connectors are chosen in the config file`);
  const shardSetting = values.shard ?? io.env.OFFCHANNEL_SHARD;
  const shard = shardSetting === undefined || shardSetting === '' ? undefined : parseShard(shardSetting, values.shard === undefined ? 'OFFCHANNEL_SHARD' : '--shard');
  const file = path.resolve(io.cwd, values.config);
  const config = parseCaptureConfig(await readConfigJson(file), file);
  if (values.check) {
    for (const entry of config.connectors) await checkConnectorEntry(entry);
    if (config.metrics) await readMetricsToken(config.metrics.tokenFile);
    const mine = config.connectors.filter((entry) => inShard(`${entry.channel}:${entry.account}`, shard));
    io.stdout.write(`config OK: ${file}\n  ${plural(config.connectors.length, 'connector')}: ${config.connectors.map((entry) => `${entry.channel}:${entry.account}`).join(', ')}\n${shard ? `  shard ${shardText(shard)}: ${mine.length === 0 ? 'none of them (this process would wait for a reload)' : `${mine.length} of them: ${mine.map((entry) => `${entry.channel}:${entry.account}`).join(', ')}`}\n` : ''}  archive: ${config.archive.kind === 'dir' ? config.archive.dir : `${config.archive.url} (spool ${config.archive.spool})`}\n  signing: ${config.signing ? config.signing.keyFile : 'none (checkpoints will not be signed)'}\n  policy: ${config.policy.version ?? 'none'}\n  delivery: ${config.delivery.map((target) => `${target.name} → ${target.to} (${target.mode})`).join(', ') || 'none'}\n  metrics: ${config.metrics ? `${config.metrics.host.includes(':') ? `[${config.metrics.host}]` : config.metrics.host}:${config.metrics.port} (GET /metrics, bearer token from ${config.metrics.tokenFile})` : 'none (no listener)'}\n`);
    return EXIT_OK;
  }
  const logger = createLogger(values['log-level'], io.env, config.log.level);
  const runner = new CaptureRunner(config, logger, { env: io.env, ...(shard ? { shard } : {}) });
  if (!config.signing) logger.warn({}, 'no "signing" in the config: checkpoints will not be signed, so deletions at the end of a stream cannot be detected');
  // Subscribed before the start, which can take a while with many accounts: a SIGHUP meanwhile
  // must not end the process (the default action), it is applied once everything has started.
  let started = false;
  let hangupWhileStarting = false;
  const reload = (): void => {
    logger.info({}, 'SIGHUP: re-reading the config');
    void reloadConfig(file, runner, logger);
  };
  const unsubscribe = io.onHangup?.(() => {
    if (started) reload();
    else hangupWhileStarting = true;
  });
  try {
    await runner.start();
  } catch (error) {
    unsubscribe?.();
    throw error;
  }
  started = true;
  const accounts = runner.snapshot().accounts;
  if (accounts.length === 0) logger.warn({ shard: shard ? shardText(shard) : null }, 'no account of the config is in this shard; waiting for a config reload (SIGHUP)');
  logger.info({ run: runner.runId, ...(shard ? { shard: shardText(shard) } : {}), accounts: accounts.map(({ stream, state }) => ({ stream, state })) }, 'capture running');
  if (hangupWhileStarting) reload();
  const tty = io.stdout.isTTY === true;
  let lastLog = 0;
  const tick = setInterval(() => {
    const snapshot = runner.snapshot();
    if (tty) {
      io.stdout.write(`\r${[statusLine(snapshot.accounts), ...(snapshot.deliveries ?? []).map(deliveryText)].join(' │ ')}\u001b[K`);
    } else if (Date.now() - lastLog >= 60_000) {
      lastLog = Date.now();
      logger.info({ accounts: snapshot.accounts.map((account) => ({ stream: account.stream, state: account.state, code: account.code ?? null, connector: account.connector?.state ?? null, captured: account.captured, duplicates: account.duplicates, errors: account.errors, excluded: account.excluded, lastEventAt: account.connector?.lastEventAt ?? null })), ...(snapshot.forwarded ? { forwarded: snapshot.forwarded } : {}), ...(snapshot.deliveries ? { deliveries: snapshot.deliveries.map(({ name, state, error, status }) => ({ deliveryTarget: name, state, error: error ?? null, backlog: status?.backlog ?? null, lagMs: status?.lagMs ?? null, delivered: status?.delivered ?? null, missed: status?.missed.length ? status.missed : null })) } : {}) }, 'capture status');
    }
  }, config.statusEveryMs);
  await new Promise<void>((resolve) => {
    if (io.signal.aborted) resolve();
    else io.signal.addEventListener('abort', () => { resolve(); }, { once: true });
  });
  unsubscribe?.();
  clearInterval(tick);
  if (tty) io.stdout.write('\r\u001b[K');
  logger.info({}, 'stopping: finishing captures in flight, signing checkpoints');
  const before = runner.snapshot().accounts;
  try {
    await runner.stop();
  } catch {
    io.stderr.write('offchannel capture: shutdown did not complete cleanly; see the log. Nothing acknowledged was lost: restart capture to resume.\n');
    return EXIT_FAILED;
  }
  io.stdout.write(`stopped: ${before.length === 0 ? 'no accounts in this shard' : before.map(summary).join('; ')}\n`);
  return EXIT_OK;
}

/** SIGHUP: a config that fails its checks is not applied, and capture goes on with the previous one. */
async function reloadConfig(file: string, runner: CaptureRunner, logger: Logger): Promise<void> {
  try {
    const next = parseCaptureConfig(await readConfigJson(file), file);
    await runner.reload(next);
  } catch (error) {
    const code = OffchannelError.isInstance(error) ? error.code : 'UNKNOWN';
    logger.error({ code, problem: error instanceof ConfigError ? error.message : undefined }, 'config not applied; capture goes on with the previous one');
  }
}

function deliveryText({ name, state, error, status }: DeliverySnapshot): string {
  // Records the spool lost before delivery stay on the line until the target's state is reset.
  const missed = status?.missed.length ? ` MISSED ${status.missed.map((gap) => `${gap.stream} ${gap.seqs}`).join(', ')}` : '';
  if (state !== 'running') return `deliver ${name} ${state}${error ? ` ${error}` : ''}${missed}`;
  return `deliver ${name} backlog ${status?.backlog ?? '?'}${status && status.backlog > 0 ? ` lag ${Math.round(status.lagMs / 1000)}s` : ''}${missed}`;
}

function summary(account: AccountSnapshot): string {
  const counts = `${plural(account.captured, 'record')} captured, ${account.duplicates} already archived${account.excluded > 0 ? `, ${account.excluded} excluded by policy` : ''}`;
  return account.state === 'running' || account.state === 'stopped' ? `${account.stream} ${counts}` : `${account.stream} ${account.state}${account.code ? ` (${account.code})` : ''}, ${counts}`;
}

/** One line for a terminal: every account when few, else counts by state and the ones not running. */
function statusLine(accounts: readonly AccountSnapshot[]): string {
  if (accounts.length === 0) return 'no accounts in this shard';
  if (accounts.length <= 6) return accounts.map((account) => `${account.stream} ${accountText(account)}`).join(' │ ');
  const byState = new Map<string, number>();
  for (const account of accounts) byState.set(account.state, (byState.get(account.state) ?? 0) + 1);
  const counts = [...byState].map(([state, count]) => `${count} ${state}`).join(', ');
  const captured = accounts.reduce((sum, account) => sum + account.captured, 0);
  const trouble = accounts.filter((account) => account.state !== 'running').map((account) => `${account.stream} ${account.state}`);
  return `${plural(accounts.length, 'account')}: ${counts}; ${captured} captured${trouble.length > 0 ? ` │ ${trouble.slice(0, 4).join(' │ ')}${trouble.length > 4 ? ` │ +${trouble.length - 4} more` : ''}` : ''}`;
}

function accountText(account: AccountSnapshot): string {
  if (account.state !== 'running' || !account.connector) return `${account.state.toUpperCase()}${account.code ? ` ${account.code}` : ''}${account.state === 'restarting' ? ` attempt ${account.attempt}` : ''}`;
  return statusText(account.connector, account.excluded);
}

function statusText(status: ConnectorStatus, excluded: number): string {
  return `${status.state} ${status.captured} captured${status.duplicates > 0 ? ` ${status.duplicates} dup` : ''}${status.errors > 0 ? ` ${status.errors} ERR` : ''}${excluded > 0 ? ` ${excluded} excluded` : ''}${status.lastEventAt ? ` last ${status.lastEventAt.slice(11, 19)}` : ''}`;
}
