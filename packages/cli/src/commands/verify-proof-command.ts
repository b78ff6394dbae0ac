import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { NoteError, OffchannelError, checkCosignatures, verifyArchiveLogInclusion, verifyRecordProof } from '@offchannel/core';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { loadVerifierKeys } from '../keys.ts';
import { UsageError } from '../usage-error.ts';
import { witnessPolicy } from './verify-command.ts';

export const VERIFY_PROOF_USAGE = `Usage: offchannel verify-proof <proof.json> --key <verifier-key> [--witness <key> …] [--quorum N] [--json]

Checks a record proof made by \`offchannel prove\`: the record is canonical and names its
stream and seq, the checkpoint is signed by the given key for that stream's log, and the
inclusion proof puts exactly this record at that position in the signed tree. Needs no archive.

Options:
  --key <key|file>   verifier key text (name+id+base64) or a file of them (repeatable, required)
  --witness <key>    a witness verifier key (or file): the checkpoint must carry its cosignature
                     (repeatable; the proof's checkpoint carries the cosignatures prove found).
                     With an archive log the proof also carries the checkpoint's inclusion in
                     an archive checkpoint: that one must carry the cosignatures
  --quorum <n>       cosignatures needed from the --witness keys (default: every one named)
  --json             print the result as JSON
  -h, --help         show this help

Exit status: 0 the proof holds, 1 it does not, 2 usage error.`;

export async function verifyProofCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      key: { type: 'string', multiple: true },
      witness: { type: 'string', multiple: true },
      quorum: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${VERIFY_PROOF_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('verify-proof needs exactly one <proof.json>');
  if (!values.key?.length) throw new UsageError('verify-proof needs --key <verifier-key>: a proof means nothing without the key it must be signed by');
  const verifiers = await loadVerifierKeys(values.key);
  const { witnesses, quorum } = await witnessPolicy(values.witness, values.quorum, values.key.length);
  let proof: unknown;
  try {
    const text = await readFile(positionals[0] as string, 'utf8');
    proof = JSON.parse(text);
  } catch (error) {
    io.stderr.write(`offchannel verify-proof: ${positionals[0] as string} is not a readable JSON file (${(error as NodeJS.ErrnoException).code ?? 'invalid JSON'})\n`);
    return EXIT_USAGE;
  }
  try {
    const { record, checkpoint, signedBy } = verifyRecordProof(proof, verifiers);
    // With an archive log the witnesses cosigned the archive checkpoint that includes this one.
    const archiveLogPart = (proof as { archiveLog?: unknown }).archiveLog;
    const archiveLog = witnesses.length > 0 && archiveLogPart !== undefined ? verifyArchiveLogInclusion(archiveLogPart, (proof as { checkpoint: string }).checkpoint, verifiers) : undefined;
    const cosignatures = witnesses.length > 0 ? checkCosignatures(archiveLog?.note ?? (proof as { checkpoint: string }).checkpoint, witnesses) : [];
    const valid = cosignatures.filter((status) => status.state === 'valid');
    const invalid = cosignatures.filter((status) => status.state === 'invalid').map((status) => status.witness);
    if (invalid.length > 0) throw new NoteError('PROOF_INVALID', `the cosignature of witness ${invalid.join(', ')} on the checkpoint does not verify: the checkpoint or the cosignature was altered`);
    if (valid.length < quorum) {
      const missing = cosignatures.filter((status) => status.state === 'missing').map((status) => status.witness);
      throw new NoteError('PROOF_INVALID', `the checkpoint has ${valid.length} valid witness cosignature${valid.length === 1 ? '' : 's'}, the policy needs ${quorum} (missing: ${missing.join(', ')})`);
    }
    const cosignedBy = valid.map((status) => ({ witness: status.witness, time: status.state === 'valid' ? new Date(status.time * 1000).toISOString() : '' }));
    const included = archiveLog ? { archiveLog: { log: archiveLog.log, entry: archiveLog.index + 1, treeSize: archiveLog.checkpoint.size } } : {};
    const result = { ok: true, stream: record.stream, seq: record.seq, kind: record.kind, sentAt: record.sentAt, treeSize: checkpoint.size, root: Buffer.from(checkpoint.root).toString('hex'), signedBy, ...included, ...(witnesses.length > 0 ? { cosignedBy } : {}) };
    if (values.json) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      io.stdout.write(
        `OK: record seq ${record.seq} of stream ${record.stream} (${record.kind}${record.sentAt ? `, sent ${record.sentAt}` : ''}) is in the log signed by ${signedBy.join(', ')} at tree size ${checkpoint.size}, root ${result.root}${archiveLog ? `; that checkpoint is entry ${archiveLog.index + 1} of archive log ${archiveLog.log} at size ${archiveLog.checkpoint.size}` : ''}${cosignedBy.length > 0 ? `, cosigned by ${cosignedBy.map((entry) => `${entry.witness} at ${entry.time}`).join(', ')}` : ''}.\n`,
      );
    }
    return EXIT_OK;
  } catch (error) {
    if (!OffchannelError.isInstance(error)) throw error;
    if (values.json) io.stdout.write(`${JSON.stringify({ ok: false, code: error.code, message: error.message }, null, 2)}\n`);
    else io.stdout.write(`FAIL: ${error.message} [${error.code}]\n`);
    return EXIT_FAILED;
  }
}
