/**
 * Linking this connector to an employee's Signal account as a linked device, the way Signal
 * Desktop does (never a modified Signal client):
 *
 * 1. open the provisioning socket; the server assigns a provisioning address;
 * 2. show `sgnl://linkdevice?uuid=<address>&pub_key=<our ephemeral key>` as a QR code;
 * 3. the phone scans it and sends an encrypted ProvisionMessage (identity keys, ACI, PNI,
 *    provisioning code); decrypt it;
 * 4. register: `PUT /v1/devices/link` with signed EC and Kyber last-resort prekeys for both
 *    the ACI and the PNI identity, signed by those identities;
 * 5. save the account and keys in the secret state store, connect, upload one-time prekeys.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { Logger, StateStore } from '@offchannel/core';
import { noopLogger } from '@offchannel/core';
import { IdentityKeyPair, PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import type { ChatServerMessageAck, Net } from '@signalapp/libsignal-client/dist/net.js';
import { type SignalAccount, ACCOUNT_STATE, encodeAccount } from './account.ts';
import { chatJson } from './chat-request.ts';
import { generateSignedPreKeys, topUpPreKeys } from './prekeys.ts';
import { decryptProvisionEnvelope, encryptDeviceName } from './provisioning-cipher.ts';
import { protocolStores } from './protocol-stores.ts';
import type { ProvisionMessage } from './proto/provisioning.ts';
import { SignalError } from './signal-error.ts';
import { type SignalServer, createNet } from './signal-server.ts';
import { StagedState } from './staged-state.ts';

/** How the caller (the CLI) shows the link code to the employee. */
export interface LinkIo {
  /** Render `uri` as a QR code for the employee to scan in Signal → Settings → Linked devices. */
  showLinkUri(uri: string): void | Promise<void>;
}

export interface LinkSignalDeviceOptions {
  /** This account's secret state (the same scope the connector's `ctx.state` will have). */
  readonly state: StateStore;
  /** Which Signal service (default production); ignored when `net` is given. */
  readonly server?: SignalServer;
  /** A libsignal network stack to use instead of one built from `server` (tests). */
  readonly net?: Net;
  readonly io: LinkIo;
  /** Shown in the phone's list of linked devices. Default `offchannel archive`. */
  readonly deviceName?: string;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
  /** How long to wait for the phone to scan, ms. Default 10 minutes. */
  readonly timeoutMs?: number;
  /** Replace an account already linked in this state. Default false (refuse). */
  readonly replace?: boolean;
}

export interface LinkedDevice {
  readonly aci: string;
  readonly pni: string;
  readonly deviceId: number;
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

/** Links a new device and stores its account. Resolves once keys are uploaded. */
export async function linkSignalDevice(options: LinkSignalDeviceOptions): Promise<LinkedDevice> {
  const logger = options.logger ?? noopLogger;
  if (options.replace !== true && (await options.state.get(ACCOUNT_STATE)) !== undefined) {
    throw new SignalError('SIGNAL_LINK_FAILED', 'this account is already linked; unlink it on the phone and pass replace to link again.');
  }
  const net = options.net ?? createNet(options.server ?? { environment: 'production' });
  const message = await receiveProvisionMessage(net, options, logger);
  logger.info({ provisioningVersion: message.provisioningVersion }, 'provisioning message received; registering the linked device');

  const aciIdentity = new IdentityKeyPair(PublicKey.deserialize(Uint8Array.from(message.aciIdentityPublic)), PrivateKey.deserialize(Uint8Array.from(message.aciIdentityPrivate)));
  const pniIdentity = new IdentityKeyPair(PublicKey.deserialize(Uint8Array.from(message.pniIdentityPublic)), PrivateKey.deserialize(Uint8Array.from(message.pniIdentityPrivate)));
  const registrationId = randomInt(1, 16381);
  const pniRegistrationId = randomInt(1, 16381);
  const password = randomBytes(18).toString('base64url');
  const stage = new StagedState(options.state);
  const aciKeys = generateSignedPreKeys(aciIdentity, 'aci', stage, 1);
  const pniKeys = generateSignedPreKeys(pniIdentity, 'pni', stage, 1);

  const body = {
    verificationCode: message.provisioningCode,
    accountAttributes: {
      fetchesMessages: true,
      registrationId,
      pniRegistrationId,
      name: b64(encryptDeviceName(options.deviceName ?? 'offchannel archive', aciIdentity.publicKey)),
      capabilities: { attachmentBackfill: true, spqr: true },
    },
    aciSignedPreKey: aciKeys.signedPreKey,
    pniSignedPreKey: pniKeys.signedPreKey,
    aciPqLastResortPreKey: aciKeys.pqLastResortPreKey,
    pniPqLastResortPreKey: pniKeys.pqLastResortPreKey,
  };
  const response = await registerDevice(net, message, password, body);
  const account: SignalAccount = {
    version: 1,
    aci: message.aci,
    pni: message.pni,
    ...(message.number === undefined ? {} : { number: message.number }),
    deviceId: response.deviceId,
    password,
    registrationId,
    pniRegistrationId,
    aciIdentity,
    pniIdentity,
    nextPreKeyId: { aci: 2, pni: 2 },
    signedPreKeyId: { aci: 1, pni: 1 },
    linkedAt: new Date().toISOString(),
  };
  stage.setJson(ACCOUNT_STATE, encodeAccount(account));
  await stage.commit();
  logger.info({ deviceId: account.deviceId }, 'linked; uploading one-time prekeys');

  const chat = await net.connectAuthenticatedChat(`${account.aci}.${account.deviceId}`, password, false, {
    onIncomingMessage: () => {
      // Not acknowledged: anything queued already is delivered again to the connector.
    },
    onQueueEmpty: () => undefined,
    onConnectionInterrupted: () => undefined,
  });
  try {
    const noop = () => undefined;
    const stores = {
      aci: protocolStores(stage, 'aci', aciIdentity, registrationId, noop),
      pni: protocolStores(stage, 'pni', pniIdentity, pniRegistrationId, noop),
    };
    await topUpPreKeys({ chat, account, state: stage, stores, logger, force: true });
  } finally {
    await chat.disconnect();
  }
  return { aci: account.aci, pni: account.pni, deviceId: account.deviceId };
}

async function receiveProvisionMessage(net: Net, options: LinkSignalDeviceOptions, logger: Logger): Promise<ProvisionMessage> {
  const ephemeral = PrivateKey.generate();
  const timeoutMs = options.timeoutMs ?? 10 * 60_000;
  let settle!: { resolve: (m: ProvisionMessage) => void; reject: (e: unknown) => void };
  const result = new Promise<ProvisionMessage>((resolve, reject) => (settle = { resolve, reject }));
  const failed = (why: string) => new SignalError('SIGNAL_LINK_FAILED', `linking did not complete: ${why}.`);
  const timer = setTimeout(() => {
    settle.reject(failed(`the phone did not scan the code within ${Math.round(timeoutMs / 1000)} s`));
  }, timeoutMs);
  const onAbort = () => {
    settle.reject(failed('cancelled'));
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const connection = await net.connectProvisioning({
    onReceivedAddress: (address: string, ack: ChatServerMessageAck) => {
      ack.send(200);
      const uri = `sgnl://linkdevice?uuid=${encodeURIComponent(address)}&pub_key=${encodeURIComponent(b64(ephemeral.getPublicKey().serialize()))}`;
      Promise.resolve(options.io.showLinkUri(uri)).catch((error: unknown) => {
        settle.reject(error);
      });
    },
    onReceivedEnvelope: (envelope: Uint8Array, ack: ChatServerMessageAck) => {
      ack.send(200);
      try {
        settle.resolve(decryptProvisionEnvelope(envelope, ephemeral));
      } catch (error) {
        settle.reject(error);
      }
    },
    onConnectionInterrupted: (cause) => {
      logger.warn({ code: cause?.code }, 'provisioning socket closed');
      settle.reject(failed('the provisioning socket closed before the phone answered'));
    },
  });
  try {
    return await result;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    await connection.disconnect();
  }
}

/** `PUT /v1/devices/link`, authenticating with the ACI (or, if refused, the phone number). */
async function registerDevice(net: Net, message: ProvisionMessage, password: string, body: unknown): Promise<{ deviceId: number }> {
  const chat = await net.connectUnauthenticatedChat({ onConnectionInterrupted: () => undefined });
  try {
    const logins = [message.aci, ...(message.number === undefined ? [] : [message.number])];
    let lastError: unknown;
    for (const login of logins) {
      try {
        const answer = (await chatJson(chat, 'PUT', '/v1/devices/link', body, [['authorization', `Basic ${b64(Buffer.from(`${login}:${password}`, 'utf8'))}`]])) as { deviceId?: unknown } | undefined;
        const deviceId = answer?.deviceId;
        if (typeof deviceId !== 'number' || !Number.isInteger(deviceId) || deviceId < 2 || deviceId > 127) {
          throw new SignalError('SIGNAL_LINK_FAILED', 'the server accepted the link but returned no valid device id.');
        }
        return { deviceId };
      } catch (error) {
        lastError = error;
        if (!(SignalError.isInstance(error) && error.message.includes('HTTP 401'))) throw error;
      }
    }
    throw lastError;
  } finally {
    await chat.disconnect();
  }
}
