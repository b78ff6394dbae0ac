/**
 * `@offchannel/whatsapp` — captures everything a WhatsApp account sends and receives, as a
 * linked device (Baileys), into the offchannel archive. See README.md for the mapping.
 */
export { createWhatsAppConnector } from './whatsapp-connector.ts';
export type { WhatsAppConnector, WhatsAppConnectorOptions, WhatsAppSocket, WhatsAppSocketFactory } from './whatsapp-connector.ts';
export { parseWhatsAppConnectorConfig } from './config.ts';
export { linkWhatsApp } from './link-whatsapp.ts';
export type { LinkIO, LinkWhatsAppOptions, LinkedAccount } from './link-whatsapp.ts';
export { clearAuthState, hasAuthState, openAuthState } from './auth-state.ts';
export type { StoredAuthState } from './auth-state.ts';
export { EVENT_FORMAT, HISTORY_PAYLOAD_FORMAT, PHONE_LOGOUT_DAYS, UNENCODABLE_FORMAT, archiveKeysOf, encodeEventEvidence, mapDeleteForMe, mapEnvelope, mapMediaOutcome, mapWhatsAppEvent, offlineCountKey } from './map-whatsapp.ts';
export { HistoryReconciler, MAX_ATTEMPTS } from './history-reconcile.ts';
export type { FetchMessageHistory, GapOutcome, ReconcileWhatsAppOptions, ReconcileWhatsAppReport } from './history-reconcile.ts';
export { MAX_HISTORY_ENTRIES, MAX_HISTORY_INFLATED_BYTES, MAX_HISTORY_MESSAGES, checkHistoryPayload } from './history-payload.ts';
export type { HistoryPayloadProblem } from './history-payload.ts';
export type { GroupEvidence, MapDependencies, MappedEnvelope, MappedEvent, MediaOutcome, PendingMedia, WhatsAppEventEvidence, WhatsAppIdentity } from './map-whatsapp.ts';
export { RAW_FORMAT, decodeEnvelope, decodeRawEvidence, encodeRawEvidence, freezeMessage, keyExtras } from './raw-envelope.ts';
export type { CapturedEnvelope, EnvelopeOrigin, KeyExtras, RawSidecar } from './raw-envelope.ts';
export { MediaUnavailableError, createMediaDownloader, isPublicAddress, publicAddressLookup } from './media-download.ts';
export type { AddressResolver, MediaDownloader, MediaDownloaderOptions, MediaHostResolver, MediaKind, MediaRef } from './media-download.ts';
export { WHATSAPP_MEDIA_HOSTS, mediaUrl } from './media-url.ts';
export { DEFAULT_MEDIA_CONCURRENCY, MediaQueue } from './media-queue.ts';
export { MESSAGE_EDIT_USE_CASE, openSecretMessage, sealSecretMessage } from './message-secret.ts';
export { tapEmitter } from './emit-tap.ts';
export type { EmitTap } from './emit-tap.ts';
export { PACKAGE_VERSION, UPSTREAM } from './version.ts';
