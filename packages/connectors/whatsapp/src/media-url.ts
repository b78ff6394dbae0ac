/**
 * Where WhatsApp media may be fetched from. A message's `url` and `directPath` are written by
 * the sender, so both are hostile input: this file is the whole policy that turns them into
 * the one kind of URL the connector ever requests.
 *
 * - Host: one of {@link WHATSAPP_MEDIA_HOSTS}, over https, default port, no userinfo. The host
 *   is never taken from the message: `directPath` is appended to an allowlisted host, and a
 *   `url` is used only when it literally starts with `https://<allowlisted host>/` (as Baileys'
 *   own download does).
 * - Path: starts with one `/`, at most 4 KiB of printable ASCII from the URL path and query
 *   alphabet; no `.` or `..` segment; no percent-escape of a control character, space, `.`,
 *   `/`, `\`, `%`, `@`, `?` or `#`; and the WHATWG URL parser must not change a single character
 *   of it (so backslashes, dot segments and other normalizations are refused, not repaired).
 *
 * Anything else is {@link MediaUnavailableError} (`invalid-media-path` / `invalid-media-url` /
 * `no-url`) before any connection is made.
 */
import { MediaUnavailableError } from './media-unavailable-error.ts';

/** The hosts media is downloaded from: WhatsApp's media CDN, as Baileys builds its URLs. */
export const WHATSAPP_MEDIA_HOSTS: readonly string[] = Object.freeze(['mmg.whatsapp.net']);

const MAX_PATH = 4096;
/** Path and query characters (RFC 3986 unreserved, sub-delims, `:`, `@`, `/`, `?`, `%`). */
const PATH_ALPHABET = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/;
/** Percent-escapes that could smuggle a separator, a dot segment or a control character. */
const FORBIDDEN_ESCAPE = /%(?:[01][0-9A-Fa-f]|2[0Ee5Ff3]|7[Ff]|5[Cc]|40|3[Ff]|[89A-Fa-f][0-9A-Fa-f])/;

/** The https URL to fetch for a message's media reference, or throws {@link MediaUnavailableError}. */
export function mediaUrl(ref: { readonly url?: string | undefined; readonly directPath?: string | undefined }): URL {
  const host = WHATSAPP_MEDIA_HOSTS[0] as string;
  if (typeof ref.directPath === 'string' && ref.directPath.length > 0) {
    return allowlistedUrl(host, ref.directPath, 'invalid-media-path');
  }
  if (typeof ref.url === 'string' && ref.url.length > 0) {
    const match = WHATSAPP_MEDIA_HOSTS.find((candidate) => ref.url?.startsWith(`https://${candidate}/`));
    if (!match) throw new MediaUnavailableError('invalid-media-url');
    return allowlistedUrl(match, ref.url.slice(`https://${match}`.length), 'invalid-media-url');
  }
  throw new MediaUnavailableError('no-url');
}

function allowlistedUrl(host: string, path: string, reason: string): URL {
  if (!isSafePath(path)) throw new MediaUnavailableError(reason);
  let url: URL;
  try {
    url = new URL(`https://${host}${path}`);
  } catch {
    throw new MediaUnavailableError(reason);
  }
  const unchanged = url.pathname + url.search === path && url.hash === '';
  const sameOrigin = url.protocol === 'https:' && url.hostname === host && url.port === '' && url.username === '' && url.password === '';
  if (!unchanged || !sameOrigin) throw new MediaUnavailableError(reason);
  return url;
}

function isSafePath(path: string): boolean {
  if (path.length > MAX_PATH || !PATH_ALPHABET.test(path) || path.startsWith('//')) return false;
  if (/%(?![0-9A-Fa-f]{2})/.test(path) || FORBIDDEN_ESCAPE.test(path)) return false;
  const pathname = path.split('?', 1)[0] ?? '';
  return pathname.split('/').every((segment) => segment !== '.' && segment !== '..');
}
