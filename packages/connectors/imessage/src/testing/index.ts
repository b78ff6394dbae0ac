/**
 * `@offchannel/imessage/testing` — our own fixture tools: a live fixture chat.db (recent and
 * older macOS layouts, WAL mode) changed by a separate writer process, the typedstream writer
 * and the binary-plist writer that build its blobs, and a helper to wait for captured keys.
 */
export { createChatDbFixture, waitForKeys } from './chat-db-fixture.ts';
export type { ChatDbFixture, ChatDbFixtureOptions, FixtureEvent } from './chat-db-fixture.ts';
export { chatDbSchemaSql } from './chat-db-schema.ts';
export type { ChatDbSchema } from './chat-db-schema.ts';
export { encodeAttributedBody } from '../typedstream/typedstream-writer.ts';
export type { EncodeAttributedBodyOptions, WritableRun, WritableValue } from '../typedstream/typedstream-writer.ts';
export { encodeBplist } from '../bplist/bplist-writer.ts';
export { playDemoConversation } from './demo-conversation.ts';
export type { DemoOptions, DemoStep } from './demo-conversation.ts';
export { moveBelowCursor, plantUnsentRow } from './chat-db-surgery.ts';
export { ChatDbWriter } from './chat-db-writer.ts';
export type { WriterOp, WriterResult } from './chat-db-writer.ts';
