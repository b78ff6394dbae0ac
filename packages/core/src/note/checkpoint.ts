/**
 * Transparency-log checkpoints (c2sp.org/tlog-checkpoint): a signed note whose text is
 *
 *   <origin>\n<tree size>\n<base64 root hash>\n[extension lines…]
 *
 * offchannel keeps one log per stream. Its origin is `<key name>/<stream>`, so a checkpoint of
 * one stream can never pass for another's, and one verifier key covers every stream of an
 * archive (the spec's SHOULD that the key name equal the origin is relaxed for that reason).
 */
import { NoteError } from '../errors/note-errors.ts';
import { HASH_BYTES } from '../merkle/merkle-hash.ts';

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly root: Uint8Array;
  /** Extension lines (offchannel writes none). */
  readonly extensions: readonly string[];
}

/** The origin of `stream`'s log for a key named `keyName`. */
export function checkpointOrigin(keyName: string, stream: string): string {
  return `${keyName}/${stream}`;
}

export function formatCheckpoint(checkpoint: Omit<Checkpoint, 'extensions'> & { readonly extensions?: readonly string[] }): string {
  if (!checkpoint.origin || /[\n]/.test(checkpoint.origin)) throw new NoteError('NOTE_MALFORMED', 'a checkpoint origin is one non-empty line');
  if (!Number.isSafeInteger(checkpoint.size) || checkpoint.size < 0) throw new NoteError('NOTE_MALFORMED', 'a checkpoint size is a non-negative integer');
  if (checkpoint.root.length !== HASH_BYTES) throw new NoteError('NOTE_MALFORMED', 'a checkpoint root is 32 bytes');
  const extensions = checkpoint.extensions ?? [];
  return `${checkpoint.origin}\n${checkpoint.size}\n${Buffer.from(checkpoint.root).toString('base64')}\n${extensions.map((line) => `${line}\n`).join('')}`;
}

/** Parses checkpoint note text (already verified with `openNote`). Throws `NoteError` NOTE_MALFORMED. */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new NoteError('NOTE_MALFORMED', 'a checkpoint text ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new NoteError('NOTE_MALFORMED', 'a checkpoint has at least three lines: origin, size, root');
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) throw new NoteError('NOTE_MALFORMED', 'a checkpoint origin is non-empty');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new NoteError('NOTE_MALFORMED', 'a checkpoint size is decimal without leading zeros');
  }
  const root = Buffer.from(rootText, 'base64');
  if (root.length !== HASH_BYTES || root.toString('base64') !== rootText) throw new NoteError('NOTE_MALFORMED', 'a checkpoint root is base64 of 32 bytes');
  if (extensions.some((line) => line.length === 0)) throw new NoteError('NOTE_MALFORMED', 'checkpoint extension lines are non-empty');
  return { origin, size: Number(sizeText), root: new Uint8Array(root), extensions };
}
