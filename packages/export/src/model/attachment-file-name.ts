/**
 * How an attachment is named and typed inside an export. The sender chooses an attachment's
 * name and MIME type, so neither may decide how a reviewer's browser, mail client or file
 * manager opens the exported file: `invoice.html` or `chart.svg` opened from an export folder
 * would run the sender's script outside the transcript's Content-Security-Policy.
 *
 * - The file name is the attachment's full SHA-256 (it ties the file to the archive's blob and is
 *   unique) and an extension from an ALLOWLIST of inert types, chosen by the recorded MIME type;
 *   anything else — HTML, SVG, XML, scripts, executables, unknown types — is `.bin`
 *   (`application/octet-stream`: downloaded, never rendered). The sender's name never reaches
 *   a path, so `..`, separators, RTL overrides and very long names cannot either.
 * - The original name is shown as text only, through {@link displayName}.
 */

/** MIME type → extension of the types an export writes under their own extension. */
const INERT_TYPES: Readonly<Record<string, string>> = {
  'application/pdf': 'pdf',
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'image/heic': 'heic',
  'image/heif': 'heif',
  'video/mp4': 'mp4',
  'video/quicktime': 'mov',
  'video/webm': 'webm',
  'video/3gpp': '3gp',
  'audio/ogg': 'ogg',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'audio/aac': 'aac',
  'audio/amr': 'amr',
  'audio/x-caf': 'caf',
  'text/plain': 'txt',
  'text/vcard': 'vcf',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': 'docx',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': 'xlsx',
  'application/vnd.openxmlformats-officedocument.presentationml.presentation': 'pptx',
};

/** Raster images a transcript may show inline (as `data:` URIs of exactly this type). */
const INLINE_IMAGES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

const OPAQUE = 'application/octet-stream';

function essence(mime: string | undefined): string {
  return (mime ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** The content type an export gives the file: the recorded type when it is on the allowlist, else `application/octet-stream`. */
export function exportedType(mime: string | undefined): string {
  const type = essence(mime);
  return INERT_TYPES[type] === undefined ? OPAQUE : type;
}

/** `<full sha256>.<allowlisted extension or bin>`: the name of a stored attachment in every format. */
export function attachmentFileName(sha256: string, mime: string | undefined): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new RangeError('attachment sha256 must be 64 lower-case hex digits');
  return `${sha256}.${INERT_TYPES[essence(mime)] ?? 'bin'}`;
}

/** Whether an HTML transcript may show the attachment inline. */
export function isInlineImage(mime: string | undefined): boolean {
  return INLINE_IMAGES.has(essence(mime));
}

/** Longest original name shown; the full name stays in the record (JSONL). */
const DISPLAY_MAX = 200;

/**
 * An original (sender-chosen) name as text a reviewer can trust: control characters, bidi
 * overrides and isolates (which can make `evil‮gpj.exe` read as `evilexe.jpg`) and invisible
 * characters are shown as `[U+XXXX]`; names over 200 characters are cut with their length.
 * The caller still escapes it for its format (HTML, MIME header, JSON).
 */
export function displayName(name: string): string {
  const chars = Array.from(name); // code points: a cut never splits a surrogate pair
  const shown = chars.length > DISPLAY_MAX ? `${chars.slice(0, DISPLAY_MAX).join('')}… (${chars.length} characters)` : name;
  return shown.replace(/[\p{Cc}\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/gu, (char) => `[U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}]`);
}
