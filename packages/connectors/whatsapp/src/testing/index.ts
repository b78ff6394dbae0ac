/**
 * `@offchannel/whatsapp/testing` — run the real WhatsApp connector offline: an offline socket
 * on Baileys' own receive path, simulated contacts with real Signal sessions, a loopback media
 * CDN, and fixture builders made with Baileys' own message builders.
 */
export { createWhatsAppTestDriver, seedOfflineLink } from './offline-driver.ts';
export type { TestPhone, WhatsAppTestDriver, WhatsAppTestDriverOptions } from './offline-driver.ts';
export { createOfflineSocketFactory } from './offline-socket.ts';
export type { HistoryRequest, OfflineSocket, OfflineSocketFactory } from './offline-socket.ts';
export { createSignalPeer } from './signal-peer.ts';
export type { SignalPeer } from './signal-peer.ts';
export { startMediaServer } from './media-server.ts';
export type { MediaServer } from './media-server.ts';
export { createTestCertificate } from './test-certificate.ts';
export { rederiveWhatsAppArchive } from './rederive.ts';
export type { RederiveResult } from './rederive.ts';
export type { TestCertificate } from './test-certificate.ts';
export {
  JIDS,
  ciphertextStub,
  editContent,
  encryptMedia,
  envelope,
  groupStub,
  mediaContent,
  reactionContent,
  revokeContent,
  secretEditContent,
  textContent,
} from './fixtures.ts';
export type { EncryptedMedia, Where } from './fixtures.ts';
/** Baileys' own WAProto and content helpers, re-exported for fixtures and benchmarks outside this package. */
export { getContentType, normalizeMessageContent, proto } from '@whiskeysockets/baileys';
