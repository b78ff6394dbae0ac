/**
 * `@offchannel/delivery` — SMTP journaling into the archives firms already run: each record
 * (or conversation-day) as the EML `offchannel export` writes, sent to a journaling address
 * exactly once per Message-ID, in order, resumable, with a receipt record for every message.
 */
export { DELIVERY_PACKAGE, Deliverer } from './deliverer.ts';
export type { DelivererOptions, DeliveryReport, DeliveryStatus, MissedRecords, StreamProgress } from './deliverer.ts';
export { DeliveryError } from './delivery-error.ts';
export { DELIVERY_MODES, checkTarget, isLoopback } from './delivery-target.ts';
export type { DeliveryMode, DeliveryTarget, SmtpEndpoint } from './delivery-target.ts';
export { MISSED_EVENT, RECEIPT_CHANNEL, RECEIPT_EVENT, RECEIPT_RAW_FORMAT, REFUSAL_EVENT, parseSeqRanges, readReceipts, receiptStream, seqRanges } from './delivery-receipts.ts';
export type { Receipt } from './delivery-receipts.ts';
export { DeliveryState } from './delivery-state.ts';
export type { DeliveryCursor, InFlight } from './delivery-state.ts';
export { checkDelivery } from './check-delivery.ts';
export type { DeliveryCheck, StreamCheck, UndeliveredRecord } from './check-delivery.ts';
export { renderMessages } from './render-messages.ts';
export type { OutgoingMessage, RenderOptions } from './render-messages.ts';
