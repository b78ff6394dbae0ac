import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { assertKeyName, generateCosigner, generateEd25519NoteKey, generateStateKey } from '@offchannel/core';
import { type CliIo, EXIT_OK } from '../cli-io.ts';
import { UsageError } from '../usage-error.ts';

export const KEYGEN_USAGE = `Usage: offchannel keygen --out <file> [--name <key-name>]
       offchannel keygen --state --out <file>
       offchannel keygen --identifier-key --out <file>
       offchannel keygen --witness --out <file> [--name <witness-name>]

Writes a new Ed25519 signing key for checkpoints (C2SP signed-note format) to <file>, mode 0600,
and the matching verifier key to <file>.pub. Prints the verifier key as the last line: give it
to your auditors; they need nothing else to verify the archive's signed checkpoints.

With --state, writes a new 32-byte key for the encrypted session-state store instead.
With --identifier-key, writes the capture policy's identifier key (32 random bytes as hex):
excluded contacts and conversations are recorded only as HMAC-SHA256 under it. Keep a copy
with the firm's records; an examiner given it can check whether a contact was excluded.
With --witness, writes a witness key (C2SP tlog-cosignature, type 0x04) for
\`offchannel witness serve\` and prints its verifier key as the last line: put it in the capture
config's signing.witnesses and give it to verifiers (\`verify --witness\`).
Never overwrites an existing file.

Options:
  --out <file>       where to write the key (required)
  --name <name>      the key's name, e.g. archive.firm.example/offchannel (default offchannel.<hostname>)
  --state            write a state-store key instead of a signing key
  --identifier-key   write a capture-policy identifier key instead of a signing key
  --witness          write a witness key (default name witness.<hostname>)
  -h, --help         show this help`;

export async function keygenCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      name: { type: 'string' },
      state: { type: 'boolean', default: false },
      'identifier-key': { type: 'boolean', default: false },
      witness: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${KEYGEN_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError('keygen takes no positional arguments');
  if (values.out === undefined) throw new UsageError('keygen needs --out <file>');
  if ([values.state, values['identifier-key'], values.witness].filter(Boolean).length > 1) throw new UsageError('give one of --state, --identifier-key and --witness');
  if (values['identifier-key']) {
    if (values.name !== undefined) throw new UsageError('--name applies to signing keys, not --identifier-key keys');
    await writeSecret(values.out, `${randomBytes(32).toString('hex')}\n`);
    io.stdout.write(`Wrote a capture-policy identifier key to ${values.out} (mode 0600). Set "policy": {"identifierKeyFile": …} in the config, and keep a copy with the firm's records: examiners need it to check exclusions.\n`);
    return EXIT_OK;
  }
  if (values.state) {
    if (values.name !== undefined) throw new UsageError('--name applies to signing keys, not --state keys');
    await writeSecret(values.out, `${generateStateKey()}\n`);
    io.stdout.write(`Wrote a state-store key to ${values.out} (mode 0600). Keep it with the capture host's secrets; without it the session state cannot be read.\n`);
    return EXIT_OK;
  }
  const host = hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-');
  const name = values.name ?? (values.witness ? `witness.${host}` : `offchannel.${host}`);
  try {
    assertKeyName(name);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.witness) {
    const witness = generateCosigner(name);
    await writeSecret(values.out, `${witness.signerKeyText()}\n`);
    await writePublic(`${values.out}.pub`, `${witness.verifierKey}\n`);
    io.stdout.write(`Wrote witness key ${name} to ${values.out} (mode 0600) and its verifier key to ${values.out}.pub.\nKeep the witness key secret. Capture hosts and verifiers need the verifier key:\n${witness.verifierKey}\n`);
    return EXIT_OK;
  }
  const key = generateEd25519NoteKey(name);
  await writeSecret(values.out, `${key.signerKeyText()}\n`);
  await writePublic(`${values.out}.pub`, `${key.verifierKey}\n`);
  io.stdout.write(`Wrote signing key ${name} to ${values.out} (mode 0600) and its verifier key to ${values.out}.pub.\nKeep the signing key secret. Give auditors the verifier key:\n${key.verifierKey}\n`);
  return EXIT_OK;
}

async function writeSecret(file: string, text: string): Promise<void> {
  let handle;
  try {
    handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${file} already exists; keygen never overwrites a key. Choose another --out.`);
    throw error;
  }
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writePublic(file: string, text: string): Promise<void> {
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
  try {
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}
