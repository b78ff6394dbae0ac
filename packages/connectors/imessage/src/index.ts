/**
 * `@offchannel/imessage` — the iMessage relay: records iMessage, SMS and RCS from a Mac's
 * chat.db within a second of delivery, including edits, unsends, tapbacks, replies, group
 * events and attachments, with its own typedstream and binary-plist decoders. Read-only,
 * `node:sqlite` only. The row → record mapping is in `map-chat-db-row.ts`.
 */
export { IMessageConnector, createIMessageConnector } from './imessage-connector.ts';
export type { ChatDbEvent, ReconcileReport } from './chat-db-source.ts';
export { parseIMessageConnectorConfig } from './config.ts';
export type { IMessageConnectorOptions } from './config.ts';
export { BplistError, ChatDbError, TypedstreamError } from './errors.ts';
export { decodeAttributedBody } from './typedstream/attributed-body.ts';
export type { AttributeRun, AttributeValue, AttributedBody } from './typedstream/attributed-body.ts';
export { MAX_TYPEDSTREAM_DEPTH, MAX_TYPEDSTREAM_VALUES, decodeTypedstream, typedstreamWorkLimit } from './typedstream/typedstream-reader.ts';
export type { TsClass, TsGroup, TsObject, TsValue } from './typedstream/typedstream-reader.ts';
export { bplistWorkLimit, parseBplist } from './bplist/bplist-reader.ts';
export type { PlistValue } from './bplist/bplist-reader.ts';
export { parseSummaryInfo } from './summary-info.ts';
export type { EditVersion, SummaryInfo } from './summary-info.ts';
export { OBSERVATION_FORMAT, TAPBACKS, decodeObservation, encodeObservation, keys as captureKeys, lostHistory, mapAttachmentCompleted, mapChatDbEvent, mapNewChat, mapNewRow, mapObservation, mapRowChanges, parseAssociatedGuid } from './map-chat-db-row.ts';
export type { ChatDbEvidence, MapContext, Observation, SweepReport } from './map-chat-db-row.ts';
export { RAW_ROW_FORMAT, decodeRawRow, encodeRawRow } from './raw-row.ts';
export type { RowBundle, SqlRow, SqlValue } from './chat-db/chat-db.ts';
export { appleDateToIso, appleSecondsToIso, unixMsToAppleNs } from './apple-time.ts';
export { PACKAGE_VERSION } from './version.ts';
