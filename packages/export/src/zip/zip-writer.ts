import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { once } from 'node:events';
import { constants as zlib, crc32, createDeflateRaw, deflateRawSync } from 'node:zlib';

/** 1980-01-01 00:00:00, the earliest DOS time: every entry gets it, so the bytes never depend on the clock or time zone. */
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const UTF8_NAMES = 0x0800;
/** General purpose flag bit 3: CRC and sizes follow the data in a data descriptor (streamed entries). */
const DATA_DESCRIPTOR = 0x0008;
const MAX_ZIP32 = 0xffff_ffff;

interface Entry {
  readonly name: Buffer;
  readonly flags: number;
  readonly method: 0 | 8;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly offset: number;
}

/**
 * Writes a ZIP archive to a file one entry at a time (only the central directory is kept in
 * memory). Deterministic: fixed timestamps, no extra fields, entries in the order added,
 * deflated only when that makes them smaller. ZIP32 only: an archive that would pass 4 GiB is
 * refused (RSMF slices stay far below Relativity's 2 GB recommendation).
 */
export class ZipWriter {
  readonly #file: FileHandle;
  readonly #hash = createHash('sha256');
  readonly #entries: Entry[] = [];
  readonly #names = new Set<string>();
  #offset = 0;

  private constructor(file: FileHandle) {
    this.#file = file;
  }

  /** Creates `path` (0600: a zip is assembled in the export's private working directory). */
  static async create(path: string): Promise<ZipWriter> {
    return new ZipWriter(await open(path, 'wx', 0o600));
  }

  get size(): number {
    return this.#offset;
  }

  /** Adds one file. Names are unique, relative, `/`-separated. */
  async add(name: string, bytes: Uint8Array): Promise<void> {
    if (this.#names.has(name) || name === '' || name.startsWith('/') || name.split('/').includes('..')) throw new RangeError(`invalid or duplicate zip entry name ${JSON.stringify(name)}`);
    this.#names.add(name);
    const deflated = deflateRawSync(bytes, { level: 6 });
    const method = deflated.byteLength < bytes.byteLength ? 8 : 0;
    const data = method === 8 ? deflated : bytes;
    const nameBytes = Buffer.from(name, 'utf8');
    const entry: Entry = { name: nameBytes, flags: UTF8_NAMES, method, crc: crc32(bytes), compressedSize: data.byteLength, size: bytes.byteLength, offset: this.#offset };
    if (this.#offset + 30 + nameBytes.byteLength + data.byteLength > MAX_ZIP32) throw new RangeError('zip archive would exceed 4 GiB; export smaller slices');
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(20, 4);
    header.writeUInt16LE(UTF8_NAMES, 6);
    header.writeUInt16LE(method, 8);
    header.writeUInt16LE(DOS_TIME, 10);
    header.writeUInt16LE(DOS_DATE, 12);
    header.writeUInt32LE(entry.crc, 14);
    header.writeUInt32LE(entry.compressedSize, 18);
    header.writeUInt32LE(entry.size, 22);
    header.writeUInt16LE(nameBytes.byteLength, 26);
    header.writeUInt16LE(0, 28);
    await this.#write(header);
    await this.#write(nameBytes);
    await this.#write(data);
    this.#entries.push(entry);
  }

  /**
   * Adds one file whose bytes come in chunks (a large RSMF manifest): deflated as a stream, its
   * CRC and sizes written after the data in a data descriptor, so only a chunk is in memory.
   */
  async addStream(name: string, source: AsyncIterable<string | Uint8Array>): Promise<void> {
    if (this.#names.has(name) || name === '' || name.startsWith('/') || name.split('/').includes('..')) throw new RangeError(`invalid or duplicate zip entry name ${JSON.stringify(name)}`);
    this.#names.add(name);
    const nameBytes = Buffer.from(name, 'utf8');
    const offset = this.#offset;
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(20, 4);
    header.writeUInt16LE(UTF8_NAMES | DATA_DESCRIPTOR, 6);
    header.writeUInt16LE(8, 8);
    header.writeUInt16LE(DOS_TIME, 10);
    header.writeUInt16LE(DOS_DATE, 12);
    header.writeUInt16LE(nameBytes.byteLength, 26);
    await this.#write(header);
    await this.#write(nameBytes);
    const deflate = createDeflateRaw({ level: 6, chunkSize: 64 * 1024, strategy: zlib.Z_DEFAULT_STRATEGY });
    let crc = 0;
    let size = 0;
    const feed = (async () => {
      for await (const chunk of source) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
        crc = crc32(bytes, crc);
        size += bytes.byteLength;
        if (!deflate.write(bytes)) await once(deflate, 'drain');
      }
      deflate.end();
    })().catch((error: unknown) => {
      deflate.destroy(error instanceof Error ? error : new Error(String(error)));
    });
    const start = this.#offset;
    try {
      for await (const out of deflate as AsyncIterable<Buffer>) {
        if (this.#offset + out.byteLength > MAX_ZIP32) throw new RangeError('zip archive would exceed 4 GiB; export smaller slices');
        await this.#write(out);
      }
    } finally {
      deflate.destroy();
      await feed;
    }
    const compressedSize = this.#offset - start;
    if (size > MAX_ZIP32) throw new RangeError('zip entry would exceed 4 GiB; export smaller slices');
    const descriptor = Buffer.alloc(16);
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc, 4);
    descriptor.writeUInt32LE(compressedSize, 8);
    descriptor.writeUInt32LE(size, 12);
    await this.#write(descriptor);
    this.#entries.push({ name: nameBytes, flags: UTF8_NAMES | DATA_DESCRIPTOR, method: 8, crc, compressedSize, size, offset });
  }

  /** Writes the central directory and closes the file. Returns the archive's size and SHA-256. */
  async close(): Promise<{ readonly size: number; readonly sha256: string }> {
    try {
      const start = this.#offset;
      for (const entry of this.#entries) {
        const header = Buffer.alloc(46);
        header.writeUInt32LE(0x02014b50, 0);
        header.writeUInt16LE(20, 4);
        header.writeUInt16LE(20, 6);
        header.writeUInt16LE(entry.flags, 8);
        header.writeUInt16LE(entry.method, 10);
        header.writeUInt16LE(DOS_TIME, 12);
        header.writeUInt16LE(DOS_DATE, 14);
        header.writeUInt32LE(entry.crc, 16);
        header.writeUInt32LE(entry.compressedSize, 20);
        header.writeUInt32LE(entry.size, 24);
        header.writeUInt16LE(entry.name.byteLength, 28);
        header.writeUInt32LE(entry.offset, 42);
        await this.#write(header);
        await this.#write(entry.name);
      }
      const end = Buffer.alloc(22);
      end.writeUInt32LE(0x06054b50, 0);
      end.writeUInt16LE(this.#entries.length, 8);
      end.writeUInt16LE(this.#entries.length, 10);
      end.writeUInt32LE(this.#offset - start, 12);
      end.writeUInt32LE(start, 16);
      if (this.#entries.length > 0xffff) throw new RangeError('too many zip entries');
      await this.#write(end);
      // No fsync: the zip is a working file, read back at once into the `.rsmf` file, which is synced.
      return { size: this.#offset, sha256: this.#hash.digest('hex') };
    } finally {
      await this.#file.close();
    }
  }

  /** Closes without finishing (after an error). */
  async abort(): Promise<void> {
    await this.#file.close().catch(() => undefined);
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.byteLength) {
      const { bytesWritten } = await this.#file.write(bytes, written, bytes.byteLength - written, this.#offset + written);
      written += bytesWritten;
    }
    this.#hash.update(bytes);
    this.#offset += bytes.byteLength;
  }
}
