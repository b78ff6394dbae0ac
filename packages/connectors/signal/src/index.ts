/**
 * `@offchannel/signal` — captures an employee's Signal account as a linked device (libsignal),
 * recording every message at delivery and acknowledging it only once its record is durable.
 * AGPL-3.0-only (it links `@signalapp/libsignal-client`).
 */
export { SignalConnector, createSignalConnector } from './signal-connector.ts';
export type { FaultPoint, SignalConnectorOptions, SignalStatus } from './signal-connector.ts';
export { parseSignalConnectorConfig } from './config.ts';
export { linkSignalDevice } from './link-device.ts';
export type { LinkIo, LinkSignalDeviceOptions, LinkedDevice } from './link-device.ts';
export { PRODUCTION_TRUST_ROOTS, STAGING_TRUST_ROOTS, USER_AGENT, createNet } from './signal-server.ts';
export type { SignalServer } from './signal-server.ts';
export { DEFAULT_MAX_ATTACHMENT_BYTES, PRODUCTION_CDN_URLS, decryptAttachment, httpsAttachmentFetcher, paddedAttachmentSize } from './attachments.ts';
export type { AttachmentFetcher } from './attachments.ts';
export {
  RAW_CONTENT_FORMAT,
  RAW_ENVELOPE_FORMAT,
  RAW_PADDED_PLAINTEXT_FORMAT,
  attachmentPointersOf,
  mapContentless,
  mapDeviceUnlinked,
  mapIdentityChange,
  mapLinkedDevice,
  mapOfflineGap,
  mapSignalContent,
  mapUndecryptable,
  mapUnlinkRisk,
  mapUnreadable,
} from './map-signal-content.ts';
export type { AttachmentResults, EnvelopeFacts, EnvelopeHeader } from './map-signal-content.ts';
export { rederiveSignalRecord } from './rederive-signal-record.ts';
export type { SignalStreamContext } from './rederive-signal-record.ts';
export { decodeContent, decodeEnvelope } from './proto/signal-content.ts';
export type { AttachmentPointer, Content, DataMessage, EditMessage, Envelope, SyncMessage, SyncSent } from './proto/signal-content.ts';
export { addPadding, stripPadding } from './proto/padding.ts';
export { SignalError } from './signal-error.ts';
export { LIBSIGNAL_VERSION, SIGNAL_PACKAGE_VERSION } from './version.ts';
