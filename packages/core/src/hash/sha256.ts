import { hash } from 'node:crypto';

/** The `prev` of the first record in every stream: 64 zeros. */
export const ZERO_HASH = '0'.repeat(64);


/** Lowercase hex SHA-256 of `bytes` — the only hash function the archive uses. */
export function sha256Hex(bytes: Uint8Array): string {
  return hash('sha256', bytes, 'hex');
}

/** True for a lowercase 64-character hex string (checked per character: it runs once per record in verification). */
export function isSha256Hex(value: unknown): value is string {
  if (typeof value !== 'string' || value.length !== 64) return false;
  for (let index = 0; index < 64; index++) {
    const code = value.charCodeAt(index);
    if (!((code >= 0x30 && code <= 0x39) || (code >= 0x61 && code <= 0x66))) return false;
  }
  return true;
}
