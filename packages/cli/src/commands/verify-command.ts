import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  type CosignatureVerifier,
  type VerificationReport,
  type VerifiedAttestation,
  type VerifiedCheckpoint,
  canonicalize,
  readVerifiedAttestations,
  readVerifiedState,
  sha256Hex,
  signNote,
  verifiedStateOf,
  verifyArchive,
} from '@offchannel/core';
import { S3_OPTIONS, S3_USAGE, openArchiveForCommand } from '../archive-location.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { createLogger } from '../create-logger.ts';
import { formatBytes, plural, shortHash } from '../format.ts';
import { loadCertificates, loadSigningKey, loadVerifierKeys, loadWitnessVerifierKeys } from '../keys.ts';
import { UsageError } from '../usage-error.ts';
import { CLI_PACKAGE } from '../version.ts';

export const VERIFY_USAGE = `Usage: offchannel verify <archive-dir | s3://bucket/prefix> [--key <verifier-key>] [options]

Checks every stream of an archive: canonical bytes, schema, hashes, prev links, contiguous
seq, unique keys, every referenced blob's SHA-256 and size, and the archive's physical audit
(segment seals on disk; Object Lock state of every object in S3).
With --key it also checks the signed checkpoints: every signature, that each signed root is
the root of the records, consistency between successive checkpoints, equivocation, and RFC 3161
timestamps; a stream with records but no valid checkpoint then fails. It also checks the host
attestations (attestations/): every signature, each host's chain (none deleted, altered or
replaced), and that every attested stream head is the root of that stream's records.
With --witness it also applies a witness policy: each stream's newest checkpoint must carry
valid cosignatures from --quorum of the named witnesses (default: all), and every record must
be covered by such a checkpoint (records after it may have been rewritten after the newest
checkpoints were deleted). Missing, invalid and replaced cosignatures are named.
Reads only; needs no secrets and no access to the capture host. See docs/verification.md.

Options:
  --key <key|file>      verifier key (name+id+base64) or a file of them (repeatable)
  --checkpoint <file>   a checkpoint note obtained elsewhere, checked for equivocation (repeatable)
  --tsa-cert <file>     trusted TSA certificate(s), PEM, for RFC 3161 tokens (repeatable)
  --witness <key|file>  a witness verifier key (keygen --witness), or a file of them (repeatable)
  --quorum <n>          cosignatures needed from the --witness keys (default: every one named)
  --report <file>       write the JSON report, signed with --report-key, to <file>
  --report-key <file>   the verifier's own signing key for --report (see offchannel keygen)
  --json                print the full report as JSON on stdout
  --stream <name>       verify only this stream (repeatable)
  --since <file>        incremental: continue from the state an earlier --save wrote; read only
                        what came after each stream's saved checkpoint and prove the newer
                        checkpoints consistent with it (needs --key)
  --save <file>         after a verification that passed, write the state to continue from
                        (each stream's newest verified checkpoint and each host's newest
                        attestation; with --since, moved forward)
  --quick               check blobs exist with the right size, without hashing their content
  --log-level <lvl>     diagnostics on stderr (default warn)
  -h, --help            show this help

${S3_USAGE}

Exit status: 0 intact, 1 not intact (the first failure names stream and seq), 2 usage error.`;

export async function verifyCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      key: { type: 'string', multiple: true },
      checkpoint: { type: 'string', multiple: true },
      'tsa-cert': { type: 'string', multiple: true },
      witness: { type: 'string', multiple: true },
      quorum: { type: 'string' },
      report: { type: 'string' },
      'report-key': { type: 'string' },
      json: { type: 'boolean', default: false },
      stream: { type: 'string', multiple: true },
      quick: { type: 'boolean', default: false },
      since: { type: 'string' },
      save: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...S3_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(`${VERIFY_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('verify needs exactly one <archive-dir> or s3://bucket/prefix');
  if ((values.report === undefined) !== (values['report-key'] === undefined)) throw new UsageError('--report and --report-key go together: the report is signed with your key');
  if ((values.checkpoint?.length || values['tsa-cert']?.length) && !values.key?.length) throw new UsageError('--checkpoint and --tsa-cert need --key');
  if ((values.since !== undefined || values.save !== undefined) && !values.key?.length) throw new UsageError('--since and --save need --key: the saved state is a signed checkpoint per stream');
  const saved = values.since === undefined ? undefined : await loadVerifiedState(values.since);
  const since = saved?.streams;
  const logger = createLogger(values['log-level'], io.env);
  const verifiers = values.key ? await loadVerifierKeys(values.key) : undefined;
  const tsaCertificates = values['tsa-cert'] ? await loadCertificates(values['tsa-cert']) : undefined;
  const { witnesses, quorum } = await witnessPolicy(values.witness, values.quorum, values.key?.length ?? 0);
  const reportKey = values['report-key'] === undefined ? undefined : await loadSigningKey(values['report-key']);
  const extraCheckpoints: Uint8Array[] = [];
  for (const file of values.checkpoint ?? []) {
    try {
      extraCheckpoints.push(await readFile(file));
    } catch {
      throw new UsageError(`--checkpoint ${file} cannot be read`);
    }
  }
  const opened = await openArchiveForCommand('verify', positionals[0] as string, values, logger, io);
  if (opened === EXIT_USAGE) return EXIT_USAGE;
  const { sink, label } = opened;
  let report: VerificationReport;
  try {
    const progress = !values.json && io.stderr.isTTY === true;
    report = await verifyArchive(sink, {
      blobContent: !values.quick,
      ...(values.stream ? { streams: values.stream } : {}),
      ...(verifiers ? { verifiers } : {}),
      ...(extraCheckpoints.length > 0 ? { extraCheckpoints } : {}),
      ...(tsaCertificates ? { tsaCertificates } : {}),
      ...(witnesses.length > 0 ? { witnesses, quorum } : {}),
      ...(since ? { since } : {}),
      ...(saved ? { sinceAttestations: saved.attestations } : {}),
      ...(progress ? { onProgress: ({ stream, seq }) => io.stderr.write(`\r  verifying ${stream} … seq ${seq}\u001b[K`) } : {}),
    });
    if (progress) io.stderr.write('\r\u001b[K');
  } finally {
    await sink.close();
  }
  if (values.report !== undefined && reportKey) {
    const body = {
      format: 'offchannel-verification-report',
      v: 1,
      generatedAt: new Date().toISOString(),
      tool: { package: CLI_PACKAGE.name, version: CLI_PACKAGE.version },
      archive: label,
      keys: (verifiers ?? []).map((verifier) => verifier.name),
      tsaCertificates: (tsaCertificates ?? []).map((certificate) => certificate.fingerprint256),
      ...(witnesses.length > 0 ? { witnesses: witnesses.map((witness) => witness.verifierKey), quorum } : {}),
      report,
    };
    const digest = sha256Hex(Buffer.from(canonicalize(body), 'utf8'));
    const signature = signNote(`offchannel verification report\nsha256 ${digest}\n`, [reportKey]);
    await writeFile(values.report, `${JSON.stringify({ ...body, signature: { verifierKey: reportKey.verifierKey, covers: 'sha256 of the canonical JSON (RFC 8785) of this object without "signature"', note: signature } }, null, 2)}\n`);
  }
  if (values.save !== undefined && report.ok) await writeFile(values.save, verifiedStateOf(report, new Date(), since));
  if (values.json) io.stdout.write(`${JSON.stringify({ archive: label, ...report }, null, 2)}\n`);
  else io.stdout.write(humanReport(label, report, verifiers !== undefined, since !== undefined));
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

/** `--witness` keys and `--quorum` (default: all named). Shared with verify-proof. */
export async function witnessPolicy(values: readonly string[] | undefined, quorumText: string | undefined, logKeys: number): Promise<{ witnesses: CosignatureVerifier[]; quorum: number }> {
  const witnesses = values?.length ? await loadWitnessVerifierKeys(values) : [];
  if (quorumText !== undefined && witnesses.length === 0) throw new UsageError('--quorum needs --witness <witness verifier key>');
  if (witnesses.length === 0) return { witnesses, quorum: 0 };
  if (witnesses.length > 0 && logKeys === 0) throw new UsageError('--witness needs --key <log verifier key>: witnesses cosign the checkpoints that key signed');
  const quorum = quorumText === undefined ? witnesses.length : Number(quorumText);
  if (!Number.isInteger(quorum) || quorum < 1 || quorum > witnesses.length) throw new UsageError(`--quorum is a whole number from 1 to the number of --witness keys (${witnesses.length})`);
  return { witnesses, quorum };
}

function humanReport(dir: string, report: VerificationReport, checkedCheckpoints: boolean, incremental: boolean): string {
  const lines = [`Archive ${dir}`];
  if (incremental) lines.push('  incremental (--since): records counted are those after the saved checkpoints; earlier ones were verified before');
  const width = Math.max(0, ...report.streams.map((summary) => summary.stream.length));
  for (const summary of report.streams) {
    lines.push(`  ${summary.ok ? 'ok  ' : 'FAIL'}  ${summary.stream.padEnd(width)}  ${plural(summary.records, 'record').padStart(14)}  head ${summary.head.seq} ${shortHash(summary.head.hash)}`);
    const checkpoints = summary.checkpoints ?? [];
    const latest = checkpoints.at(-1);
    if (latest) {
      const stamped = checkpoints.filter((checkpoint) => checkpoint.timestamp).length;
      lines.push(`        ${' '.repeat(width)}  ${plural(checkpoints.length, 'checkpoint')}, latest at size ${latest.size} signed by ${latest.signedBy}${stamped > 0 ? `, ${stamped} timestamped (latest ${latest.timestamp?.genTime ?? 'none'})` : ''}`);
      // Under an archive log a stream checkpoint is witnessed by inclusion (summary below), not cosigned itself.
      if (latest.cosignedBy && !(report.archiveLogs && latest.cosignedBy.length === 0)) {
        const cosigned = latest.cosignedBy.map((entry) => `${entry.witness} at ${entry.time}`).join(', ');
        lines.push(`        ${' '.repeat(width)}  latest cosigned by ${latest.cosignedBy.length} witness${latest.cosignedBy.length === 1 ? '' : 'es'}${cosigned ? `: ${cosigned}` : ''}`);
      }
    }
  }
  if (report.streams.length === 0) lines.push('  (no streams)');
  for (const log of report.archiveLogs ?? []) {
    const by = log.witnesses.length > 0 ? ` cosigned by ${log.witnesses.join(', ')}` : '';
    lines.push(`  archive log ${log.log}: ${log.size} entr${log.size === 1 ? 'y' : 'ies'}; witnessed archive checkpoint at size ${log.witnessedSize}${by}; stream checkpoints are witnessed by inclusion in it`);
  }
  for (const host of report.attestations ?? []) {
    const last = host.last ? `, latest #${host.last.seq}${host.last.time ? ` at ${host.last.time}` : ''}` : '';
    lines.push(`  attestations of host ${host.host}: ${host.verified} verified${incremental ? ' since the saved state' : ''}${last}`);
  }
  lines.push(`  blobs: ${report.blobsChecked} hashed (${formatBytes(report.blobBytes)})`);
  if (!checkedCheckpoints) lines.push('  checkpoints: not checked (give --key <verifier key> to check signatures and detect rewrites)');
  for (const warning of report.warnings.slice(0, 20)) lines.push(`  warning: ${warning.message} [${warning.code}]`);
  const [first, ...rest] = report.failures;
  if (!first) {
    const warned = report.warnings.length > 0 ? `; ${plural(report.warnings.length, 'warning')} (see above)` : '';
    lines.push(`OK: archive intact — ${plural(report.streams.length, 'stream')}, ${plural(report.streams.reduce((sum, summary) => sum + summary.records, 0), 'record')}${checkedCheckpoints ? ', checkpoints verified' : ''}${warned}.`);
  } else {
    const tag = (failure: { severity?: string }) => (failure.severity === 'critical' ? 'CRITICAL ' : '');
    lines.push(`FAIL: ${tag(first)}${first.message} [${first.code}]`);
    for (const failure of rest.slice(0, 20)) lines.push(`  also: ${tag(failure)}${failure.message} [${failure.code}]`);
    if (rest.length > 20) lines.push(`  … and ${rest.length - 20} more (use --json for all)`);
  }
  return `${lines.join('\n')}\n`;
}

async function loadVerifiedState(file: string): Promise<{ readonly streams: ReadonlyMap<string, VerifiedCheckpoint>; readonly attestations: ReadonlyMap<string, VerifiedAttestation> }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UsageError(`--since ${file} cannot be read; give the file an earlier \`offchannel verify --save\` wrote`);
  }
  try {
    return { streams: readVerifiedState(text), attestations: readVerifiedAttestations(text) };
  } catch (error) {
    throw new UsageError(`--since ${file}: ${(error as Error).message}`);
  }
}
