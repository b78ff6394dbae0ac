/**
 * `@offchannel/telegram/testing` — the offline harness: the real connector on mtcute's real
 * updates engine, with Telegram's servers replaced by an in-process {@link LocalTelegramServer}.
 */
export { LOCAL_API, LOCAL_IDS, LocalTelegramPeer, createLocalTelegramPeer } from './local-telegram-peer.ts';
export type { LocalChat, LocalFile, LocalMessageRef, LocalTelegramPeerOptions } from './local-telegram-peer.ts';
export { LocalTelegramServer, fixtureLong } from './local-telegram-server.ts';
export type { InjectedRpcError } from './local-telegram-server.ts';
