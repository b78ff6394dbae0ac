import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_SECRET_FILE_BYTES, type Sink, readSmallFile } from '@offchannel/core';
import { DELIVERY_MODES, type DeliveryMode, type DeliveryReport, type DeliveryTarget, Deliverer, checkDelivery } from '@offchannel/delivery';
import { openFsSink } from '@offchannel/sink-fs';
import { openS3Sink } from '@offchannel/sink-s3';
import { S3_OPTIONS, S3_USAGE, isS3Location, openArchiveForCommand, s3ClientOptions } from '../archive-location.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { plural } from '../format.ts';
import { KeyLoadError, loadCertificates, loadSigningKey, loadVerifierKeys } from '../keys.ts';
import { UsageError } from '../usage-error.ts';
import { CLI_PACKAGE } from '../version.ts';

export const DELIVER_USAGE = `Usage: offchannel deliver <archive-dir | s3://bucket/prefix> --smtp smtp://host:port --to <journal address>
                         --from <address> --state <dir> [options]
       offchannel deliver <archive> --check [--target <name>] [--key <key|file>]

Feeds the firm's existing archive (Smarsh, Global Relay, Proofpoint, Mimecast, Purview …) by SMTP
journaling: each record — or each conversation and UTC day — as the EML that
\`offchannel export --format eml\` writes, verified first, sent to the journaling address in order,
one message at a time. After the server accepts a message (250) a receipt record is written to
the archive's own stream delivery:<target> (record, Message-ID, time, server reply); only then does
the cursor in --state move. Restarted after a crash, delivery resumes where the receipts say; a
message whose outcome was unknown is sent again with the same Message-ID and its receipt says
inDoubt. 4xx replies and connection failures are retried with backoff; a 5xx stops delivery at
that record (exit 1, the record named) and it resumes from there once fixed.

Options:
  --smtp <url>          smtp://host:port (STARTTLS required) or smtps://host:port (implicit TLS)
  --to <address>        the journaling address
  --from <address>      envelope sender
  --state <dir>         cursor and lock (created 0700); one deliverer per target
  --target <name>       names the receipts stream delivery:<name> (default: journal)
  --mode <mode>         record (default): one e-mail per record; day: one transcript per
                        conversation and UTC day, sent once the day is over (+15 min), with
                        records not in a sent transcript following one per record
  --once                deliver what is pending and exit: 0 all delivered, 1 anything not
                        (without it: keep following the archive until SIGINT/SIGTERM)
  --check               compare the archive with the target's receipts and list every record
                        not delivered; exit 1 if anything is missing or does not match
  --user <name>         SMTP AUTH user; the password comes from OFFCHANNEL_SMTP_PASSWORD or
  --password-file <f>   a file only its owner can read (0600); never an option or config value
  --ca <file>           extra trusted CA certificate(s), PEM, for the server's certificate
  --allow-plaintext-loopback
                        allow a server without TLS — only on 127.0.0.1/::1/localhost (tests)
  --key <key|file>      the archive signer's verifier key(s): signed checkpoints are checked
                        before anything is sent (repeatable; strongly recommended)
  --tsa-cert <file>     trusted TSA certificate(s), PEM (repeatable; needs --key)
  --signing-key <file>  sign checkpoints of the receipts stream (the archive's signing key), so
                        \`offchannel verify --key\` covers the receipts too
  --max-per-second <n>  at most n messages per second (the journal's rate limit)
  --poll <seconds>      how often to look for new records when following (default 5)
  --retries <n>         attempts per message before giving up with --once (default 6)
  --json                print the result as JSON
  --log-level <lvl>     diagnostics on stderr (default warn); never message text
  -h, --help            show this help

${S3_USAGE}

Exit status: 0 delivered (or --check found nothing missing), 1 a message could not be delivered,
the archive did not verify, or --check found gaps, 2 usage error.`;

export async function deliverCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      smtp: { type: 'string' },
      to: { type: 'string' },
      from: { type: 'string' },
      state: { type: 'string' },
      target: { type: 'string', default: 'journal' },
      mode: { type: 'string', default: 'record' },
      once: { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      user: { type: 'string' },
      'password-file': { type: 'string' },
      ca: { type: 'string', multiple: true },
      'allow-plaintext-loopback': { type: 'boolean', default: false },
      key: { type: 'string', multiple: true },
      'tsa-cert': { type: 'string', multiple: true },
      'signing-key': { type: 'string' },
      'max-per-second': { type: 'string' },
      poll: { type: 'string', default: '5' },
      retries: { type: 'string', default: '6' },
      json: { type: 'boolean', default: false },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...S3_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(`${DELIVER_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('deliver needs exactly one <archive-dir> or s3://bucket/prefix');
  const logger = createLogger(values['log-level'], io.env);
  const location = positionals[0] as string;
  const resolved = isS3Location(location) ? location : path.resolve(io.cwd, location);
  if (values['tsa-cert']?.length && !values.key?.length) throw new UsageError('--tsa-cert needs --key');
  const verifiers = values.key ? await loadVerifierKeys(values.key.map((value) => (value.includes('+') && !value.includes('/') ? value : path.resolve(io.cwd, value)))) : undefined;
  const tsaCertificates = values['tsa-cert'] ? await loadCertificates(values['tsa-cert'].map((file) => path.resolve(io.cwd, file))) : undefined;

  if (values.check) {
    const opened = await openArchiveForCommand('deliver', resolved, values, logger, io);
    if (opened === EXIT_USAGE) return EXIT_USAGE;
    try {
      const result = await checkDelivery({ archive: opened.sink, target: values.target, ...(verifiers ? { verifiers } : {}), ...(tsaCertificates ? { tsaCertificates } : {}) });
      if (values.json) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else {
        const lines = [`Delivery check of ${opened.label} for target ${values.target}: ${result.ok ? 'OK' : 'NOT COMPLETE'}`, `  ${plural(result.receipts, 'receipt')}, ${plural(result.refusals, 'refusal')}, ${result.inDoubt} in doubt (resent with the same Message-ID)`];
        for (const stream of result.streams) {
          const missing = stream.undelivered.filter((item) => item.hasEmail);
          const none = stream.undelivered.length - missing.length;
          lines.push(`  ${stream.stream}: ${stream.delivered}/${stream.records} delivered${none > 0 ? `, ${none} without an e-mail form` : ''}${missing.length > 0 ? `, NOT DELIVERED: ${missing.map((item) => `seq ${item.seq} (${item.kind}, captured ${item.capturedAt})`).join(', ')}` : ''}`);
          for (const mismatch of stream.hashMismatches) lines.push(`  ${stream.stream} seq ${mismatch.seq}: receipt names record ${mismatch.receipt} but the archive holds ${mismatch.archive}`);
        }
        for (const unknown of result.unknownRecords) lines.push(`  receipt for ${unknown.stream} seq ${unknown.seq}, which the archive does not hold`);
        for (const gap of result.missed) lines.push(`  ${gap.stream} seq ${gap.seqs}: pruned from capture's spool before this target delivered them (recorded as missed); deliver them from this archive`);
        io.stdout.write(`${lines.join('\n')}\n`);
      }
      return result.ok ? EXIT_OK : EXIT_FAILED;
    } finally {
      await opened.sink.close();
    }
  }

  for (const name of ['smtp', 'to', 'from', 'state'] as const) if (values[name] === undefined) throw new UsageError(`--${name} is required`);
  const mode = values.mode === 'message' ? 'record' : values.mode;
  if (!(DELIVERY_MODES as readonly string[]).includes(mode)) throw new UsageError('--mode must be record or day');
  const perSecond = values['max-per-second'] === undefined ? undefined : Number(values['max-per-second']);
  if (perSecond !== undefined && !(perSecond > 0)) throw new UsageError('--max-per-second must be a positive number');
  const pollMs = Number(values.poll) * 1000;
  if (!(pollMs >= 100)) throw new UsageError('--poll must be at least 0.1 seconds');
  const attempts = Number(values.retries);
  if (!Number.isSafeInteger(attempts) || attempts < 1) throw new UsageError('--retries must be a positive whole number');
  const password = await readPassword(values.user, values['password-file'], io);
  const ca = values.ca ? Buffer.concat(await Promise.all(values.ca.map((file) => readFile(path.resolve(io.cwd, file))))) : undefined;
  const signer = values['signing-key'] ? await loadSigningKey(path.resolve(io.cwd, values['signing-key'])) : undefined;
  const target: DeliveryTarget = {
    name: values.target,
    smtp: values.smtp as string,
    to: values.to as string,
    from: values.from as string,
    mode: mode as DeliveryMode,
    ...(values.user === undefined || password === undefined ? {} : { user: values.user, password }),
    ...(ca ? { ca } : {}),
    ...(values['allow-plaintext-loopback'] ? { allowPlaintextLoopback: true } : {}),
    ...(perSecond === undefined ? {} : { maxPerSecond: perSecond }),
  };
  if (!signer) io.stderr.write(`offchannel deliver: no --signing-key: the receipts in delivery:${target.name} get no signed checkpoints, so \`offchannel verify --key\` will flag that stream\n`);

  const opened = await openArchiveForCommand('deliver', resolved, values, logger, io);
  if (opened === EXIT_USAGE) return EXIT_USAGE;
  let receipts: Sink | undefined;
  let deliverer: Deliverer | undefined;
  let report: DeliveryReport | undefined;
  try {
    // Records are read through a read-only handle (capture may be writing them); receipts are
    // appended through a writable one that only ever touches delivery:<target>.
    receipts = isS3Location(resolved) ? await openS3Sink({ ...s3ClientOptions(values), url: resolved, logger }) : await openFsSink({ dir: resolved, logger });
    deliverer = await Deliverer.open({
      archive: opened.sink,
      receipts,
      target,
      stateDir: path.resolve(io.cwd, values.state as string),
      ...(verifiers ? { verifiers } : {}),
      ...(tsaCertificates ? { tsaCertificates } : {}),
      ...(signer ? { checkpoints: { signer } } : {}),
      retry: values.once ? { attempts } : {},
      generator: `${CLI_PACKAGE.name} ${CLI_PACKAGE.version}`,
      logger,
    });
    const status = (pass: DeliveryReport): string =>
      `${target.name}: ${plural(pass.sent, 'message')} sent, backlog ${plural(pass.backlog, 'record')}${pass.backlog > 0 ? `, lag ${Math.round(pass.lagMs / 1000)} s` : ''}${pass.notDue > 0 ? `, ${pass.notDue} waiting for their day to close` : ''}${pass.inDoubt > 0 ? `, ${pass.inDoubt} resent in doubt` : ''}`;
    if (values.once) {
      report = await deliverer.deliverPending(io.signal);
    } else {
      await deliverer.follow({
        signal: io.signal,
        pollMs,
        onPass: (pass) => {
          report = pass;
          logger.info({ deliveryTarget: target.name, sent: pass.sent, backlog: pass.backlog, lagMs: pass.lagMs, notDue: pass.notDue, inDoubt: pass.inDoubt }, 'delivery status');
          if (io.stderr.isTTY === true) io.stderr.write(`\r${status(pass)}\u001b[K`);
        },
      });
      if (io.stderr.isTTY === true) io.stderr.write('\n');
    }
    if (values.json) io.stdout.write(`${JSON.stringify({ archive: opened.label, ...report }, null, 2)}\n`);
    else if (report) io.stdout.write(`Delivered from ${opened.label} to ${target.to} (target ${target.name}, ${target.mode} mode)\n  ${status(report)}\n  ${report.streams.map((item) => `${item.stream} ${item.delivered}/${item.head}`).join(', ')}\n`);
  } finally {
    await deliverer?.close();
    await receipts?.close();
    await opened.sink.close();
  }
  // A pass either delivers everything that is due or throws (refused, unavailable, TLS, auth):
  // the CLI reports a thrown DeliveryError on stderr with exit 1.
  return EXIT_OK;
}

/** The SMTP password: OFFCHANNEL_SMTP_PASSWORD or a file only its owner can read. Never echoed. */
async function readPassword(user: string | undefined, file: string | undefined, io: CliIo): Promise<string | undefined> {
  if (user === undefined) {
    if (file !== undefined) throw new UsageError('--password-file needs --user');
    return undefined;
  }
  if (file !== undefined) {
    const resolved = path.resolve(io.cwd, file);
    let info;
    try {
      info = await stat(resolved);
    } catch {
      throw new KeyLoadError(`password file ${resolved} cannot be read`);
    }
    if ((info.mode & 0o077) !== 0) throw new KeyLoadError(`password file ${resolved} is readable by group or others; run \`chmod 600 ${resolved}\``);
    // Only a regular file: a FIFO in its place is refused, never waited on.
    const refuse = (problem: string): KeyLoadError => new KeyLoadError(`password file ${resolved} ${problem}; it must be a regular file holding only the password (chmod 600)`);
    let text: string;
    try {
      text = (await readSmallFile(resolved, { maxBytes: MAX_SECRET_FILE_BYTES, followLinks: true, refuse })).toString('utf8').replace(/\r?\n$/, '');
    } catch (error) {
      if (error instanceof KeyLoadError) throw error;
      throw new KeyLoadError(`password file ${resolved} cannot be read (${(error as { code?: string }).code ?? 'error'})`);
    }
    if (text === '') throw new KeyLoadError(`password file ${resolved} is empty`);
    return text;
  }
  const fromEnv = io.env.OFFCHANNEL_SMTP_PASSWORD;
  if (fromEnv === undefined || fromEnv === '') throw new UsageError('--user needs a password: set OFFCHANNEL_SMTP_PASSWORD or give --password-file (0600)');
  return fromEnv;
}
