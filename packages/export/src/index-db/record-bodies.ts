import { hash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { ExportError } from '../export-error.ts';

/** Appended writes go out in pieces of this size. */
export const BODY_BUFFER_BYTES = 1 << 20;

/**
 * The index's record bytes: one file (0600, in the export's private working directory) the
 * stored records are appended to in archive order, read back one record at a time by offset.
 * Synchronous, as SQLite is: the build and the exporters' lookups never wait on each other.
 */
export class RecordBodies {
  readonly #path: string;
  readonly #fd: number;
  readonly #pending = Buffer.allocUnsafe(BODY_BUFFER_BYTES);
  #pendingBytes = 0;
  #size = 0;
  #read = Buffer.allocUnsafe(64 * 1024);
  #open = true;

  private constructor(path: string, fd: number) {
    this.#path = path;
    this.#fd = fd;
  }

  /** Creates `file`, which must not exist. */
  static create(file: string): RecordBodies {
    return new RecordBodies(file, openSync(file, 'wx+', 0o600));
  }

  /** Appends one record's bytes; returns their offset. */
  append(bytes: Uint8Array): number {
    const at = this.#size + this.#pendingBytes;
    if (this.#pendingBytes + bytes.byteLength > BODY_BUFFER_BYTES) this.finish();
    if (bytes.byteLength > BODY_BUFFER_BYTES) this.#write(bytes);
    else {
      this.#pending.set(bytes, this.#pendingBytes);
      this.#pendingBytes += bytes.byteLength;
    }
    return at;
  }

  /** Writes what is still buffered (a read does so first). */
  finish(): void {
    if (this.#pendingBytes === 0) return;
    if (!this.#open) throw new ExportError('EXPORT_OUTPUT', `the export's working file ${this.#path} was written after it was removed (a bug); export again`);
    this.#write(this.#pending.subarray(0, this.#pendingBytes));
    this.#pendingBytes = 0;
  }

  /**
   * The record stored at `at`, `bytes` long, as text — only if its bytes still hash to `sha256`
   * (the hash the verified chain gave them): whatever changed the working file after the build
   * (a failing disk, another process) stops the export instead of reaching the production.
   */
  read(at: number, bytes: number, sha256: string): string {
    if (!this.#open) throw new ExportError('EXPORT_OUTPUT', `the export's working file ${this.#path} was read after it was removed (a bug); export again`);
    this.finish();
    if (this.#read.byteLength < bytes) this.#read = Buffer.allocUnsafe(Math.max(bytes, this.#read.byteLength * 2));
    for (let done = 0; done < bytes; ) {
      let got: number;
      try {
        got = readSync(this.#fd, this.#read, done, bytes - done, at + done);
      } catch (error) {
        const code = (error as { code?: string }).code ?? 'unknown error';
        throw new ExportError('EXPORT_OUTPUT', `cannot read the export's working file ${this.#path} back (${code}); check the file system of --out and export again`, { cause: error });
      }
      if (got === 0) throw new ExportError('EXPORT_OUTPUT', `the export's working file ${this.#path} was truncated while it was read back`);
      done += got;
    }
    const view = this.#read.subarray(0, bytes);
    if (hash('sha256', view, 'hex') !== sha256) {
      throw new ExportError('EXPORT_UNVERIFIED', `the export's working file ${this.#path} changed after the archive was verified (a record read back does not hash to the verified chain); nothing more is exported. Check the file system of --out and export again`);
    }
    return view.toString('utf8');
  }

  /** Closes and deletes the file. */
  async remove(): Promise<void> {
    if (this.#open) closeSync(this.#fd);
    this.#open = false;
    await rm(this.#path, { force: true });
  }

  #write(bytes: Uint8Array): void {
    try {
      for (let done = 0; done < bytes.byteLength; ) done += writeSync(this.#fd, bytes, done, bytes.byteLength - done, this.#size + done);
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'unknown error';
      throw new ExportError('EXPORT_OUTPUT', `cannot write the export's working file ${this.#path} (${code}); make room on the file system of --out (the index holds a copy of every selected record) and export again`, { cause: error });
    }
    this.#size += bytes.byteLength;
  }
}
