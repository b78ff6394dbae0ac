import { writeSync } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';

/** Text is gathered up to this many bytes before one write. */
const BUFFER_BYTES = 256 * 1024;

/**
 * A temporary file (0600, in the export's working directory) that text is appended to and then
 * read back in chunks: how a 10,000-event RSMF slice is assembled without holding it in memory.
 * Appends are synchronous (a buffer of {@link BUFFER_BYTES} written with one `writeSync` when
 * full): an event costs no promise and no turn of the event loop per part.
 */
export class SpoolFile {
  readonly path: string;
  readonly #file: FileHandle;
  /** Appended text not yet written, encoded in place (one buffer for the file's life: no garbage per append). */
  readonly #pending = Buffer.allocUnsafe(BUFFER_BYTES);
  #pendingBytes = 0;
  #size = 0;

  private constructor(path: string, file: FileHandle) {
    this.path = path;
    this.#file = file;
  }

  static async create(path: string): Promise<SpoolFile> {
    return new SpoolFile(path, await open(path, 'wx+', 0o600));
  }

  /** Bytes appended so far. */
  get size(): number {
    return this.#size + this.#pendingBytes;
  }

  append(text: string): void {
    // A UTF-16 code unit is at most 3 bytes of UTF-8: text that might not fit goes after a flush.
    if (this.#pendingBytes + text.length * 3 > BUFFER_BYTES) this.#flush();
    if (text.length * 3 > BUFFER_BYTES) this.#write(Buffer.from(text, 'utf8'));
    else this.#pendingBytes += this.#pending.write(text, this.#pendingBytes, 'utf8');
  }

  /** The whole content, in chunks of `chunkBytes` (the last may be shorter). */
  async *chunks(chunkBytes: number): AsyncGenerator<Uint8Array> {
    this.#flush();
    const buffer = Buffer.alloc(chunkBytes);
    for (let position = 0; position < this.#size; ) {
      const { bytesRead } = await this.#file.read(buffer, 0, Math.min(chunkBytes, this.#size - position), position);
      if (bytesRead === 0) throw new Error(`temporary file ${this.path} was truncated while it was read back`);
      position += bytesRead;
      yield Buffer.from(buffer.subarray(0, bytesRead));
    }
  }

  /** Closes and deletes the file. */
  async remove(): Promise<void> {
    await this.#file.close().catch(() => undefined);
    await rm(this.path, { force: true });
  }

  #flush(): void {
    if (this.#pendingBytes === 0) return;
    this.#write(this.#pending.subarray(0, this.#pendingBytes));
    this.#pendingBytes = 0;
  }

  #write(data: Uint8Array): void {
    let written = 0;
    while (written < data.byteLength) written += writeSync(this.#file.fd, data, written, data.byteLength - written, this.#size + written);
    this.#size += data.byteLength;
  }
}
