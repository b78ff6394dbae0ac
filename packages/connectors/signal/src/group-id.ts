import { GroupMasterKey, GroupSecretParams } from '@signalapp/libsignal-client/dist/zkgroup/index.js';

/**
 * The public id of a Signal v2 group (base64, as Signal clients show it), derived from the
 * group's master key with libsignal's zkgroup. Throws if the key is not a valid master key.
 */
export function groupIdFromMasterKey(masterKey: Uint8Array): string {
  const params = GroupSecretParams.deriveFromMasterKey(new GroupMasterKey(Uint8Array.from(masterKey)));
  return params.getPublicParams().getGroupIdentifier().toString();
}
