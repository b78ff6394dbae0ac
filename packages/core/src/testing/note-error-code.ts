import { NoteError } from '../errors/note-errors.ts';

/**
 * The code of the {@link NoteError} that `fn` throws (`NOTE_MALFORMED`, `KEY_MALFORMED`, …), or
 * `undefined` if it returns. Any other error is thrown on, so a test expecting a code cannot pass
 * on a crash.
 */
export function noteErrorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof NoteError) return error.code;
    throw error;
  }
  return undefined;
}
