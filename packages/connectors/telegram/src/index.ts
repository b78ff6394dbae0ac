/**
 * `@offchannel/telegram` — captures an employee's Telegram account: the MTProto user-session
 * route (mtcute: persisted update state, gap recovery) and the Bot API Business webhook route
 * (grammY). The mappings to capture inputs are in `map-telegram.ts` and `business/map-business.ts`.
 */

// MTProto user session
export { createTelegramConnector } from './telegram-connector.ts';
export type { TelegramConnectorHandle, TelegramConnectorOptions } from './telegram-connector.ts';
export { linkTelegram, telegramStateScope } from './link-telegram.ts';
export type { LinkTelegramOptions, LinkedTelegramAccount, TelegramLinkIo } from './link-telegram.ts';
export { reconcileTelegram } from './reconcile-telegram.ts';
export type { ReconcileTelegramOptions, ReconcileTelegramReport } from './reconcile-telegram.ts';
export { parseTelegramConnectorConfig } from './config.ts';
export type { TelegramConnectorConfig } from './config.ts';
export { SessionInUseError } from './session-lease.ts';
export { hasTelegramSession, storedApiHash } from './state-storage.ts';
export type { TelegramClientFactory } from './client-factory.ts';
export { DEFAULT_MAX_MEDIA_BYTES } from './media.ts';
export type { MediaDownloader } from './media.ts';

// The MTProto mapping and its evidence format
export {
  IGNORED_UPDATES,
  TL_MEDIA_MIME,
  contentFingerprint,
  conversationOf,
  evidenceOf,
  gapInput,
  historyEvidence,
  mapTelegramRaw,
  mapTelegramUpdate,
  mediaOf,
  memoryAfter,
  memoryFromRecords,
  partyOf,
  peersOf,
  ptsOf,
  reactionSet,
  sessionInput,
  unsupportedUpdate,
  updateEvidence,
} from './map-telegram.ts';
export type { MediaDescriptor, MessageMemory, PeerLookup, RecordedEvidence, TelegramMapEnv } from './map-telegram.ts';
export { rederiveTelegramRecord } from './rederive-telegram.ts';
export type { RederivedTelegramRecord, TelegramArchiveReader } from './rederive-telegram.ts';
export { MAX_TL_BYTES, TL_LAYER, TL_RAW_FORMAT, TelegramDecodeError, constructorIdOf, decodeTl, encodeTl } from './tl-evidence.ts';

// Bot API Business route
export { BOT_API_MAX_DOWNLOAD_BYTES, botApiDownloader, createTelegramBusinessConnector } from './business/business-connector.ts';
export type { BotFileDownloader, TelegramBusinessHandle, TelegramBusinessOptions } from './business/business-connector.ts';
export { BOT_API_JSON_MIME, BOT_API_RAW_FORMAT, businessFingerprint, filesOf, mapBusinessUpdate, unsupportedBotUpdate } from './business/map-business.ts';
export type { BotFileDescriptor, BusinessMapEnv } from './business/map-business.ts';
