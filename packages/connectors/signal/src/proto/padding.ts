import { SignalError } from '../signal-error.ts';

/**
 * Removes Signal's content padding: the plaintext of every message is
 * `Content || 0x80 || 0x00…`. Scans back over zero bytes to the `0x80` terminator; anything
 * else is an error (`SIGNAL_PADDING_INVALID`), because it means the plaintext is not what the
 * sender padded.
 */
export function stripPadding(plaintext: Uint8Array): Uint8Array {
  for (let i = plaintext.length - 1; i >= 0; i--) {
    const byte = plaintext[i];
    if (byte === 0x80) return plaintext.subarray(0, i);
    if (byte !== 0x00) break;
  }
  throw new SignalError('SIGNAL_PADDING_INVALID', 'decrypted content does not end in 0x80 followed by zero bytes; the envelope is archived as unsupported with its bytes.');
}

/** Pads content as Signal senders do: terminator, then zeros up to one less than a multiple of 160. */
export function addPadding(content: Uint8Array): Uint8Array<ArrayBuffer> {
  const withTerminator = content.length + 1;
  const parts = Math.ceil((withTerminator + 1) / 160);
  const out = new Uint8Array(parts * 160 - 1);
  out.set(content);
  out[content.length] = 0x80;
  return out;
}
