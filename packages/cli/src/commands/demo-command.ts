import path from 'node:path';
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { type ExportResult, exportArchive } from '@offchannel/export';
import { type CheckpointSummary, type NoteVerifier, Recorder, createTsaClient, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { type ChannelDemoResult, loadDemoPeer, playChannelDemos } from '../demo/channel-demos.ts';
import { DEMO_ACCOUNT, DEMO_CHANNEL, demoExchange } from '../demo/demo-exchange.ts';
import { formatBytes, plural, shortHash } from '../format.ts';
import { assertKeyFileName, loadCertificates, loadSigningKey } from '../keys.ts';
import { UsageError } from '../usage-error.ts';
import { CLI_PACKAGE } from '../version.ts';
import { keygenCommand } from './keygen-command.ts';

export const DEMO_USAGE = `Usage: offchannel demo [--archive <dir>] [--signing-key <file> [--create-key]] [options]

Records a generated business exchange (three conversations: a client negotiation with a PDF
term sheet, a reaction and an edit; a desk group with a new member, a reply and a message
deleted for everyone; a personal chat with a delete-for-me) through the Recorder into a
file-system archive, then verifies the archive. Offline; running it again records nothing new.
With --signing-key the recorder signs checkpoints (every 10 records and at the end) and the
verification checks them.

Options:
  --archive <dir>       archive directory (default ./demo-archive; created if missing)
  --export <dir>        where the RSMF and HTML exports go (default: demo-export beside the
                        archive; a previous demo export there is replaced)
  --no-connectors       record only the generated exchange (skip the connectors' scripts)
  --signing-key <file>  sign checkpoints with this key (offchannel keygen); refused if unreadable
  --create-key          create --signing-key (and <file>.pub) first if it does not exist
  --peer <module>       also play the demo of a connector whose local peer is loaded from this
                        module file (e.g. Signal's server simulator, which cannot ship with the
                        CLI: packages/connectors/signal-mock-tests/src/demo-peer.ts); repeatable
  --tsa-url <url>       timestamp each checkpoint with this RFC 3161 TSA
  --tsa-cert <file>     trusted TSA certificate (PEM) to check its tokens against
  --json                print the result as JSON
  --log-level <lvl>     diagnostics on stderr (default warn)
  -h, --help            show this help`;

export async function demoCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    allowPositionals: false,
    options: {
      archive: { type: 'string', default: './demo-archive' },
      export: { type: 'string' },
      'no-connectors': { type: 'boolean', default: false },
      peer: { type: 'string', multiple: true },
      'signing-key': { type: 'string' },
      'create-key': { type: 'boolean', default: false },
      'tsa-url': { type: 'string' },
      'tsa-cert': { type: 'string', multiple: true },
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
  if (values['create-key'] && values['signing-key'] === undefined) throw new UsageError('--create-key needs --signing-key <file>');
  if ((values['tsa-url'] !== undefined || values['tsa-cert'] !== undefined) && values['signing-key'] === undefined) throw new UsageError('--tsa-url and --tsa-cert timestamp checkpoints: they need --signing-key');
  if (values['signing-key'] !== undefined) assertKeyFileName('--signing-key', values['signing-key']);
  const keyFile = values['signing-key'] === undefined ? undefined : path.resolve(io.cwd, values['signing-key']);
  if (keyFile && values['create-key'] && !existsSync(keyFile)) {
    const created = await keygenCommand(['--out', keyFile, '--name', 'demo.offchannel.example/archive'], { ...io, stdout: { write: () => true } });
    if (created !== EXIT_OK) return created;
  }
  const signer = keyFile ? await loadSigningKey(keyFile) : undefined;
  const tsaCertificates = values['tsa-cert'] ? await loadCertificates(values['tsa-cert'].map((file) => path.resolve(io.cwd, file))) : undefined;
  const timestamp = values['tsa-url'] ? createTsaClient({ url: values['tsa-url'], ...(tsaCertificates ? { trusted: tsaCertificates } : {}) }) : undefined;

  const peers = await Promise.all((values.peer ?? []).map((file) => loadDemoPeer(path.resolve(io.cwd, file))));
  logger.info({ archive: dir }, 'demo starting');
  const sink = await openFsSink({ dir, logger });
  const recorder = new Recorder({ sink, logger, ...(signer ? { checkpoints: { signer, everyRecords: 10, ...(timestamp ? { timestamp } : {}) } } : {}) });
  const writer = recorder.writer({ channel: DEMO_CHANNEL, account: DEMO_ACCOUNT, source: { package: CLI_PACKAGE.name, version: CLI_PACKAGE.version, upstream: 'offchannel-demo-generator@1' } });
  const events = demoExchange();
  let recorded = 0;
  let duplicates = 0;
  let channels: ChannelDemoResult[];
  try {
    for (const event of events) {
      const result = await writer.capture(event);
      logger.debug({ stream: result.stream, seq: result.seq, key: result.key, kind: event.kind, status: result.status }, 'demo event captured');
      if (result.status === 'recorded') recorded++;
      else duplicates++;
    }
    channels = values['no-connectors'] ? [] : await playChannelDemos(
      recorder,
      writer,
      logger,
      (line) => {
        if (!values.json) io.stdout.write(`${line}\n`);
      },
      peers,
    );
    await recorder.close();
  } finally {
    await sink.close();
  }

  const reader = await openFsSink({ dir, readOnly: true, logger });
  const report = await verifyArchive(reader, signer ? { verifiers: [signer.verifier], ...(tsaCertificates ? { tsaCertificates } : {}) } : {}).finally(() => reader.close());
  const exportDir = values.export === undefined ? path.join(path.dirname(dir), 'demo-export') : path.resolve(io.cwd, values.export);
  const exported = report.ok ? await exportDemo(dir, exportDir, signer?.verifier) : undefined;
  const refused = recorder.checkpointStates().find((state) => state.refused !== undefined || state.lastError !== undefined);
  const stream = report.streams.find((summary) => summary.stream === writer.stream);
  const conversations = new Set(events.map((event) => event.conversation?.id).filter(Boolean)).size;
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ archive: dir, stream: writer.stream, recorded, duplicates, conversations, channels, ...(signer ? { verifierKey: signer.verifierKey } : {}), verification: report, ...(exported ? { export: { dir: exportDir, files: exported.files.map((file) => file.path) } } : {}) }, null, 2)}\n`);
  } else {
    const lines = [
      `offchannel demo → ${dir}`,
      `  recorded ${plural(recorded, 'new record')} (${duplicates} already archived) from ${plural(conversations, 'conversation')} into stream ${writer.stream}`,
      ...channels.map((channel) => {
        const summary = report.streams.find((item) => item.stream === channel.stream);
        return channel.outcome === 'played'
          ? `  ${channel.channel}: played ${channel.steps} scripted steps through the real connector → stream ${channel.stream} (${plural(summary?.records ?? 0, 'record')})`
          : channel.outcome === 'already'
            ? `  ${channel.channel}: already played into this archive (stream ${channel.stream}, ${plural(summary?.records ?? 0, 'record')})`
            : `  ${channel.channel}: skipped — ${channel.detail ?? 'not available'}`;
      }),
      report.ok
        ? `  verify: OK — ${plural(report.streams.length, 'stream')}, ${plural(report.streams.reduce((sum, summary) => sum + summary.records, 0), 'record')}, ${plural(report.blobsChecked, 'blob')} (${formatBytes(report.blobBytes)}) hashed; head seq ${stream?.head.seq ?? 0} ${shortHash(stream?.head.hash ?? '')}`
        : `  verify: FAIL — ${report.failures[0]?.message ?? 'unknown failure'}`,
      ...checkpointLines(stream?.checkpoints ?? [], signer?.verifierKey, refused?.refused ?? refused?.lastError),
      ...(exported
        ? [
            `  export: ${exported.files.filter((file) => file.path.endsWith('.rsmf')).length} RSMF files (Relativity) and ${exported.files.filter((file) => file.path.endsWith('.html')).length} HTML transcripts → ${display(io.cwd, exportDir)}`,
            ...exported.files.filter((file) => file.path.endsWith('.html')).map((file) => `    open ${display(io.cwd, path.join(exportDir, file.path))}`),
          ]
        : []),
      '',
      `Look inside:  ls ${display(io.cwd, dir)}/streams/*  ·  offchannel verify ${display(io.cwd, dir)}${keyFile ? ` --key ${display(io.cwd, `${keyFile}.pub`)}` : ''}`,
    ];
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

/** Exports the demo archive as RSMF and HTML, replacing an earlier demo export (never any other directory). */
async function exportDemo(archive: string, out: string, verifier: NoteVerifier | undefined): Promise<ExportResult> {
  const summary = path.join(out, 'export-summary.json');
  if (existsSync(out)) {
    const previous = existsSync(summary) ? ((JSON.parse(await readFile(summary, 'utf8')) as { format?: unknown }).format ?? null) : null;
    if (previous !== 'offchannel-export' && (await readdir(out)).length > 0) throw new UsageError(`--export ${out} exists and is not an earlier offchannel export; choose another directory`);
    await rm(out, { recursive: true, force: true });
  }
  const sink = await openFsSink({ dir: archive, readOnly: true });
  try {
    return await exportArchive({ sink, out, formats: ['rsmf', 'html'], ...(verifier ? { verifiers: [verifier] } : {}), generator: `${CLI_PACKAGE.name} ${CLI_PACKAGE.version}` });
  } finally {
    await sink.close();
  }
}

function checkpointLines(checkpoints: readonly CheckpointSummary[], verifierKey: string | undefined, problem: string | undefined): string[] {
  if (!verifierKey) return ['  checkpoints: none signed (run with --signing-key <file> --create-key to sign and verify them)'];
  const latest = checkpoints.at(-1);
  return [
    `  checkpoints: ${checkpoints.length} signed and verified${latest ? `, latest at size ${latest.size}${latest.timestamp ? `, timestamped ${latest.timestamp.genTime}` : ''}` : ''}`,
    ...(problem ? [`  checkpoint problem: ${problem}`] : []),
    `  verifier key: ${verifierKey}`,
  ];
}

/** `dir` relative to `cwd` when it is inside it, else absolute. */
function display(cwd: string, dir: string): string {
  const relative = path.relative(cwd, dir);
  return relative === '' ? '.' : relative.startsWith('..') || path.isAbsolute(relative) ? dir : `./${relative}`;
}
