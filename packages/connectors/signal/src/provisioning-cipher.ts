/**
 * Decryption of the ProvisionEnvelope the primary phone sends after scanning the link QR code:
 * ECDH between our ephemeral key and the phone's, HKDF-SHA256 to 64 bytes ("TextSecure
 * Provisioning Message"), then `0x01 | iv(16) | AES-256-CBC(ProvisionMessage) | HMAC-SHA256(32)`,
 * MAC checked (timing-safe) before decrypting. Also the DeviceName encryption used when
 * registering the linked device.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { PrivateKey, type PublicKey, hkdf, PublicKey as PublicKeyClass } from '@signalapp/libsignal-client';
import { type ProvisionMessage, decodeProvisionEnvelope, decodeProvisionMessage } from './proto/provisioning.ts';
import { ProtoWriter } from './proto/wire.ts';
import { SignalError } from './signal-error.ts';

const INFO = new TextEncoder().encode('TextSecure Provisioning Message');

export function decryptProvisionEnvelope(envelopeBytes: Uint8Array, ephemeral: PrivateKey): ProvisionMessage {
  const fail = (why: string): SignalError => new SignalError('SIGNAL_LINK_FAILED', `the phone's provisioning message ${why}; scan a fresh link code.`);
  const envelope = decodeProvisionEnvelope(envelopeBytes);
  let theirs: PublicKey;
  try {
    theirs = PublicKeyClass.deserialize(Uint8Array.from(envelope.publicKey));
  } catch {
    throw fail('has an invalid public key');
  }
  const secrets = hkdf(64, ephemeral.agree(theirs), new Uint8Array(INFO), null);
  const body = envelope.body;
  if (body.length < 1 + 16 + 16 + 32 || body[0] !== 0x01) throw fail('has an unknown version or is truncated');
  const mac = createHmac('sha256', secrets.subarray(32)).update(body.subarray(0, body.length - 32)).digest();
  if (!timingSafeEqual(mac, body.subarray(body.length - 32))) throw fail('failed its MAC check');
  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-cbc', secrets.subarray(0, 32), body.subarray(1, 17));
    plaintext = Buffer.concat([decipher.update(body.subarray(17, body.length - 32)), decipher.final()]);
  } catch {
    throw fail('could not be decrypted');
  }
  return decodeProvisionMessage(plaintext);
}

/**
 * Encrypts the device name shown in the phone's "Linked devices" list so only the account's
 * devices can read it: ECDH with the ACI identity key, a synthetic IV from an HMAC of the name,
 * AES-256-CTR. Returns the DeviceName protobuf (ephemeralPublic=1, syntheticIv=2, ciphertext=3).
 */
export function encryptDeviceName(name: string, identityPublic: PublicKey): Uint8Array<ArrayBuffer> {
  const plaintext = Buffer.from(name, 'utf8');
  const ephemeral = PrivateKey.generate();
  const master = ephemeral.agree(identityPublic);
  const authKey = createHmac('sha256', master).update('auth').digest();
  const syntheticIv = createHmac('sha256', authKey).update(plaintext).digest().subarray(0, 16);
  const cipherKeySeed = createHmac('sha256', master).update('cipher').digest();
  const cipherKey = createHmac('sha256', cipherKeySeed).update(syntheticIv).digest();
  const cipher = createCipheriv('aes-256-ctr', cipherKey, Buffer.alloc(16));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return new ProtoWriter().bytes(1, ephemeral.getPublicKey().serialize()).bytes(2, syntheticIv).bytes(3, ciphertext).finish();
}
