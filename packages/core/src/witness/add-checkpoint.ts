/**
 * The body of a c2sp.org/tlog-witness `add-checkpoint` request:
 *
 *   old <size>\n
 *   <base64 consistency proof hash>\n   (0 to 63 lines; none when the old size is 0)
 *   \n
 *   <checkpoint note, with its signatures>
 *
 * Shared by the witness (`offchannel witness serve`) and the capture host's witness client.
 */
import { WitnessError } from '../errors/witness-errors.ts';
import { HASH_BYTES } from '../merkle/merkle-hash.ts';

/** Most consistency proof lines a client may send (the spec's limit). */
export const MAX_PROOF_LINES = 63;
/** Largest request body a witness accepts, in bytes (a note, a few signatures, 63 hashes). */
export const MAX_ADD_CHECKPOINT_BYTES = 64 * 1024;

export interface AddCheckpointRequest {
  readonly oldSize: number;
  readonly proof: readonly Uint8Array[];
  /** The checkpoint note, exactly as sent (text, blank line, signature lines). */
  readonly note: string;
}

const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function formatAddCheckpoint(request: AddCheckpointRequest): string {
  if (!Number.isSafeInteger(request.oldSize) || request.oldSize < 0) throw malformed('the old size is a non-negative integer');
  if (request.proof.length > MAX_PROOF_LINES) throw malformed(`a consistency proof has at most ${MAX_PROOF_LINES} hashes`);
  const lines = request.proof.map((hash) => `${Buffer.from(hash).toString('base64')}\n`).join('');
  return `old ${request.oldSize}\n${lines}\n${request.note}`;
}

/** Parses a request body. Throws `WitnessError` WITNESS_REQUEST_MALFORMED saying which rule failed. */
export function parseAddCheckpoint(body: Uint8Array): AddCheckpointRequest {
  if (body.length > MAX_ADD_CHECKPOINT_BYTES) throw malformed(`a request body is at most ${MAX_ADD_CHECKPOINT_BYTES} bytes`);
  let text: string;
  try {
    text = strictDecoder.decode(body);
  } catch {
    throw malformed('the body is not UTF-8');
  }
  const blank = text.indexOf('\n\n');
  if (blank < 0) throw malformed('the body needs an old size line, proof lines, a blank line and the checkpoint');
  const head = text.slice(0, blank).split('\n');
  const note = text.slice(blank + 2);
  const sizeMatch = /^old (0|[1-9][0-9]{0,15})$/.exec(head[0] ?? '');
  if (!sizeMatch || !Number.isSafeInteger(Number(sizeMatch[1]))) throw malformed('the first line is "old <size>" in decimal without leading zeros');
  const proofLines = head.slice(1);
  if (proofLines.length > MAX_PROOF_LINES) throw malformed(`a consistency proof has at most ${MAX_PROOF_LINES} lines`);
  const proof = proofLines.map((line) => {
    const hash = Buffer.from(line, 'base64');
    if (hash.length !== HASH_BYTES || hash.toString('base64') !== line) throw malformed('each proof line is the base64 of a 32-byte hash');
    return new Uint8Array(hash);
  });
  const oldSize = Number(sizeMatch[1]);
  if (oldSize === 0 && proof.length > 0) throw malformed('the proof is empty when the old size is 0');
  return { oldSize, proof, note };
}

/** Parses a 409 answer (`<size>\n`, text/x.tlog.size). Undefined when it is not one. */
export function parseConflictSize(body: string): number | undefined {
  const match = /^(0|[1-9][0-9]{0,15})\n$/.exec(body);
  return match && Number.isSafeInteger(Number(match[1])) ? Number(match[1]) : undefined;
}

function malformed(message: string): WitnessError {
  return new WitnessError('WITNESS_REQUEST_MALFORMED', `add-checkpoint: ${message}`, { disposition: 'rejected-input', logSafe: true });
}
