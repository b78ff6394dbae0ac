import { OffchannelError } from './offchannel-error.ts';

/**
 * The secret state store cannot be used safely. `code` is one of:
 * - `STATE_KEY_MISSING` — no key given and the store was not explicitly opened unencrypted;
 * - `STATE_KEY_INVALID` — the key is not 32 bytes of base64/hex, or its file is readable by others;
 * - `STATE_KEY_WRONG` — the key does not open this store (it was created with another key);
 * - `STATE_CORRUPT` — a state file is damaged or was moved from another name;
 * - `STATE_MODE_MISMATCH` — an encrypted store opened as unencrypted, or the reverse;
 * - `STATE_INVALID_NAME` — a state name or scope contains characters that are not allowed;
 * - `STATE_UNAVAILABLE` — a state table cannot work here (no `node:sqlite`) or its disk sync
 *   failed (nothing after its last durable write is kept).
 * Messages never include key material or state contents.
 */
export class StateStoreError extends OffchannelError {}
