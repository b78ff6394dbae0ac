import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EXPORT_FORMATS, type ExportFormat, exportArchive } from '@offchannel/export';
import { S3_OPTIONS, S3_USAGE, openArchiveForCommand } from '../archive-location.ts';
import { type CliIo, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { formatBytes, plural } from '../format.ts';
import { loadCertificates, loadVerifierKeys } from '../keys.ts';
import { ProgressLine } from '../progress-line.ts';
import { UsageError } from '../usage-error.ts';
import { CLI_PACKAGE } from '../version.ts';

export const EXPORT_USAGE = `Usage: offchannel export <archive-dir | s3://bucket/prefix> --format <fmt>[,<fmt>…] --out <dir> [options]

Verifies the archive, then writes the selected conversations for review and production:
  rsmf   Relativity Short Message Format 2.0: one .rsmf (EML + rsmf.zip) per conversation,
         split every 10,000 events; edits inline, deleted messages with their text, reactions,
         threads, provenance (stream, seq, record SHA-256, checkpoint) on every event
  eml    one .eml per record (--eml-mode message) or per conversation and day (--eml-mode day),
         stable Message-IDs, threading headers, attachments
  jsonl  the records themselves, one per line, each with its inclusion proof against the
         newest signed checkpoint (check a line with offchannel verify-proof)
  html   one self-contained page per conversation, readable like a chat: every edit with its
         history, deleted messages struck through with their original text, reactions,
         attachments, and the verification result
Also writes export-summary.json and SHA256SUMS (check with: cd <dir> && sha256sum -c SHA256SUMS).
An archive that does not verify is not exported (exit 1, naming the first failure). Attachments
are written as <sha256>.<ext>, the extension from an allowlist of inert types (else .bin).
Working files (the temporary index) live in a private directory beside --out and are removed
at the end, on error and on Ctrl-C / SIGTERM.

Options:
  --format <fmt>        rsmf, eml, jsonl, html; repeat or comma-separate (required)
  --out <dir>           output directory; created, must be empty (required)
  --key <key|file>      the archive signer's verifier key(s): checks signed checkpoints and adds
                        inclusion proofs to JSONL (repeatable; strongly recommended)
  --tsa-cert <file>     trusted TSA certificate(s), PEM (repeatable; needs --key)
  --stream <name>       only this stream (repeatable)
  --conversation <id>   only this conversation (platform id; repeatable)
  --from <time>         from this date (2026-11-20, UTC) or date-time with offset (inclusive)
  --to <time>           to this date (inclusive) or date-time with offset (exclusive)
  --eml-mode <mode>     message (default) or day
  --json                print the result as JSON
  --log-level <lvl>     diagnostics on stderr (default warn)
  -h, --help            show this help

${S3_USAGE}

Exit status: 0 exported, 1 the archive did not verify or output failed, 2 usage error.`;

export async function exportCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      format: { type: 'string', multiple: true },
      out: { type: 'string' },
      key: { type: 'string', multiple: true },
      'tsa-cert': { type: 'string', multiple: true },
      stream: { type: 'string', multiple: true },
      conversation: { type: 'string', multiple: true },
      from: { type: 'string' },
      to: { type: 'string' },
      'eml-mode': { type: 'string', default: 'message' },
      json: { type: 'boolean', default: false },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...S3_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(`${EXPORT_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('export needs exactly one <archive-dir> or s3://bucket/prefix');
  if (values.out === undefined) throw new UsageError('--out <dir> is required (a new or empty directory)');
  const formats = (values.format ?? []).flatMap((value) => value.split(',')).map((value) => value.trim().toLowerCase()).filter((value) => value !== '');
  if (formats.length === 0) throw new UsageError(`--format is required: ${EXPORT_FORMATS.join(', ')}`);
  for (const format of formats) if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new UsageError(`unknown --format "${format}": use ${EXPORT_FORMATS.join(', ')}`);
  const emlMode = values['eml-mode'];
  if (emlMode !== 'message' && emlMode !== 'day') throw new UsageError('--eml-mode must be message or day');
  if (values['tsa-cert']?.length && !values.key?.length) throw new UsageError('--tsa-cert needs --key');
  const logger = createLogger(values['log-level'], io.env);
  const local = (value: string): string => (existsSync(path.resolve(io.cwd, value)) ? path.resolve(io.cwd, value) : value);
  const verifiers = values.key ? await loadVerifierKeys(values.key.map(local)) : undefined;
  const tsaCertificates = values['tsa-cert'] ? await loadCertificates(values['tsa-cert'].map((file) => path.resolve(io.cwd, file))) : undefined;
  const location = positionals[0] as string;
  const out = path.resolve(io.cwd, values.out);

  const opened = await openArchiveForCommand('export', location.startsWith('s3://') ? location : path.resolve(io.cwd, location), values, logger, io);
  if (opened === EXIT_USAGE) return EXIT_USAGE;
  const progress = new ProgressLine(io, !values.json);
  let result;
  try {
    result = await exportArchive({
      sink: opened.sink,
      out,
      formats: formats as ExportFormat[],
      ...(verifiers ? { verifiers } : {}),
      ...(tsaCertificates ? { tsaCertificates } : {}),
      ...(values.stream ? { streams: values.stream } : {}),
      ...(values.conversation ? { conversations: values.conversation } : {}),
      ...(values.from === undefined ? {} : { from: values.from }),
      ...(values.to === undefined ? {} : { to: values.to }),
      emlMode,
      generator: `${CLI_PACKAGE.name} ${CLI_PACKAGE.version}`,
      logger,
      // Ctrl-C / SIGTERM: stop at the next step, remove the working files, exit 1.
      signal: io.signal,
      onProgress: ({ phase, done, total }) => {
        progress.update(phase === 'verify' ? 'verifying' : phase === 'index' ? 'indexing' : `writing ${phase}`, done, total, phase === 'eml' ? 'files' : phase === 'verify' || phase === 'index' || phase === 'jsonl' ? 'records' : 'events');
      },
    });
  } finally {
    progress.done();
    await opened.sink.close();
  }
  if (values.json) {
    io.stdout.write(`${JSON.stringify({ archive: opened.label, out: result.out, conversations: result.conversations, counts: result.counts, files: result.files.length, verified: result.verification.ok }, null, 2)}\n`);
    return EXIT_OK;
  }
  const bytes = result.files.reduce((sum, file) => sum + file.size, 0);
  const counts = Object.entries(result.counts).map(([format, count]) => `${format} ${count.toLocaleString('en-US')} ${format === 'eml' ? 'files' : format === 'jsonl' ? 'lines' : 'events'}`);
  io.stdout.write(
    [
      `Exported ${opened.label} → ${result.out}`,
      `  verified first: ${plural(result.verification.streams.length, 'stream')}, ${plural(result.verification.streams.reduce((sum, stream) => sum + stream.records, 0), 'record')}${verifiers ? ', signed checkpoints checked' : ' (checkpoints NOT checked: give --key)'}`,
      `  ${plural(result.conversations, 'conversation')}: ${counts.join(', ')}`,
      `  ${plural(result.files.length, 'file')} (${formatBytes(bytes)}); check them with: (cd ${path.relative(io.cwd, result.out) || '.'} && sha256sum -c SHA256SUMS)`,
    ].join('\n') + '\n',
  );
  return EXIT_OK;
}
