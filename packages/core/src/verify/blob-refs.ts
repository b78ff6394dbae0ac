import type { ArchiveRecord, BlobRef } from '../record/record.ts';

/** Every blob a record names, with the field that names it. */
export function blobRefs(record: ArchiveRecord): [string, BlobRef][] {
  const refs: [string, BlobRef][] = [];
  if (record.raw) refs.push(['raw', record.raw]);
  if (record.textBlob) refs.push(['textBlob', record.textBlob]);
  record.attachments?.forEach((attachment, index) => {
    if (attachment.status === 'stored') refs.push([`attachments[${index}]`, attachment]);
  });
  return refs;
}

const SHA256_MEMBER = Buffer.from('"sha256":');
const decoder = new TextDecoder();

/**
 * The SHA-256 names of the blobs a stored record (its bytes) names. Bytes that are not a JSON
 * record name none (verification reports them). Fast for the common case: every blob reference
 * carries a `"sha256"` member, so a record without one is not parsed.
 */
export function blobNamesIn(bytes: Uint8Array): string[] {
  if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(SHA256_MEMBER) === -1) return [];
  try {
    return blobRefs(JSON.parse(decoder.decode(bytes)) as ArchiveRecord).map(([, ref]) => ref.sha256);
  } catch {
    return [];
  }
}
