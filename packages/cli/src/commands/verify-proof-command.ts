import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { OffchannelError, verifyRecordProof } from '@offchannel/core';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { loadVerifierKeys } from '../keys.ts';
import { UsageError } from '../usage-error.ts';

export const VERIFY_PROOF_USAGE = `Usage: offchannel verify-proof <proof.json> --key <verifier-key> [--json]

Checks a record proof made by \`offchannel prove\`: the record is canonical and names its
stream and seq, the checkpoint is signed by the given key for that stream's log, and the
inclusion proof puts exactly this record at that position in the signed tree. Needs no archive.

Options:
  --key <key|file>   verifier key text (name+id+base64) or a file of them (repeatable, required)
  --json             print the result as JSON
  -h, --help         show this help

Exit status: 0 the proof holds, 1 it does not, 2 usage error.`;

export async function verifyProofCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { key: { type: 'string', multiple: true }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
  });
  if (values.help) {
    io.stdout.write(`${VERIFY_PROOF_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError('verify-proof needs exactly one <proof.json>');
  if (!values.key?.length) throw new UsageError('verify-proof needs --key <verifier-key>: a proof means nothing without the key it must be signed by');
  const verifiers = await loadVerifierKeys(values.key);
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
    const result = { ok: true, stream: record.stream, seq: record.seq, kind: record.kind, sentAt: record.sentAt, treeSize: checkpoint.size, root: Buffer.from(checkpoint.root).toString('hex'), signedBy };
    if (values.json) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      io.stdout.write(
        `OK: record seq ${record.seq} of stream ${record.stream} (${record.kind}${record.sentAt ? `, sent ${record.sentAt}` : ''}) is in the log signed by ${signedBy.join(', ')} at tree size ${checkpoint.size}, root ${result.root}.\n`,
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
