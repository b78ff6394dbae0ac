import { createHash } from 'node:crypto';
import type { Sink } from '@offchannel/core';
import { ExportError } from './export-error.ts';

/**
 * A blob's bytes, hashed as they are read: what an export writes must be what verification
 * checked, and the archive may change between the two reads. A blob that is missing, or whose
 * SHA-256 (or size, when known) is not the one the verified record names, stops the export.
 */
export async function readVerifiedBlob(sink: Sink, sha256: string, size?: number): Promise<Uint8Array> {
  const bytes = await sink.getBlob(sha256);
  if (!bytes) throw new ExportError('EXPORT_UNVERIFIED', `blob ${sha256} disappeared from the archive during export; nothing more was written. Run offchannel verify, then export again`);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256 || (size !== undefined && bytes.byteLength !== size)) {
    throw new ExportError('EXPORT_UNVERIFIED', `blob ${sha256} changed in the archive during export (it now hashes to ${actual}, ${bytes.byteLength} bytes); nothing more was written. Run offchannel verify`);
  }
  return bytes;
}
