/**
 * Size and SHA-256 of sealed segments as the verify pass read them (`readSegments`), kept
 * for the physical audit that follows, so the audit's seal check does not read and hash
 * every sealed segment a second time: reading a segment costs about as much CPU as hashing it.
 * The hash is taken incrementally on the pieces as they are read (no copy, no second read),
 * while the workers verify the records, instead of in a serial phase after them.
 *
 * It is exactly as strong as a second read: the audit uses a digest only while the file is
 * still the one that was read — same device, inode, size, modification and change time
 * (nanoseconds), taken before the read, so any write during or after it makes the audit read
 * and hash the file again — and a digest that does not match the seal is never trusted alone
 * (the audit reads the file again and names what it finds). Each digest is used once; the
 * audit forgets them all when it ends. At most {@link MAX_SEGMENT_DIGESTS} are kept, so memory
 * stays bounded however large the archive; the audit reads and hashes any other segment itself.
 */
import { lstat } from 'node:fs/promises';
import { createHash } from 'node:crypto';

export interface SegmentDigest {
  readonly bytes: number;
  readonly sha256: string;
}

/** Digests kept at most (a few hundred bytes each; 2 TiB of 32 MiB segments). */
export const MAX_SEGMENT_DIGESTS = 65_536;

export class SegmentDigests {
  private readonly known = new Map<string, { readonly identity: string; readonly digest: SegmentDigest }>();
  private readonly max: number;

  constructor(max = MAX_SEGMENT_DIGESTS) {
    this.max = max;
  }

  /** The file's identity, to take before reading it (`undefined` if it cannot be stat'ed). */
  async identify(file: string): Promise<string | undefined> {
    const stats = await lstat(file, { bigint: true }).catch(() => undefined);
    return stats && `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
  }

  /** Hashes `bytes`, read from `file` after {@link identify} returned `identity`. */
  remember(file: string, identity: string, bytes: Uint8Array): void {
    if (this.known.size >= this.max) return; // the audit hashes this one itself
    this.rememberDigest(file, identity, { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  }

  /** Keeps `digest`, taken of all of `file`'s bytes as read after {@link identify} returned `identity`. */
  rememberDigest(file: string, identity: string, digest: SegmentDigest): void {
    if (this.known.size >= this.max) return; // the audit hashes this one itself
    this.known.set(file, { identity, digest });
  }

  /** The digest of `file` as it was read, if it is unchanged since (used once). */
  async take(file: string): Promise<SegmentDigest | undefined> {
    const entry = this.known.get(file);
    if (!entry) return undefined;
    this.known.delete(file);
    return (await this.identify(file)) === entry.identity ? entry.digest : undefined;
  }

  clear(): void {
    this.known.clear();
  }
}
