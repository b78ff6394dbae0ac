import { hash } from 'node:crypto';

/** The `prev` of the first record in every stream: 64 zeros. */
export const ZERO_HASH = '0'.repeat(64);

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Lowercase hex SHA-256 of `bytes` — the only hash function the archive uses. */
export function sha256Hex(bytes: Uint8Array): string {
  return hash('sha256', bytes, 'hex');
}

/** True for a lowercase 64-character hex string. */
export function isSha256Hex(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}
