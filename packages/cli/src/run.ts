import { OffchannelError } from '@offchannel/core';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from './cli-io.ts';
import { CAPTURE_USAGE, captureCommand } from './commands/capture-command.ts';
import { COPY_USAGE, copyCommand } from './commands/copy-command.ts';
import { COVERAGE_USAGE, coverageCommand } from './commands/coverage-command.ts';
import { DELIVER_USAGE, deliverCommand } from './commands/deliver-command.ts';
import { DEMO_USAGE, demoCommand } from './commands/demo-command.ts';
import { EXPORT_USAGE, exportCommand } from './commands/export-command.ts';
import { KEYGEN_USAGE, keygenCommand } from './commands/keygen-command.ts';
import { LEGAL_HOLD_USAGE, legalHoldCommand } from './commands/legal-hold-command.ts';
import { LINK_USAGE, linkCommand } from './commands/link-command.ts';
import { SINK_CHECK_USAGE, sinkCheckCommand } from './commands/sink-check-command.ts';
import { PROVE_USAGE, proveCommand } from './commands/prove-command.ts';
import { RECONCILE_USAGE, reconcileCommand } from './commands/reconcile-command.ts';
import { VERIFY_USAGE, verifyCommand } from './commands/verify-command.ts';
import { VERIFY_PROOF_USAGE, verifyProofCommand } from './commands/verify-proof-command.ts';
import { WITNESS_USAGE, witnessCommand } from './commands/witness-command.ts';
import { KeyLoadError } from './keys.ts';
import { UsageError } from './usage-error.ts';
import { CLI_PACKAGE } from './version.ts';

interface Command {
  readonly run: (argv: readonly string[], io: CliIo) => Promise<number>;
  readonly summary: string;
  readonly usage: string;
  /**
   * The command watches `io.signal` and finishes what it must on SIGINT/SIGTERM (capture makes
   * in-flight records durable; copy finishes the object it is writing). Every other command is
   * stopped at once by a signal: it only reads, or writes through a temporary file and rename.
   */
  readonly stopsGracefully?: true;
}

const COMMANDS: Record<string, Command> = {
  capture: { stopsGracefully: true, run: captureCommand, summary: 'run the configured connectors into the archive until stopped (offchannel.config.json)', usage: CAPTURE_USAGE },
  link: { stopsGracefully: true, run: (argv, io) => linkCommand(argv, io), summary: 'link this host to an employee account (WhatsApp, Signal: QR code; Telegram: login)', usage: LINK_USAGE },
  reconcile: { stopsGracefully: true, run: (argv, io) => reconcileCommand(argv, io), summary: "compare a Telegram account's recent history, an iMessage chat.db, or (asking the phone) a WhatsApp account's chats around each gap, with the archive and record what is missing", usage: RECONCILE_USAGE },
  demo: { run: demoCommand, summary: 'record a generated exchange into an archive and verify it (offline)', usage: DEMO_USAGE },
  verify: { run: verifyCommand, summary: 'check an archive: chain, blobs, seals; with --key, signed checkpoints', usage: VERIFY_USAGE },
  coverage: { run: (argv, io) => coverageCommand(argv, io), summary: 'show per custodian and channel whether capture ran over a period: gaps with cause, daily counts', usage: COVERAGE_USAGE },
  export: { run: exportCommand, summary: 'write RSMF, EML, JSONL (with proofs) or HTML transcripts from a verified archive', usage: EXPORT_USAGE },
  deliver: { stopsGracefully: true, run: deliverCommand, summary: "feed the firm's existing archive by SMTP journaling, with a receipt for every message", usage: DELIVER_USAGE },
  keygen: { run: keygenCommand, summary: 'create a checkpoint signing key (or a state-store, identifier or witness key)', usage: KEYGEN_USAGE },
  prove: { run: proveCommand, summary: "write a proof that one record is in the archive's signed log", usage: PROVE_USAGE },
  'verify-proof': { run: verifyProofCommand, summary: 'check a record proof with only the verifier key', usage: VERIFY_PROOF_USAGE },
  copy: { stopsGracefully: true, run: copyCommand, summary: 'copy an archive, byte for byte, between directories and S3 buckets (resumable)', usage: COPY_USAGE },
  'sink-check': { run: sinkCheckCommand, summary: 'check that an S3 store really enforces Object Lock (run before trusting it)', usage: SINK_CHECK_USAGE },
  witness: { stopsGracefully: true, run: witnessCommand, summary: 'run an independent witness that cosigns consistent checkpoints (C2SP tlog-witness)', usage: WITNESS_USAGE },
  'legal-hold': { run: legalHoldCommand, summary: 'place or lift an S3 legal hold on a stream or one record', usage: LEGAL_HOLD_USAGE },
};

export const USAGE = `offchannel ${CLI_PACKAGE.version} — capture business messages into a verifiable, write-once archive

Usage: offchannel <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, command]) => `  ${name.padEnd(12)} ${command.summary}`)
  .join('\n')}

Run "offchannel <command> --help" for a command's options.`;

/**
 * Whether the command `name` handles SIGINT/SIGTERM itself (through `io.signal`). If not, the
 * process is ended by the signal at once, whatever the command is waiting for — a FIFO, a
 * stalled server, a long verification.
 */
export function stopsGracefully(name: string | undefined): boolean {
  return name !== undefined && COMMANDS[name]?.stopsGracefully === true;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    io.stdout.write(`${USAGE}\n`);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`${CLI_PACKAGE.version}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr.write(`offchannel: unknown command "${name}"\n\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof KeyLoadError) {
      io.stderr.write(`offchannel ${name}: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (error instanceof UsageError || (error as { code?: unknown }).code?.toString().startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`offchannel ${name}: ${(error as Error).message}\n\n${command.usage}\n`);
      return EXIT_USAGE;
    }
    if (OffchannelError.hasCode(error, 'CONFIG_INVALID')) {
      io.stderr.write(`offchannel ${name}: ${error.message} [${error.code}]\n`);
      return EXIT_USAGE;
    }
    if (OffchannelError.isInstance(error)) {
      io.stderr.write(`offchannel ${name}: ${error.message} [${error.code}]\n`);
      return EXIT_FAILED;
    }
    throw error;
  }
}
