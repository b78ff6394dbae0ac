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
