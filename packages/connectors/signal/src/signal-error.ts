import { OffchannelError } from '@offchannel/core';

/**
 * An error of the Signal connector. `code` is one of:
 * - `SIGNAL_PROTOBUF_INVALID` — bytes that should be a protobuf message are truncated or malformed;
 * - `SIGNAL_PADDING_INVALID` — decrypted content does not end in Signal's `0x80 0x00…` padding;
 * - `SIGNAL_ATTACHMENT_INVALID` — an attachment failed its digest, MAC, decryption or size check;
 * - `SIGNAL_ATTACHMENT_DOWNLOAD_FAILED` — the CDN did not deliver an attachment;
 * - `SIGNAL_NOT_LINKED` — no linked-device account in the state store: run the link command;
 * - `SIGNAL_LINK_FAILED` — linking did not complete (provisioning socket, decryption, server refusal);
 * - `SIGNAL_KEY_MISSING` — a session or prekey an envelope needs is not in the state store;
 * - `SIGNAL_PREKEY_REUSED` — a last-resort prekey was offered again with the same base key (replay);
 * - `SIGNAL_STATE_CORRUPT` — the connector's saved state is damaged;
 * - `SIGNAL_CONFIG_INVALID` — a programmatic option is invalid (config files get core's `ConfigError`);
 * - `SIGNAL_SERVER_REFUSED` — the chat server answered a request with an error status.
 * Messages never contain message text or key material.
 */
export class SignalError extends OffchannelError {}
