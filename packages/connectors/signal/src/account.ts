import type { StateStore } from '@offchannel/core';
import { IdentityKeyPair } from '@signalapp/libsignal-client';
import { SignalError } from './signal-error.ts';

/** State name of the linked-device account. */
export const ACCOUNT_STATE = 'account';

/**
 * The linked device's credentials, kept only in the secret state store (encrypted, 0600).
 * The identity private keys come from the employee's phone during linking.
 */
export interface SignalAccount {
  readonly version: 1;
  readonly aci: string;
  /** `PNI:<uuid>`. */
  readonly pni: string;
  /** The account's phone number, if the phone shared it. */
  readonly number?: string;
  readonly deviceId: number;
  readonly password: string;
  readonly registrationId: number;
  readonly pniRegistrationId: number;
  readonly aciIdentity: IdentityKeyPair;
  readonly pniIdentity: IdentityKeyPair;
  /** Next ids for one-time prekeys (EC and Kyber share the counter), per identity. */
  readonly nextPreKeyId: { readonly aci: number; readonly pni: number };
  /** Id of the current signed and Kyber last-resort prekeys, per identity (1 at link time). */
  readonly signedPreKeyId?: { readonly aci: number; readonly pni: number };
  /** When the signed prekeys were last replaced (default: `linkedAt`). */
  readonly signedPreKeyRotatedAt?: string;
  readonly linkedAt: string;
}

interface StoredAccount extends Omit<SignalAccount, 'aciIdentity' | 'pniIdentity'> {
  readonly aciIdentity: string;
  readonly pniIdentity: string;
}

export async function loadAccount(state: StateStore): Promise<SignalAccount | undefined> {
  const stored = await state.getJson<StoredAccount>(ACCOUNT_STATE);
  if (stored === undefined) return undefined;
  if (stored.version !== 1 || typeof stored.aci !== 'string' || typeof stored.password !== 'string' || !Number.isInteger(stored.deviceId)) {
    throw new SignalError('SIGNAL_STATE_CORRUPT', 'the saved Signal account is damaged or from an unknown version; relink the device.');
  }
  return {
    ...stored,
    aciIdentity: IdentityKeyPair.deserialize(Buffer.from(stored.aciIdentity, 'base64')),
    pniIdentity: IdentityKeyPair.deserialize(Buffer.from(stored.pniIdentity, 'base64')),
  };
}

/** The JSON form written to the state store (identity key pairs as base64). */
export function encodeAccount(account: SignalAccount): unknown {
  const stored: StoredAccount = {
    ...account,
    aciIdentity: Buffer.from(account.aciIdentity.serialize()).toString('base64'),
    pniIdentity: Buffer.from(account.pniIdentity.serialize()).toString('base64'),
  };
  return stored;
}
