/**
 * Harness around Signal's own server simulator (`@signalapp/mock-server`, AGPL-3.0): a real
 * HTTP/2 + websocket server on 127.0.0.1 with an employee's phone and a counterparty, both
 * simulated by the mock's `PrimaryDevice` (which encrypts with libsignal and encodes with the
 * mock's own compiled Signal protobufs). The connector links to it exactly as it would to
 * production: provisioning socket, link code, `PUT /v1/devices/link`, prekey upload.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { StateStore } from '@offchannel/core';
import { type SignalServer, createNet, linkSignalDevice } from '@offchannel/signal';
import { type Device, EMPTY_DATA_MESSAGE, type PrimaryDevice, type Proto, Server, loadCertificates } from '@signalapp/mock-server';

export interface MockSignal {
  readonly server: Server;
  readonly port: number;
  readonly caCertificatePem: string;
  /** The simulator's sealed-sender trust roots (base64). */
  readonly trustRoots: readonly string[];
  /** The employee's phone (primary device) whose account the connector links to. */
  readonly employee: PrimaryDevice;
  /** Someone the employee talks to. */
  readonly contact: PrimaryDevice;
  /** Connector option `server` for this simulator. */
  readonly serverConfig: SignalServer;
  close(): Promise<void>;
}

export async function startMockSignal(workDir: string): Promise<MockSignal> {
  await mkdir(path.join(workDir, 'cdn3'), { recursive: true });
  await mkdir(path.join(workDir, 'updates2'), { recursive: true });
  const server = new Server({ cdn3Path: path.join(workDir, 'cdn3'), updates2Path: path.join(workDir, 'updates2') });
  await server.listen(0, '127.0.0.1');
  const port = server.address().port;
  const { certificateAuthority, serverTrustRoots } = await loadCertificates();
  const employee = await server.createPrimaryDevice({ profileName: 'Employee' });
  const contact = await server.createPrimaryDevice({ profileName: 'Counterparty' });
  return {
    server,
    port,
    caCertificatePem: certificateAuthority,
    trustRoots: [...serverTrustRoots],
    employee,
    contact,
    serverConfig: { environment: 'local', port, caCertificatePem: certificateAuthority },
    close: () => server.close(),
  };
}

/**
 * Links a new connector device to the employee's account (the phone "scans" the code),
 * storing its account in `state`. Returns the simulator's view of the linked device, after
 * giving the employee and the contact one of its prekey bundles each (what `GET /v2/keys`
 * does for a real sender).
 */
export async function linkToMock(mock: MockSignal, state: StateStore, onLinkUri?: (uri: string) => void): Promise<Device> {
  let linked: Promise<Device> | undefined;
  await linkSignalDevice({
    state,
    net: createNet(mock.serverConfig),
    io: {
      showLinkUri: async (uri) => {
        onLinkUri?.(uri);
        const pending = await mock.server.waitForProvision();
        linked = pending.complete({ provisionURL: uri, primaryDevice: mock.employee });
        // complete() resolves only after the device has uploaded its keys; do not await here.
        linked.catch(() => undefined);
      },
    },
  });
  if (linked === undefined) throw new Error('the simulator never saw the link code');
  const device = await linked;
  await mock.contact.addSingleUseKey(device, await device.popSingleUseKey());
  await mock.employee.addSingleUseKey(device, await device.popSingleUseKey());
  return device;
}

/** A DataMessage with every field absent except those given. */
export function dataMessage(fields: Partial<Proto.DataMessage.Params>): Proto.DataMessage.Params {
  return { ...EMPTY_DATA_MESSAGE, ...fields };
}

/** Content carrying one DataMessage. */
export function dataContent(fields: Partial<Proto.DataMessage.Params>): Proto.Content.Params {
  return { content: { dataMessage: dataMessage(fields) }, senderKeyDistributionMessage: null, pniSignatureMessage: null };
}

/** Content carrying one EditMessage of an earlier message. */
export function editContent(targetSentTimestamp: number, fields: Partial<Proto.DataMessage.Params>): Proto.Content.Params {
  return {
    content: { editMessage: { targetSentTimestamp: BigInt(targetSentTimestamp), dataMessage: dataMessage(fields) } },
    senderKeyDistributionMessage: null,
    pniSignatureMessage: null,
  };
}

/** A reaction DataMessage's `reaction` field. */
export function reaction(emoji: string, targetAuthorAci: string, targetSentTimestamp: number): Proto.DataMessage.Reaction.Params {
  return { emoji, remove: false, targetAuthorAci, targetSentTimestamp: BigInt(targetSentTimestamp), targetAuthorAciBinary: null };
}

/**
 * Encrypts `plaintext` as a Signal attachment (IV, AES-256-CBC, HMAC; digest over the blob),
 * stores it on the simulator's CDN and returns its pointer. `tamper` flips a byte of the
 * stored blob so its digest no longer matches.
 */
export async function uploadAttachment(
  mock: MockSignal,
  plaintext: Uint8Array,
  options: { readonly contentType: string; readonly fileName?: string; readonly tamper?: boolean },
): Promise<Proto.AttachmentPointer.Params> {
  const { encryptAttachment } = (await import('@signalapp/mock-server/src/crypto.js')) as {
    encryptAttachment: (cleartext: Buffer) => { key: Buffer; blob: Buffer; digest: Buffer; size: number };
  };
  const attachment = encryptAttachment(Buffer.from(plaintext));
  const stored = Buffer.from(attachment.blob);
  if (options.tamper === true) stored[20] = (stored[20] ?? 0) ^ 0xff;
  const cdnKey = await (mock.server as unknown as { storeAttachment(blob: Buffer): Promise<string> }).storeAttachment(stored);
  return {
    attachmentIdentifier: { cdnKey },
    clientUuid: null,
    contentType: options.contentType,
    key: new Uint8Array(attachment.key),
    size: attachment.size,
    thumbnail: null,
    digest: new Uint8Array(attachment.digest),
    incrementalMac: null,
    chunkSize: null,
    fileName: options.fileName ?? null,
    flags: null,
    width: null,
    height: null,
    caption: null,
    blurHash: null,
    uploadTimestamp: null,
    cdnNumber: 0,
  };
}

/**
 * The employee's own outgoing message as the phone reports it to linked devices: a
 * `SyncMessage.Sent` transcript (with the binary destination id, as current clients send).
 * Resolves when the connector has acknowledged it.
 */
export async function sendSyncTranscript(mock: MockSignal, device: Device, text: string, timestamp: number): Promise<void> {
  const sync = await mock.employee.encryptSyncSent(device, text, { timestamp, destinationServiceId: mock.contact.device.aci });
  await mock.server.send(device, sync);
}
