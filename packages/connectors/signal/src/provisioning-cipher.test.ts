import { createCipheriv, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { IdentityKeyPair, PrivateKey, hkdf } from '@signalapp/libsignal-client';
import { describe, expect, it } from 'vitest';
import { serviceIdToBinary } from './proto/service-id.ts';
import { ProtoWriter } from './proto/wire.ts';
import { decryptProvisionEnvelope, encryptDeviceName } from './provisioning-cipher.ts';

const ACI = randomUUID();
const PNI = randomUUID();

/** What the primary phone does: ECDH with our QR key, HKDF, AES-256-CBC, HMAC. */
function phoneEncrypts(ourPublic: ReturnType<PrivateKey['getPublicKey']>, message: Uint8Array): Uint8Array {
  const ephemeral = PrivateKey.generate();
  const secrets = hkdf(64, ephemeral.agree(ourPublic), new Uint8Array(Buffer.from('TextSecure Provisioning Message')), null);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', secrets.subarray(0, 32), iv);
  const versioned = Buffer.concat([Buffer.of(1), iv, cipher.update(message), cipher.final()]);
  const body = Buffer.concat([versioned, createHmac('sha256', secrets.subarray(32)).update(versioned).digest()]);
  return new ProtoWriter().bytes(1, ephemeral.getPublicKey().serialize()).bytes(2, body).finish();
}

function provisionMessage(): Uint8Array {
  const aci = IdentityKeyPair.generate();
  const pni = IdentityKeyPair.generate();
  return new ProtoWriter()
    .bytes(1, aci.publicKey.serialize())
    .bytes(2, aci.privateKey.serialize())
    .string(3, '+15550100')
    .string(4, 'code-123')
    .bytes(11, pni.publicKey.serialize())
    .bytes(12, pni.privateKey.serialize())
    .bytes(17, serviceIdToBinary(ACI))
    .bytes(18, serviceIdToBinary(PNI))
    .finish();
}

describe('provisioning', () => {
  it('decrypts the phone’s ProvisionMessage', () => {
    const ours = PrivateKey.generate();
    const message = decryptProvisionEnvelope(phoneEncrypts(ours.getPublicKey(), provisionMessage()), ours);
    expect(message).toMatchObject({ aci: ACI, pni: `PNI:${PNI}`, number: '+15550100', provisioningCode: 'code-123' });
  });

  it('refuses a tampered, truncated or foreign envelope with SIGNAL_LINK_FAILED or SIGNAL_PROTOBUF_INVALID', () => {
    const ours = PrivateKey.generate();
    const good = phoneEncrypts(ours.getPublicKey(), provisionMessage());
    const tampered = Uint8Array.from(good);
    tampered[tampered.length - 40] = (tampered[tampered.length - 40] ?? 0) ^ 1;
    expect(() => decryptProvisionEnvelope(tampered, ours)).toThrow(expect.objectContaining({ code: 'SIGNAL_LINK_FAILED' }));
    expect(() => decryptProvisionEnvelope(good, PrivateKey.generate())).toThrow(/MAC/);
    expect(() => decryptProvisionEnvelope(good.subarray(0, 50), ours)).toThrow(expect.objectContaining({ code: 'SIGNAL_PROTOBUF_INVALID' }));
    const noIds = phoneEncrypts(ours.getPublicKey(), new ProtoWriter().string(4, 'x').finish());
    expect(() => decryptProvisionEnvelope(noIds, ours)).toThrow(/missing/);
  });

  it('encrypts the device name so that only the identity key holder can derive the key', () => {
    const identity = IdentityKeyPair.generate();
    const a = encryptDeviceName('offchannel archive', identity.publicKey);
    const b = encryptDeviceName('offchannel archive', identity.publicKey);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false); // fresh ephemeral key each time
    expect(Buffer.from(a).includes(Buffer.from('offchannel'))).toBe(false);
  });
});
