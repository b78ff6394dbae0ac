/**
 * Internal: a stream's batch objects in a bucket — finding the head, listing and fetching
 * batches in order (always the oldest version of each key), and telling whether a stored version
 * is the bytes a writer sent.
 */
import { ArchiveCorruptError, type StreamHead, SinkUnavailableError, ZERO_HASH, sha256Hex } from '@offchannel/core';
import type { KeyVersions, ObjectStore, Version } from './object-store.ts';
import { type S3Layout, padSeq, parseBatchName } from './s3-layout.ts';

const NEWLINE = 0x0a;

export class StreamObjects {
  private readonly objects: ObjectStore;
  private readonly layout: S3Layout;

  constructor(objects: ObjectStore, layout: S3Layout) {
    this.objects = objects;
    this.layout = layout;
  }

  /** True when `version` holds exactly `body`: it is the version we wrote, or identical bytes. */
  async isOurs(version: Version, versionId: string | undefined, body: Uint8Array): Promise<boolean> {
    if (versionId !== undefined && version.versionId === versionId) return true;
    if (version.size !== body.length) return false;
    const stored = await this.objects.get(version.key, version.versionId);
    return stored !== undefined && Buffer.from(stored).equals(body);
  }

  /** The stream's head as stored: from the last batch object's oldest version. */
  async loadHead(stream: string): Promise<StreamHead> {
    const last = await this.lastBatch(stream);
    if (!last) return { seq: 0, hash: ZERO_HASH };
    const bytes = await this.objects.get(last.key.key, last.key.oldest.versionId);
    if (bytes === undefined) throw new SinkUnavailableError(`stream ${stream}: the batch at seq ${last.firstSeq} was listed but could not be read`);
    const lines = splitLines(bytes);
    const final = lines.at(-1);
    if (!final || bytes[bytes.length - 1] !== NEWLINE) {
      throw new ArchiveCorruptError(`stream ${stream}: the batch object at seq ${last.firstSeq} is not whole records`, { stream, seq: last.firstSeq });
    }
    return { seq: last.firstSeq + lines.length - 1, hash: sha256Hex(final) };
  }

  /**
   * The stream's last batch object. One listing for streams of up to ~1,000 batches; beyond
   * that, a galloping then binary search on the zero-padded key names (≈2·log2(seq) listings).
   */
  async lastBatch(stream: string): Promise<{ firstSeq: number; key: KeyVersions } | undefined> {
    const prefix = this.layout.streamPrefix(stream);
    const after = async (seq: number): Promise<number | undefined> => {
      for await (const entry of this.objects.keys(prefix, { after: `${prefix}${padSeq(seq)}.jsonl`, pageSize: 16 })) {
        const found = parseBatchName(entry.key.slice(prefix.length));
        if (found !== undefined && found > seq) return found;
      }
      return undefined;
    };
    const first = await this.objects.page(prefix, 1000);
    const listed = first.keys.map((key) => parseBatchName(key.slice(prefix.length))).filter((seq) => seq !== undefined);
    let low = listed.at(-1);
    if (!first.truncated) {
      if (low === undefined) return undefined;
      const key = await this.objects.versionsOf(`${prefix}${padSeq(low)}.jsonl`);
      return key ? { firstSeq: low, key } : undefined;
    }
    low ??= await after(0);
    if (low === undefined) return undefined;
    let step = 1024;
    let high: number | undefined;
    while (high === undefined) {
      const probe = Math.min(low + step, Number.MAX_SAFE_INTEGER);
      if (probe <= low) {
        high = low; // nothing can start after the largest safe seq
        break;
      }
      const found = await after(probe - 1);
      if (found === undefined) high = probe - 1;
      else {
        low = found;
        step *= 2;
      }
    }
    // Invariant: a batch starts at `low`; none starts after `high`.
    let top: number = high;
    while (low < top) {
      const middle: number = low + Math.ceil((top - low) / 2);
      const found = await after(middle - 1);
      if (found === undefined) top = middle - 1;
      else low = found;
    }
    const key = await this.objects.versionsOf(`${prefix}${padSeq(low)}.jsonl`);
    return key ? { firstSeq: low, key } : undefined;
  }

  /** The stream's batch objects (oldest versions), in seq order. */
  async listBatches(stream: string): Promise<{ firstSeq: number; version: Version }[]> {
    const prefix = this.layout.streamPrefix(stream);
    const batches: { firstSeq: number; version: Version }[] = [];
    for await (const entry of this.objects.keys(prefix)) {
      const firstSeq = parseBatchName(entry.key.slice(prefix.length));
      if (firstSeq !== undefined) batches.push({ firstSeq, version: entry.oldest });
    }
    return batches;
  }

  /** Fetches batch objects in order, a few ahead. */
  async *fetchAll(batches: readonly { firstSeq: number; version: Version }[]): AsyncIterable<{ batch: { firstSeq: number }; bytes: Uint8Array }> {
    const ahead = 4;
    const pending: Promise<Uint8Array | undefined>[] = [];
    const start = (index: number) => {
      const batch = batches[index];
      if (!batch) return;
      const fetching = this.objects.get(batch.version.key, batch.version.versionId);
      fetching.catch(() => undefined);
      pending.push(fetching);
    };
    for (let index = 0; index < Math.min(ahead, batches.length); index++) start(index);
    for (let index = 0; index < batches.length; index++) {
      const bytes = await (pending.shift() as Promise<Uint8Array | undefined>);
      start(index + ahead);
      const batch = batches[index] as { firstSeq: number; version: Version };
      if (bytes === undefined) throw new SinkUnavailableError(`the batch ${batch.version.key} was listed but could not be read`);
      yield { batch, bytes };
    }
  }
}

/** The records in a batch object; a final fragment without a newline is returned as stored. */
export function splitLines(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let end = bytes.indexOf(NEWLINE); end !== -1; end = bytes.indexOf(NEWLINE, start)) {
    lines.push(bytes.subarray(start, end));
    start = end + 1;
  }
  if (start < bytes.length) lines.push(bytes.subarray(start));
  return lines;
}

export function countLines(bytes: Uint8Array): number {
  let count = 0;
  for (let index = bytes.indexOf(NEWLINE); index !== -1; index = bytes.indexOf(NEWLINE, index + 1)) count++;
  return count;
}
