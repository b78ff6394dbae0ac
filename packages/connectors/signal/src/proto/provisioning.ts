/**
 * Linking messages (our own minimal schema from wire field numbers): the encrypted envelope the primary phone sends, the decrypted ProvisionMessage,
 * and the encrypted DeviceName we register with.
 */
import { protobufError, FieldReader } from './wire.ts';
import { serviceIdFromBinary } from './service-id.ts';

export interface ProvisionEnvelope {
  readonly publicKey: Uint8Array;
  readonly body: Uint8Array;
}

export function decodeProvisionEnvelope(bytes: Uint8Array): ProvisionEnvelope {
  const r = new FieldReader(bytes, 'ProvisionEnvelope');
  const publicKey = r.bytes(1);
  const body = r.bytes(2);
  if (publicKey === undefined || body === undefined) throw protobufError('publicKey or body missing', 'ProvisionEnvelope');
  return { publicKey, body };
}

/** What the primary phone hands the new linked device. Holds identity private keys: never log. */
export interface ProvisionMessage {
  readonly aciIdentityPublic: Uint8Array;
  readonly aciIdentityPrivate: Uint8Array;
  readonly pniIdentityPublic: Uint8Array;
  readonly pniIdentityPrivate: Uint8Array;
  readonly aci: string;
  /** `PNI:<uuid>`. */
  readonly pni: string;
  readonly number?: string;
  readonly provisioningCode: string;
  readonly provisioningVersion?: number;
}

export function decodeProvisionMessage(bytes: Uint8Array): ProvisionMessage {
  const what = 'ProvisionMessage';
  const r = new FieldReader(bytes, what);
  const need = (field: number, name: string): Uint8Array => {
    const v = r.bytes(field);
    if (v === undefined || v.length === 0) throw protobufError(`${name} missing`, what);
    return v;
  };
  const aci = serviceIdFromBinary(need(17, 'aciBinary'), what);
  const pniBytes = need(18, 'pniBinary');
  const pniRaw = serviceIdFromBinary(pniBytes, what);
  const code = r.string(4);
  if (code === undefined || code === '') throw protobufError('provisioningCode missing', what);
  const number = r.string(3);
  const version = r.number(9);
  return {
    aciIdentityPublic: need(1, 'aciIdentityKeyPublic'),
    aciIdentityPrivate: need(2, 'aciIdentityKeyPrivate'),
    pniIdentityPublic: need(11, 'pniIdentityKeyPublic'),
    pniIdentityPrivate: need(12, 'pniIdentityKeyPrivate'),
    aci,
    pni: pniRaw.startsWith('PNI:') ? pniRaw : `PNI:${pniRaw}`,
    ...(number === undefined || number === '' ? {} : { number }),
    provisioningCode: code,
    ...(version === undefined ? {} : { provisioningVersion: version }),
  };
}
