/**
 * Reading segment files in line-aligned pieces into one buffer that is used again for every
 * piece, for `readSegments` (bulk verification). Reading each segment whole allocated a fresh
 * buffer of up to the segment size (32 MiB) per segment, which the garbage collector frees
 * late (external memory): a full verification's peak memory then grew by several segments.
 * Here the memory is one buffer of {@link PIECE_BYTES}, grown only for a line longer than that
 * (no record is: the verifier names such a line), whatever the size and number of segments.
 */
import type { Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

/** Size of the buffer pieces are read into: a piece is at most this, unless one line is longer. */
export const PIECE_BYTES = 4 * 1024 * 1024;

export class SegmentPieces {
  private buffer: Buffer;
  /** Bytes read so far by {@link read} from the current file. */
  bytesRead = 0;

  constructor(size = PIECE_BYTES) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  /**
   * The file's bytes from its start, as pieces that each end just after a newline, views of
   * this reader's buffer: a piece is valid until the next one is asked for. With `whole`, the
   * end of the file is returned too when it does not end in a newline (damaged data is returned
   * as stored); without, reading stops at the last newline (an append may be in progress).
   * Every byte read is fed to `digest`, in order.
   */
  async *read(handle: FileHandle, whole: boolean, digest?: Hash): AsyncGenerator<Uint8Array> {
    this.bytesRead = 0;
    let filled = 0;
    for (;;) {
      let end = false;
      while (filled < this.buffer.length) {
        const { bytesRead } = await handle.read(this.buffer, filled, this.buffer.length - filled, this.bytesRead);
        if (bytesRead === 0) {
          end = true;
          break;
        }
        digest?.update(this.buffer.subarray(filled, filled + bytesRead));
        filled += bytesRead;
        this.bytesRead += bytesRead;
      }
      // (A negative offset would search from the buffer's end: nothing is there to find.)
      const cut = end && whole ? filled : filled === 0 ? 0 : this.buffer.lastIndexOf(0x0a, filled - 1) + 1;
      if (cut > 0) {
        yield this.buffer.subarray(0, cut);
        this.buffer.copyWithin(0, cut, filled);
        filled -= cut;
      } else if (!end) {
        // One line longer than the buffer: a larger one (the file's size bounds it).
        const larger = Buffer.allocUnsafe(this.buffer.length * 2);
        this.buffer.copy(larger, 0, 0, filled);
        this.buffer = larger;
      }
      if (end) return;
    }
  }
}

/** Number of newlines in `bytes`. */
export function countLines(bytes: Uint8Array): number {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let lines = 0;
  for (let at = view.indexOf(0x0a); at !== -1; at = view.indexOf(0x0a, at + 1)) lines++;
  return lines;
}
