/**
 * Media capture: a message's file is downloaded while its file reference is fresh and stored
 * as a content-addressed blob (hashed by the recorder). A file that cannot be fetched is never
 * dropped silently: the record names it as an `unavailable` attachment with the reason.
 */
import { OffchannelError, type AttachmentInput, type ConnectorContext } from '@offchannel/core';
import { errorCode } from './error-code.ts';
import type { MediaDescriptor } from './map-telegram.ts';

/** Downloads one media file. The connector's default uses mtcute's `downloadAsBuffer`. */
export type MediaDownloader = (media: MediaDescriptor, signal: AbortSignal) => Promise<Uint8Array>;

/** Default largest file downloaded (256 MiB); Telegram allows up to 2–4 GB. */
export const DEFAULT_MAX_MEDIA_BYTES = 256 * 1024 * 1024;

export async function captureAttachment(
  media: MediaDescriptor,
  download: MediaDownloader,
  maxBytes: number | undefined,
  ctx: Pick<ConnectorContext, 'logger' | 'signal'>,
): Promise<AttachmentInput> {
  const limit = maxBytes ?? DEFAULT_MAX_MEDIA_BYTES;
  const declared = { mime: media.mime, ...(media.name === undefined ? {} : { name: media.name }), ...(media.size === undefined ? {} : { size: media.size }) };
  if (media.size !== undefined && media.size > limit) {
    return { status: 'unavailable', reason: `too-large: ${media.size} bytes exceeds the ${limit}-byte download limit`, ...declared };
  }
  try {
    const bytes = await download(media, ctx.signal);
    if (!(bytes instanceof Uint8Array)) throw new OffchannelError('TELEGRAM_DOWNLOAD_INVALID', 'downloader returned no bytes');
    if (bytes.length > limit) return { status: 'unavailable', reason: `too-large: more than ${limit} bytes`, ...declared };
    return { bytes, mime: media.mime, ...(media.name === undefined ? {} : { name: media.name }) };
  } catch (error) {
    const code = errorCode(error);
    ctx.logger.warn({ kind: media.kind, code }, 'media download failed; recording the attachment as unavailable');
    return { status: 'unavailable', reason: `download-failed: ${code}`, ...declared };
  }
}
