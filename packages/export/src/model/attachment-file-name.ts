const EXTENSIONS: Record<string, string> = {
  'application/pdf': 'pdf',
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'image/heic': 'heic',
  'video/mp4': 'mp4',
  'video/quicktime': 'mov',
  'audio/ogg': 'ogg',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'text/plain': 'txt',
  'text/vcard': 'vcf',
};

/**
 * The file name a stored attachment gets inside an export: the first 16 hex digits of its
 * SHA-256 (unique, and ties the file to the archive's blob) then the original name made safe
 * for every file system and zip reader (ASCII letters, digits, `.`, `_`, `-`; at most 80 chars).
 */
export function attachmentFileName(sha256: string, name: string | undefined, mime: string): string {
  const safe = (name ?? '')
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(-80);
  if (safe !== '' && safe !== '_') return `${sha256.slice(0, 16)}-${safe}`;
  const extension = EXTENSIONS[mime.split(';')[0]?.trim().toLowerCase() ?? ''] ?? 'bin';
  return `${sha256.slice(0, 16)}.${extension}`;
}
