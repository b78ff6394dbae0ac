/**
 * An offline Signal demo for `offchannel demo`: starts Signal's server simulator on loopback,
 * links a connector to a simulated employee phone, plays a short trading conversation
 * (sealed and unsealed incoming messages, the employee's own reply via sync transcript, an
 * edit, a reaction, a remote delete, an attachment) and stops once every envelope is recorded
 * and acknowledged. Nothing leaves the machine.
 *
 * AGPL-3.0 (it runs `@signalapp/mock-server`): this lives in a private package and is never
 * published; call it from a workspace script, not from a published Apache-2.0 package.
 */
import { randomBytes } from 'node:crypto';
import { type Logger, type Recorder, type StateStore, createConnectorContext } from '@offchannel/core';
import { createSignalConnector } from '@offchannel/signal';
import { dataContent, editContent, linkToMock, reaction, sendSyncTranscript, startMockSignal, uploadAttachment } from './mock-signal.ts';

export interface SignalDemoOptions {
  /** Where records go (any sink). */
  readonly recorder: Recorder;
  /** The secret state store (root); the demo account's state is scoped under `signal:<account>`. */
  readonly state: StateStore;
  /** Scratch directory for the simulator's CDN folders. */
  readonly workDir: string;
  /** Default `demo-trader`. */
  readonly account?: string;
  readonly logger?: Logger;
  /** Called with the `sgnl://linkdevice?…` URI the connector would show as a QR code. */
  readonly onLinkUri?: (uri: string) => void;
}

export interface SignalDemoResult {
  readonly stream: string;
  /** Envelopes the connector recorded and acknowledged. */
  readonly acknowledged: number;
  readonly captured: number;
}

export async function runSignalDemo(options: SignalDemoOptions): Promise<SignalDemoResult> {
  const account = options.account ?? 'demo-trader';
  const stream = `signal:${account}`;
  const mock = await startMockSignal(options.workDir);
  try {
    const device = await linkToMock(mock, options.state.scope(stream), options.onLinkUri);
    const connector = createSignalConnector({ account, server: mock.serverConfig, trustRoots: mock.trustRoots });
    const controller = new AbortController();
    await connector.start(
      createConnectorContext({ recorder: options.recorder, connector, state: options.state, signal: controller.signal, ...(options.logger === undefined ? {} : { logger: options.logger }) }),
    );
    try {
      // Each send resolves when the connector has recorded the envelope and answered 200.
      const t = Date.now();
      const self = mock.employee.device.aci;
      await mock.contact.sendRaw(device, dataContent({ body: 'Can you buy 100 XYZ before the close?', timestamp: BigInt(t) }), { timestamp: t, sealed: true });
      await sendSyncTranscript(mock, device, 'Yes, working the order now.', t + 1000);
      await mock.contact.sendRaw(device, editContent(t, { body: 'Can you buy 200 XYZ before the close?', timestamp: BigInt(t + 2000) }), { timestamp: t + 2000, sealed: true });
      await mock.contact.sendRaw(device, dataContent({ reaction: reaction('👍', self, t + 1000), timestamp: BigInt(t + 3000) }), { timestamp: t + 3000, sealed: true });
      const confirmation = await uploadAttachment(mock, randomBytes(2048), { contentType: 'application/pdf', fileName: 'trade-confirmation.pdf' });
      await mock.contact.sendRaw(device, dataContent({ body: 'Confirmation attached.', attachments: [confirmation], timestamp: BigInt(t + 4000) }), { timestamp: t + 4000 });
      await mock.contact.sendRaw(device, dataContent({ body: 'Call me on my cell instead.', timestamp: BigInt(t + 5000) }), { timestamp: t + 5000, sealed: true });
      await mock.contact.sendRaw(device, dataContent({ delete: { targetSentTimestamp: BigInt(t + 5000) }, timestamp: BigInt(t + 6000) }), { timestamp: t + 6000, sealed: true });
    } finally {
      controller.abort();
      await connector.stop();
    }
    const status = connector.signalStatus();
    return { stream, acknowledged: status.envelopesAcknowledged, captured: status.captured };
  } finally {
    await mock.close();
  }
}
