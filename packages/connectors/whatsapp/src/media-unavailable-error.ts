import { OffchannelError } from '@offchannel/core';

/**
 * Media could not be archived; `reason` is the short code recorded on the attachment
 * (`invalid-media-url`, `timeout`, `mac-mismatch`, `stopped`…). Never carries a URL or a path:
 * those are the sender's and may identify people.
 */
export class MediaUnavailableError extends OffchannelError {
  readonly reason: string;

  constructor(reason: string, options?: { cause?: unknown }) {
    super('WHATSAPP_MEDIA_UNAVAILABLE', `media could not be archived (${reason}); the attachment is recorded unavailable with this reason.`, options);
    this.reason = reason;
  }
}
