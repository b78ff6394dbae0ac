import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { OffchannelError, buildArchiveLogInclusion, buildRecordProof } from '@offchannel/core';
import { S3_OPTIONS, S3_USAGE, openArchiveForCommand } from '../archive-location.ts';
import { createLogger } from '../create-logger.ts';
import { type CliIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../cli-io.ts';
import { UsageError } from '../usage-error.ts';

export const PROVE_USAGE = `Usage: offchannel prove <archive-dir | s3://bucket/prefix> <stream> <seq> [--out proof.json] [--size <n>]

Writes a proof that record <seq> of <stream> is in the archive's signed log: the record itself,
its RFC 9162 inclusion proof and the signed checkpoint (the newest, or the one of size <n>).
Check it anywhere with \`offchannel verify-proof proof.json --key <verifier key>\` — no archive
needed, and no other record revealed.

Options:
  --out <file>   write the proof here (default: stdout)
  --size <n>     prove against the checkpoint of this tree size
  -h, --help     show this help

${S3_USAGE}`;

export async function proveCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { out: { type: 'string' }, size: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false }, ...S3_OPTIONS },
  });
  if (values.help) {
    io.stdout.write(`${PROVE_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length !== 3) throw new UsageError('prove needs <archive> <stream> <seq>');
  const [location, stream, seqText] = positionals as [string, string, string];
  const seq = Number(seqText);
  if (!/^[1-9][0-9]*$/.test(seqText) || !Number.isSafeInteger(seq)) throw new UsageError('<seq> must be a positive integer');
  const size = values.size === undefined ? undefined : Number(values.size);
  if (size !== undefined && (!Number.isSafeInteger(size) || size < 1)) throw new UsageError('--size must be a positive integer');
  const opened = await openArchiveForCommand('prove', location, values, createLogger(undefined, io.env), io);
  if (opened === EXIT_USAGE) return EXIT_USAGE;
  const { sink } = opened;
  try {
    const built = await buildRecordProof(sink, stream, seq, size === undefined ? {} : { size });
    // With an archive log, the checkpoint's inclusion in the newest (witnessed) archive checkpoint.
    const archiveLog = await buildArchiveLogInclusion(sink, stream, built.treeSize);
    const proof = archiveLog ? { ...built, archiveLog } : built;
    const text = `${JSON.stringify(proof, null, 2)}\n`;
    if (values.out === undefined) io.stdout.write(text);
    else {
      await writeFile(values.out, text);
      io.stderr.write(`wrote the proof of ${stream} seq ${seq} (tree size ${proof.treeSize}, ${proof.inclusion.length} hashes) to ${values.out}\n`);
    }
    return EXIT_OK;
  } catch (error) {
    if (OffchannelError.isInstance(error) || error instanceof RangeError) {
      io.stderr.write(`offchannel prove: ${error.message}\n`);
      return EXIT_FAILED;
    }
    throw error;
  } finally {
    await sink.close();
  }
}
