import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { DEMO_ACCOUNT, DEMO_CHANNEL, demoExchange } from '../demo/demo-exchange.ts';
import { formatBytes, plural, shortHash } from '../format.ts';
import { CLI_PACKAGE } from '../version.ts';

export const DEMO_USAGE = `Usage: offchannel demo [--archive <dir>] [options]

Records a generated business exchange (three conversations: a client negotiation with a PDF
term sheet, a reaction and an edit; a desk group with a new member, a reply and a message
deleted for everyone; a personal chat with a delete-for-me) through the Recorder into a
file-system archive, then verifies the archive. Offline; running it again records nothing new.

Options:
  --archive <dir>     archive directory (default ./demo-archive; created if missing)
  --json              print the result as JSON
  --log-level <lvl>   diagnostics on stderr (default warn)
  -h, --help          show this help`;

export async function demoCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    allowPositionals: false,
    options: {
      archive: { type: 'string', default: './demo-archive' },
      json: { type: 'boolean', default: false },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${DEMO_USAGE}\n`);
    return EXIT_OK;
  }
  const logger = createLogger(values['log-level'], io.env);
  const dir = path.resolve(io.cwd, values.archive);

  logger.info({ archive: dir }, 'demo starting');
  const sink = await openFsSink({ dir, logger });
  const recorder = new Recorder({ sink, logger });
  const writer = recorder.writer({ channel: DEMO_CHANNEL, account: DEMO_ACCOUNT, source: { package: CLI_PACKAGE.name, version: CLI_PACKAGE.version, upstream: 'offchannel-demo-generator@1' } });
  const events = demoExchange();
  let recorded = 0;
  let duplicates = 0;
  try {
    for (const event of events) {
      const result = await writer.capture(event);
      logger.debug({ stream: result.stream, seq: result.seq, key: result.key, kind: event.kind, status: result.status }, 'demo event captured');
      if (result.status === 'recorded') recorded++;
      else duplicates++;
    }
    await recorder.close();
  } finally {
    await sink.close();
  }

  const reader = await openFsSink({ dir, readOnly: true, logger });
  const report = await verifyArchive(reader).finally(() => reader.close());
  const stream = report.streams.find((summary) => summary.stream === writer.stream);
  const conversations = new Set(events.map((event) => event.conversation?.id).filter(Boolean)).size;
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ archive: dir, stream: writer.stream, recorded, duplicates, conversations, verification: report }, null, 2)}\n`);
  } else {
    const lines = [
      `offchannel demo → ${dir}`,
      `  recorded ${plural(recorded, 'new record')} (${duplicates} already archived) from ${plural(conversations, 'conversation')} into stream ${writer.stream}`,
      report.ok
        ? `  verify: OK — ${plural(report.streams.length, 'stream')}, ${plural(report.streams.reduce((sum, summary) => sum + summary.records, 0), 'record')}, ${plural(report.blobsChecked, 'blob')} (${formatBytes(report.blobBytes)}) hashed; head seq ${stream?.head.seq ?? 0} ${shortHash(stream?.head.hash ?? '')}`
        : `  verify: FAIL — ${report.failures[0]?.message ?? 'unknown failure'}`,
      '',
      `Look inside:  ls ${display(io.cwd, dir)}/streams/*  ·  offchannel verify ${display(io.cwd, dir)}`,
    ];
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

/** `dir` relative to `cwd` when it is inside it, else absolute. */
function display(cwd: string, dir: string): string {
  const relative = path.relative(cwd, dir);
  return relative === '' ? '.' : relative.startsWith('..') || path.isAbsolute(relative) ? dir : `./${relative}`;
}
