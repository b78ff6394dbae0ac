/**
 * A record proof's archive-log part (docs/witnessing.md): the proof that the stream checkpoint
 * a record proof relies on is an entry of the archive log, in an archive checkpoint that
 * carries the witnesses' cosignatures. `offchannel prove` adds it when the archive has an
 * archive log; `offchannel verify-proof --witness` then applies the witness policy to the
 * archive checkpoint. Everything is checked from the proof alone: O(log n) hashes.
 */
import { NoteError } from '../errors/note-errors.ts';
import { HASH_BYTES, leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { inclusionProof } from '../merkle/merkle-proofs.ts';
import { TileSource } from '../merkle/tiles.ts';
import { verifyInclusion } from '../merkle/verify-proofs.ts';
import { type Checkpoint, parseCheckpoint } from '../note/checkpoint.ts';
import { addSignatureLines } from '../note/cosignature.ts';
import type { NoteVerifier } from '../note/ed25519-key.ts';
import { openNote, parseNote } from '../note/signed-note.ts';
import { ARCHIVE_LOG, isArchiveLogName } from '../sink/log-name.ts';
import type { Sink } from '../sink/sink.ts';
import { archiveLogOrigin, forEachLeaf } from '../witness/archive-log.ts';

export interface ArchiveLogInclusion {
  readonly log: string;
  /** The stream checkpoint note exactly as stored: the entry is SHA-256(0x00 ‖ its UTF-8 bytes). */
  readonly entry: string;
  /** The entry's position in the archive log, from 0. */
  readonly index: number;
  readonly treeSize: number;
  /** RFC 9162 inclusion path of the entry, leaf side first, base64. */
  readonly inclusion: readonly string[];
  /** The archive checkpoint note, with the witnesses' cosignature lines stored beside it. */
  readonly checkpoint: string;
}

const decoder = new TextDecoder();

/**
 * The inclusion of `stream`'s checkpoint at `size` in the newest archive checkpoint of `log`;
 * undefined when the archive has no archive log or the checkpoint is not (yet) in it.
 */
export async function buildArchiveLogInclusion(sink: Sink, stream: string, size: number, log: string = ARCHIVE_LOG): Promise<ArchiveLogInclusion | undefined> {
  const treeSize = (await sink.checkpoints(log)).at(-1);
  const entry = await sink.getCheckpoint(stream, size, 'note');
  if (treeSize === undefined || !entry) return undefined;
  const load = (tile: Parameters<Sink['getTile']>[1]) => sink.getTile(log, tile);
  const leaf = leafHash(entry);
  let index = -1;
  // One tile in memory at a time; the first match is the entry (a log never repeats one).
  const whole = await forEachLeaf(treeSize, load, (candidate, at) => {
    if (index < 0 && sameHash(candidate, leaf)) index = at;
  });
  if (!whole) index = -1;
  const noteBytes = await sink.getCheckpoint(log, treeSize, 'note');
  if (index < 0 || !noteBytes) return undefined;
  let note = decoder.decode(noteBytes);
  const { text } = parseNote(note);
  for (const file of (await sink.checkpointFiles?.(log)) ?? []) {
    if (file.size !== treeSize || !file.file.startsWith('cosigned-')) continue;
    const copy = await sink.getCheckpoint(log, treeSize, file.file);
    try {
      if (copy && parseNote(copy).text === text) note = addSignatureLines(note, decoder.decode(copy).slice(text.length + 1).split('\n').filter(Boolean));
    } catch {
      // A damaged copy adds nothing; verify reports it.
    }
  }
  const path = await inclusionProof(new TileSource(treeSize, load), index);
  return { log, entry: decoder.decode(entry), index, treeSize, inclusion: path.map((hash) => Buffer.from(hash).toString('base64')), checkpoint: note };
}

/**
 * Checks a proof's `archiveLog` part against the stream checkpoint the record proof verified
 * (`streamCheckpoint`, its note text): same checkpoint, included at `index` in the archive
 * checkpoint, which a given key signed with the archive log's origin. Throws `NoteError`
 * PROOF_MALFORMED or PROOF_INVALID; returns the archive checkpoint (its note carries the
 * cosignatures to count).
 */
export function verifyArchiveLogInclusion(value: unknown, streamCheckpoint: string, verifiers: readonly NoteVerifier[]): { readonly checkpoint: Checkpoint; readonly note: string; readonly index: number; readonly log: string } {
  const fields = checkShape(value);
  if (parseNote(fields.entry).text !== parseNote(streamCheckpoint).text) throw new NoteError('PROOF_INVALID', 'the archive-log entry is not the stream checkpoint this proof relies on');
  const opened = openNote(fields.checkpoint, verifiers);
  const checkpoint = parseCheckpoint(opened.text);
  if (!opened.verified.some((signature) => checkpoint.origin === archiveLogOrigin(signature.name, fields.log))) throw new NoteError('PROOF_INVALID', `the archive checkpoint's origin "${checkpoint.origin}" is not the archive log's`);
  if (checkpoint.size !== fields.treeSize) throw new NoteError('PROOF_INVALID', `the archive-log part is for size ${fields.treeSize} but the archive checkpoint signs size ${checkpoint.size}`);
  const path = fields.inclusion.map((hash) => Uint8Array.from(Buffer.from(hash, 'base64')));
  if (!verifyInclusion(fields.index, checkpoint.size, leafHash(Buffer.from(fields.entry, 'utf8')), path, checkpoint.root)) {
    throw new NoteError('PROOF_INVALID', `the stream checkpoint is not entry ${fields.index} of the archive log signed at size ${checkpoint.size}: the proof was altered`);
  }
  return { checkpoint, note: fields.checkpoint, index: fields.index, log: fields.log };
}

function checkShape(value: unknown): ArchiveLogInclusion {
  const bad = (why: string): NoteError => new NoteError('PROOF_MALFORMED', `the proof's archiveLog part is malformed: ${why}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('expected a JSON object');
  const fields = value as Record<string, unknown>;
  const known = ['log', 'entry', 'index', 'treeSize', 'inclusion', 'checkpoint'];
  for (const name of Object.keys(fields)) if (!known.includes(name)) throw bad(`unknown field "${name.slice(0, 40)}"`);
  if (!isArchiveLogName(fields.log)) throw bad('log must name an archive log');
  if (!Number.isSafeInteger(fields.treeSize) || !Number.isSafeInteger(fields.index) || (fields.index as number) < 0 || (fields.index as number) >= (fields.treeSize as number)) throw bad('index must be an integer below treeSize');
  for (const name of ['entry', 'checkpoint'] as const) if (typeof fields[name] !== 'string' || fields[name].length > 1024 * 1024) throw bad(`${name} must be a signed note`);
  if (!Array.isArray(fields.inclusion) || fields.inclusion.length > 64) throw bad('inclusion must be an array of at most 64 hashes');
  for (const hash of fields.inclusion) {
    if (typeof hash !== 'string' || Buffer.from(hash, 'base64').length !== HASH_BYTES || Buffer.from(hash, 'base64').toString('base64') !== hash) throw bad('each inclusion hash is base64 of 32 bytes');
  }
  return fields as unknown as ArchiveLogInclusion;
}
