/**
 * Record proofs: one record, its RFC 9162 inclusion proof, and the signed checkpoint it is
 * proven against — enough for anyone holding the verifier key to confirm that this exact
 * record is in the archive's signed log, without the archive and without seeing any other
 * record. This is what a firm hands a regulator or a court for a produced message.
 *
 * The file is JSON:
 *
 * ```json
 * { "format": "offchannel-record-proof", "v": 1,
 *   "stream": "whatsapp:alice@firm.example", "seq": 4211,
 *   "record": "<the record's canonical JSON, exactly as stored>",
 *   "treeSize": 9000, "inclusion": ["<base64 hash>", …],
 *   "checkpoint": "<the C2SP signed checkpoint note>" }
 * ```
 */
import { NoteError } from '../errors/note-errors.ts';
import { HASH_BYTES, leafHash } from '../merkle/merkle-hash.ts';
import { MerkleLevels, inclusionProof } from '../merkle/merkle-proofs.ts';
import { TileSource } from '../merkle/tiles.ts';
import { verifyInclusion } from '../merkle/verify-proofs.ts';
import { type Checkpoint, checkpointOrigin, parseCheckpoint } from '../note/checkpoint.ts';
import { addSignatureLines } from '../note/cosignature.ts';
import type { NoteVerifier } from '../note/ed25519-key.ts';
import { openNote, parseNote } from '../note/signed-note.ts';
import { decodeRecord } from '../record/encode-record.ts';
import { MAX_RECORD_BYTES, type ArchiveRecord } from '../record/record.ts';
import { assertStreamName } from '../record/stream-name.ts';
import type { Sink } from '../sink/sink.ts';
import type { ArchiveLogInclusion } from './archive-log-proof.ts';

export const RECORD_PROOF_FORMAT = 'offchannel-record-proof';

export interface RecordProof {
  readonly format: typeof RECORD_PROOF_FORMAT;
  readonly v: 1;
  readonly stream: string;
  readonly seq: number;
  /** The record's canonical JSON, exactly its stored bytes decoded as UTF-8. */
  readonly record: string;
  /** Size of the tree the checkpoint signs. */
  readonly treeSize: number;
  /** RFC 9162 inclusion path for leaf `seq − 1`, leaf side first, base64. */
  readonly inclusion: readonly string[];
  /** The signed checkpoint note. */
  readonly checkpoint: string;
  /** With an archive log: the checkpoint's inclusion in a witnessed archive checkpoint (see `archive-log-proof.ts`). */
  readonly archiveLog?: ArchiveLogInclusion;
}

/** What a verified proof establishes. */
export interface VerifiedRecordProof {
  readonly record: ArchiveRecord;
  readonly checkpoint: Checkpoint;
  /** Names of the given keys whose signatures on the checkpoint verified. */
  readonly signedBy: readonly string[];
}

const decoder = new TextDecoder();

/**
 * Builds the proof of record `seq` of `stream` against the newest stored checkpoint that
 * covers it (or the one of `options.size`). Uses the stored tiles; if they are missing it
 * recomputes the tree from the records. The proof is checked before it is returned.
 */
export async function buildRecordProof(sink: Sink, stream: string, seq: number, options: { readonly size?: number } = {}): Promise<RecordProof> {
  assertStreamName(stream);
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError('seq must be a positive integer');
  const sizes = await sink.checkpoints(stream);
  const size = options.size ?? sizes.at(-1);
  if (size === undefined || !sizes.includes(size)) throw new NoteError('PROOF_MALFORMED', `stream ${stream} has no checkpoint${options.size === undefined ? '' : ` at size ${options.size}`}; sign one first (the recorder does, with a signing key)`);
  if (seq > size) throw new NoteError('PROOF_MALFORMED', `seq ${seq} is not covered by the newest checkpoint (size ${size}); wait for the next checkpoint`);
  const noteBytes = await sink.getCheckpoint(stream, size, 'note');
  if (!noteBytes) throw new NoteError('PROOF_MALFORMED', `the checkpoint of stream ${stream} at size ${size} disappeared while the proof was built`);
  let note = decoder.decode(noteBytes);
  const text = parseNote(note).text;
  const checkpoint = parseCheckpoint(text);
  // Witness cosignatures stored beside the note join it, as C2SP intends (extra signature lines).
  for (const entry of (await sink.checkpointFiles?.(stream)) ?? []) {
    if (entry.size !== size || !entry.file.startsWith('cosigned-')) continue;
    const copy = await sink.getCheckpoint(stream, size, entry.file);
    try {
      const parsed = copy && parseNote(copy);
      if (parsed && parsed.text === text) note = addSignatureLines(note, decoder.decode(copy).slice(text.length + 1).split('\n').filter(Boolean));
    } catch {
      // A damaged copy adds nothing; verify reports it.
    }
  }

  let record: Uint8Array | undefined;
  for await (const stored of sink.read(stream, { fromSeq: seq })) {
    if (stored.seq === seq) record = Uint8Array.from(stored.bytes);
    break;
  }
  if (!record) throw new NoteError('PROOF_MALFORMED', `stream ${stream} has no record ${seq}`);

  const leaf = leafHash(record);
  // Tiles make proofs fast; a missing or damaged tile must not stop one: recompute from the records.
  let path: Uint8Array[] | undefined;
  try {
    path = await inclusionProof(new TileSource(size, (tile) => sink.getTile(stream, tile)), seq - 1);
  } catch {
    path = undefined;
  }
  if (!path || !verifyInclusion(seq - 1, size, leaf, path, checkpoint.root)) {
    const levels = new MerkleLevels();
    for await (const stored of sink.read(stream)) {
      if (stored.seq > size) break;
      levels.append(leafHash(stored.bytes));
    }
    if (levels.size < size) throw new NoteError('PROOF_MALFORMED', `stream ${stream} has ${levels.size} records but its checkpoint signs size ${size}: the archive is damaged; run offchannel verify`);
    path = await inclusionProof(levels, seq - 1, size);
  }
  if (!verifyInclusion(seq - 1, size, leaf, path, checkpoint.root)) {
    throw new NoteError('PROOF_MALFORMED', `record ${seq} of stream ${stream} is not in the tree its checkpoint at size ${size} signs: the archive is damaged; run offchannel verify`);
  }
  return {
    format: RECORD_PROOF_FORMAT,
    v: 1,
    stream,
    seq,
    record: decoder.decode(record),
    treeSize: size,
    inclusion: path.map((hash) => Buffer.from(hash).toString('base64')),
    checkpoint: note,
  };
}

/**
 * Verifies a record proof (parsed JSON) with the given verifier keys, needing nothing else.
 * Throws `NoteError`: `PROOF_MALFORMED` (not a proof file), `NOTE_*` (checkpoint signature),
 * or `PROOF_INVALID` (the record is not in the signed log).
 */
export function verifyRecordProof(proof: unknown, verifiers: readonly NoteVerifier[]): VerifiedRecordProof {
  const fields = checkShape(proof);
  const bytes = Buffer.from(fields.record, 'utf8');
  let record: ArchiveRecord;
  try {
    record = decodeRecord(bytes).record;
  } catch (error) {
    throw new NoteError('PROOF_INVALID', `the record in the proof is not a valid canonical record: ${(error as Error).message}`);
  }
  if (record.stream !== fields.stream || record.seq !== fields.seq) throw new NoteError('PROOF_INVALID', `the record is seq ${record.seq} of ${record.stream}, not seq ${fields.seq} of ${fields.stream}`);
  const opened = openNote(fields.checkpoint, verifiers);
  const checkpoint = parseCheckpoint(opened.text);
  const signedBy = opened.verified.map((signature) => signature.name).filter((name) => checkpoint.origin === checkpointOrigin(name, fields.stream));
  if (signedBy.length === 0) throw new NoteError('PROOF_INVALID', `the checkpoint's origin "${checkpoint.origin}" is not the log of stream ${fields.stream}`);
  if (checkpoint.size !== fields.treeSize) throw new NoteError('PROOF_INVALID', `the proof is for tree size ${fields.treeSize} but the checkpoint signs size ${checkpoint.size}`);
  const path = fields.inclusion.map((hash) => Uint8Array.from(Buffer.from(hash, 'base64')));
  if (!verifyInclusion(fields.seq - 1, checkpoint.size, leafHash(bytes), path, checkpoint.root)) {
    throw new NoteError('PROOF_INVALID', `record ${fields.seq} is not in the log signed at size ${checkpoint.size}: the record or the proof was altered`);
  }
  return { record, checkpoint, signedBy };
}

function checkShape(proof: unknown): RecordProof {
  const bad = (why: string): NoteError => new NoteError('PROOF_MALFORMED', `not an offchannel record proof: ${why}`);
  if (typeof proof !== 'object' || proof === null || Array.isArray(proof)) throw bad('expected a JSON object');
  const fields = proof as Record<string, unknown>;
  const known = ['format', 'v', 'stream', 'seq', 'record', 'treeSize', 'inclusion', 'checkpoint', 'archiveLog'];
  for (const name of Object.keys(fields)) if (!known.includes(name)) throw bad(`unknown field "${name.slice(0, 40)}"`);
  if (fields.format !== RECORD_PROOF_FORMAT || fields.v !== 1) throw bad(`format must be "${RECORD_PROOF_FORMAT}" version 1`);
  if (typeof fields.stream !== 'string') throw bad('stream must be a string');
  try {
    assertStreamName(fields.stream);
  } catch {
    throw bad('stream is not a valid stream name');
  }
  if (!Number.isSafeInteger(fields.seq) || (fields.seq as number) < 1) throw bad('seq must be a positive integer');
  if (!Number.isSafeInteger(fields.treeSize) || (fields.treeSize as number) < (fields.seq as number)) throw bad('treeSize must be an integer ≥ seq');
  if (typeof fields.record !== 'string' || Buffer.byteLength(fields.record, 'utf8') > MAX_RECORD_BYTES) throw bad('record must be a string of at most 65,535 bytes');
  if (typeof fields.checkpoint !== 'string' || fields.checkpoint.length > 1024 * 1024) throw bad('checkpoint must be a signed note');
  if (!Array.isArray(fields.inclusion) || fields.inclusion.length > 64) throw bad('inclusion must be an array of at most 64 hashes');
  for (const hash of fields.inclusion) {
    if (typeof hash !== 'string' || Buffer.from(hash, 'base64').length !== HASH_BYTES || Buffer.from(hash, 'base64').toString('base64') !== hash) throw bad('each inclusion hash is base64 of 32 bytes');
  }
  return fields as unknown as RecordProof;
}
