import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ConnectorStatus } from '@offchannel/core';
import { parseCaptureConfig } from '../capture/capture-config.ts';
import type { DeliverySnapshot } from '../capture/capture-deliveries.ts';
import { CaptureRunner, readConfigJson } from '../capture/capture-runner.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { plural } from '../format.ts';
import { UsageError } from '../usage-error.ts';

export const CAPTURE_USAGE = `Usage: offchannel capture [--config offchannel.config.json] [options]

Runs the configured connectors into the configured archive until SIGINT or SIGTERM: every
event is recorded durably before the connector acknowledges it upstream. On a signal, captures
in flight finish, excluded-conversation counts are recorded, final checkpoints are signed, and
(for S3) the spool is copied before exit. The config is checked first; a bad key is named.
See docs/capture.md for every setting, the capture policy and running it as a service.

Options:
  --config <file>     the config (default ./offchannel.config.json)
  --check             validate the config and exit (no archive or connector is opened)
  --log-level <lvl>   JSON logs on stderr (default: the config's log.level, else info)
  -h, --help          show this help

A status line is shown on stdout when it is a terminal; otherwise the status is logged every
minute. Exit status: 0 stopped cleanly, 1 a connector or the archive failed, 2 bad config.`;

export async function captureCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      config: { type: 'string', default: 'offchannel.config.json' },
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
  const file = path.resolve(io.cwd, values.config);
  const config = parseCaptureConfig(await readConfigJson(file), file);
  if (values.check) {
    io.stdout.write(`config OK: ${file}\n  ${plural(config.connectors.length, 'connector')}: ${config.connectors.map((entry) => `${entry.channel}:${entry.account}`).join(', ')}\n  archive: ${config.archive.kind === 'dir' ? config.archive.dir : `${config.archive.url} (spool ${config.archive.spool})`}\n  signing: ${config.signing ? config.signing.keyFile : 'none (checkpoints will not be signed)'}\n  policy: ${config.policy.version ?? 'none'}\n  delivery: ${config.delivery.map((target) => `${target.name} → ${target.to} (${target.mode})`).join(', ') || 'none'}\n`);
    return EXIT_OK;
  }
  const logger = createLogger(values['log-level'], io.env, config.log.level);
  const runner = new CaptureRunner(config, logger, { env: io.env });
  if (!config.signing) logger.warn({}, 'no "signing" in the config: checkpoints will not be signed, so deletions at the end of a stream cannot be detected');
  await runner.start();
  logger.info({ connectors: runner.connectors.map((entry) => entry.stream) }, 'capture running');
  const tty = io.stdout.isTTY === true;
  let lastLog = 0;
  const tick = setInterval(() => {
    const snapshot = runner.snapshot();
    if (tty) {
      io.stdout.write(`\r${[...snapshot.connectors.map(({ stream, status, excluded }) => `${stream} ${statusText(status)}${excluded > 0 ? ` ${excluded} excluded` : ''}`), ...(snapshot.deliveries ?? []).map(deliveryText)].join(' │ ')}\u001b[K`);
    } else if (Date.now() - lastLog >= 60_000) {
      lastLog = Date.now();
      logger.info({ connectors: snapshot.connectors.map(({ stream, status, excluded }) => ({ stream, state: status.state, captured: status.captured, duplicates: status.duplicates, errors: status.errors, excluded, lastEventAt: status.lastEventAt ?? null })), ...(snapshot.forwarded ? { forwarded: snapshot.forwarded } : {}), ...(snapshot.deliveries ? { deliveries: snapshot.deliveries.map(({ name, state, error, status }) => ({ target: name, state, error: error ?? null, backlog: status?.backlog ?? null, lagMs: status?.lagMs ?? null, delivered: status?.delivered ?? null })) } : {}) }, 'capture status');
    }
  }, config.statusEveryMs);
  await new Promise<void>((resolve) => {
    if (io.signal.aborted) resolve();
    else io.signal.addEventListener('abort', () => { resolve(); }, { once: true });
  });
  clearInterval(tick);
  if (tty) io.stdout.write('\r\u001b[K');
  logger.info({}, 'stopping: finishing captures in flight, signing checkpoints');
  const final = runner.snapshot();
  try {
    await runner.stop();
  } catch {
    io.stderr.write('offchannel capture: shutdown did not complete cleanly; see the log. Nothing acknowledged was lost: restart capture to resume.\n');
    return EXIT_FAILED;
  }
  io.stdout.write(`stopped: ${final.connectors.map(({ stream, status, excluded }) => `${stream} ${plural(status.captured, 'record')} captured, ${status.duplicates} already archived${excluded > 0 ? `, ${excluded} excluded by policy` : ''}`).join('; ')}\n`);
  return final.connectors.some(({ status }) => status.state === 'failed') ? EXIT_FAILED : EXIT_OK;
}

function deliveryText({ name, state, error, status }: DeliverySnapshot): string {
  if (state !== 'running') return `deliver ${name} ${state}${error ? ` ${error}` : ''}`;
  return `deliver ${name} backlog ${status?.backlog ?? '?'}${status && status.backlog > 0 ? ` lag ${Math.round(status.lagMs / 1000)}s` : ''}`;
}

function statusText(status: ConnectorStatus): string {
  return `${status.state} ${status.captured} captured${status.duplicates > 0 ? ` ${status.duplicates} dup` : ''}${status.errors > 0 ? ` ${status.errors} ERR` : ''}${status.lastEventAt ? ` last ${status.lastEventAt.slice(11, 19)}` : ''}`;
}
