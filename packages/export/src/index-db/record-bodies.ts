import { hash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { ExportError } from '../export-error.ts';

/** Records are gathered per group into blocks of up to this size, each written with one write. */
export const BLOCK_BYTES = 64 * 1024;
/** Groups (conversations) that get blocks of their own; the others share one. */
export const OWN_GROUPS = 64;
/** A group gets blocks of its own once it has this many records (while some are left). */
export const OWN_AFTER = 16;
/** Blocks kept in memory once read (at most this many times {@link BLOCK_BYTES}). */
export const CACHED_BLOCKS = OWN_GROUPS + 16;
/** An address is `block * ADDRESS_SPAN + offset in the block`. */
const ADDRESS_SPAN = 2 ** 24;
const SHARED = -1;

/** A group's block being filled. */
interface OpenBlock {
  readonly id: number;
  readonly buffer: Buffer;
  bytes: number;
}

/**
 * The index's record bytes: one file (0600, in the export's private working directory) of
 * blocks. Each record is appended with its group (its conversation): the busiest groups — the
 * first {@link OWN_GROUPS} to reach {@link OWN_AFTER} records — fill blocks of their own, the
 * others share blocks, so a conversation read in order is read a block (many records) at a
 * time, not one positional read per record across the whole file. Memory stays bounded: one
 * open block per group with blocks of its own, {@link CACHED_BLOCKS} blocks read back,
 * 13 bytes per written block (where it is, its length, whether it is one group's), and a count
 * per group only until the own groups are given out.
 *
 * A block of one group is read whole (and kept, most recently used first); a record of a shared
 * block, or larger than a block, is read alone. Either way each record is used only if its bytes
 * hash to the verified chain's hash for it: whatever changed the working file after the build (a
 * failing disk, another process) stops the export instead of reaching the production.
 *
 * Synchronous, as SQLite is: the build and the exporters' lookups never wait on each other.
 */
export class RecordBodies {
  readonly #path: string;
  readonly #fd: number;
  readonly #groups = new Map<string, number>();
  readonly #open = new Map<number, OpenBlock>();
  readonly #cache = new Map<number, Buffer>();
  #blocks = 0;
  #position = new Float64Array(1024);
  #length = new Uint32Array(1024);
  #whole = new Uint8Array(1024);
  #size = 0;
  #ownGroups = 0;
  #read = Buffer.allocUnsafe(64 * 1024);
  #live = true;

  private constructor(path: string, fd: number) {
    this.#path = path;
    this.#fd = fd;
  }

  /** Creates `file`, which must not exist. */
  static create(file: string): RecordBodies {
    return new RecordBodies(file, openSync(file, 'wx+', 0o600));
  }

  /** Appends one record's bytes to its group's blocks; returns its address (for {@link read}). */
  append(bytes: Uint8Array, group: string): number {
    if (bytes.byteLength > BLOCK_BYTES) {
      const id = this.#newBlock(false);
      this.#write(id, bytes);
      return id * ADDRESS_SPAN;
    }
    const bucket = this.#bucketOf(group);
    let block = this.#open.get(bucket);
    if (block && block.bytes + bytes.byteLength > BLOCK_BYTES) {
      this.#write(block.id, block.buffer.subarray(0, block.bytes));
      block = { id: this.#newBlock(bucket !== SHARED), buffer: block.buffer, bytes: 0 };
      this.#open.set(bucket, block);
    }
    if (!block) {
      block = { id: this.#newBlock(bucket !== SHARED), buffer: Buffer.allocUnsafe(BLOCK_BYTES), bytes: 0 };
      this.#open.set(bucket, block);
    }
    block.buffer.set(bytes, block.bytes);
    const at = block.id * ADDRESS_SPAN + block.bytes;
    block.bytes += bytes.byteLength;
    return at;
  }

  /** Writes every block still being filled (a read does so first). */
  finish(): void {
    if (this.#open.size === 0) return;
    if (!this.#live) throw new ExportError('EXPORT_OUTPUT', `the export's working file ${this.#path} was written after it was removed (a bug); export again`);
    for (const block of this.#open.values()) if (block.bytes > 0) this.#write(block.id, block.buffer.subarray(0, block.bytes));
    this.#open.clear();
  }

  /**
   * The record at `address`, `bytes` long, as text — only if its bytes still hash to `sha256`
   * (the hash the verified chain gave them).
   */
  read(address: number, bytes: number, sha256: string): string {
    if (!this.#live) throw new ExportError('EXPORT_OUTPUT', `the export's working file ${this.#path} was read after it was removed (a bug); export again`);
    this.finish();
    const id = Math.floor(address / ADDRESS_SPAN);
    const offset = address % ADDRESS_SPAN;
    if (id >= this.#blocks || offset + bytes > (this.#length[id] ?? 0)) throw new ExportError('EXPORT_OUTPUT', `the export's index names bytes its working file ${this.#path} does not hold (a bug or a changed index); export again`);
    const position = this.#position[id] ?? 0;
    let view: Buffer;
    if (this.#whole[id] === 1) view = this.#block(id, position).subarray(offset, offset + bytes);
    else {
      if (this.#read.byteLength < bytes) this.#read = Buffer.allocUnsafe(Math.max(bytes, this.#read.byteLength * 2));
      view = this.#readAt(this.#read, bytes, position + offset);
    }
    if (hash('sha256', view, 'hex') !== sha256) throw changed(this.#path);
    return view.toString('utf8');
  }

  /** Closes and deletes the file. */
  async remove(): Promise<void> {
    if (this.#live) closeSync(this.#fd);
    this.#live = false;
    this.#cache.clear();
    await rm(this.#path, { force: true });
  }

  /**
   * Own groups by first reaching {@link OWN_AFTER} records: the others' records are counted
   * until every own group is given out (then only the own groups are remembered).
   */
  #bucketOf(group: string): number {
    const seen = this.#groups.get(group) ?? 0;
    if (seen < 0) return -seen - 1;
    if (this.#ownGroups === OWN_GROUPS) return SHARED;
    if (seen + 1 < OWN_AFTER) {
      this.#groups.set(group, seen + 1);
      return SHARED;
    }
    const bucket = this.#ownGroups++;
    this.#groups.set(group, -bucket - 1);
    if (this.#ownGroups === OWN_GROUPS) for (const [name, count] of this.#groups) if (count > 0) this.#groups.delete(name);
    return bucket;
  }

  /** A block of one group (in a buffer of {@link BLOCK_BYTES}), read whole once, then cached. */
  #block(id: number, position: number): Buffer {
    const cached = this.#cache.get(id);
    if (cached) {
      this.#cache.delete(id);
      this.#cache.set(id, cached);
      return cached;
    }
    let buffer: Buffer | undefined;
    if (this.#cache.size >= CACHED_BLOCKS) {
      const [oldest, reused] = this.#cache.entries().next().value as [number, Buffer];
      this.#cache.delete(oldest);
      buffer = reused;
    }
    buffer ??= Buffer.allocUnsafe(BLOCK_BYTES);
    this.#readAt(buffer, this.#length[id] ?? 0, position);
    this.#cache.set(id, buffer);
    return buffer;
  }

  #newBlock(whole: boolean): number {
    const id = this.#blocks++;
    if (id >= this.#position.length) {
      const grow = <T extends Float64Array | Uint32Array | Uint8Array>(from: T, to: T): T => (to.set(from), to);
      this.#position = grow(this.#position, new Float64Array(id * 2));
      this.#length = grow(this.#length, new Uint32Array(id * 2));
      this.#whole = grow(this.#whole, new Uint8Array(id * 2));
    }
    this.#whole[id] = whole ? 1 : 0;
    return id;
  }

  /** Writes block `id` at the end of the file and notes where it is, its length and its hash. */
  #write(id: number, bytes: Uint8Array): void {
    if (!this.#live) throw new ExportError('EXPORT_OUTPUT', `the export's working file ${this.#path} was written after it was removed (a bug); export again`);
    try {
      for (let done = 0; done < bytes.byteLength; ) done += writeSync(this.#fd, bytes, done, bytes.byteLength - done, this.#size + done);
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'unknown error';
      throw new ExportError('EXPORT_OUTPUT', `cannot write the export's working file ${this.#path} (${code}); make room on the file system of --out (the index holds a copy of every selected record) and export again`, { cause: error });
    }
    this.#position[id] = this.#size;
    this.#length[id] = bytes.byteLength;
    this.#size += bytes.byteLength;
  }

  /** Exactly `bytes` bytes at `position` into `buffer`, or a typed error. */
  #readAt(buffer: Buffer, bytes: number, position: number): Buffer {
    for (let done = 0; done < bytes; ) {
      let got: number;
      try {
        got = readSync(this.#fd, buffer, done, bytes - done, position + done);
      } catch (error) {
        const code = (error as { code?: string }).code ?? 'unknown error';
        throw new ExportError('EXPORT_OUTPUT', `cannot read the export's working file ${this.#path} back (${code}); check the file system of --out and export again`, { cause: error });
      }
      if (got === 0) throw new ExportError('EXPORT_OUTPUT', `the export's working file ${this.#path} was truncated while it was read back`);
      done += got;
    }
    return buffer.subarray(0, bytes);
  }
}

function changed(file: string): ExportError {
  return new ExportError('EXPORT_UNVERIFIED', `the export's working file ${file} changed after the archive was verified (a record read back does not hash to the verified chain); nothing more is exported. Check the file system of --out and export again`);
}
