/**
 * A tiny connector on the runtime, over an in-memory "platform" that delivers JSON events and
 * keeps what was acknowledged. Core's own tests run the conformance harness on it; `broken`
 * variants make the mistakes the harness exists to catch.
 */
import { type ConnectorRuntime, createConnectorRuntime } from '../connector/connector-runtime.ts';
import type { ConnectorEvent, EventSourceIo } from '../connector/event-source.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { ConnectorFixture } from './connector-conformance.ts';

interface LoopbackEvent extends ConnectorEvent {
  readonly id: string;
}

/** Mistakes a broken variant makes. */
export interface LoopbackFlaws {
  /** Acknowledges on delivery, before the capture is durable. */
  readonly ackOnDelivery?: boolean;
  /** Logs the message text at debug level. */
  readonly logText?: boolean;
  /** Drops events whose mapping fails instead of letting the runtime record them. */
  readonly dropUnmappable?: boolean;
}

const encoder = new TextEncoder();

/** The mapping: a JSON `{ text }` event → one message record. Throws on anything else. */
export function mapLoopbackEvent(event: LoopbackEvent): CaptureInput[] {
  const parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(event.raw)) as { text?: unknown };
  if (typeof parsed.text !== 'string') throw new TypeError('event has no text');
  return [
    {
      kind: 'message',
      key: `message:${event.id}`,
      native: { id: event.id },
      sentAt: '2026-01-02T03:04:05.000Z',
      conversation: { id: 'chat-1', type: 'direct' },
      sender: { id: 'peer-1' },
      direction: 'inbound',
      text: parsed.text,
      raw: { bytes: event.raw, format: event.format },
    },
  ];
}

/** A loopback platform and a connector on it, as a conformance fixture. */
export function loopbackFixture(flaws: LoopbackFlaws = {}): ConnectorFixture & { readonly connector: ConnectorRuntime<LoopbackEvent> } {
  const acknowledged: string[] = [];
  const sent = new Map<string, Uint8Array>();
  let io: EventSourceIo<LoopbackEvent> | undefined;
  let next = 0;
  const deliver = (id: string): void => {
    const raw = sent.get(id) as Uint8Array;
    if (flaws.ackOnDelivery === true) acknowledged.push(id);
    io?.deliver({ id, raw, format: 'loopback.json' });
  };
  const send = (raw: Uint8Array): string => {
    const id = `evt-${++next}`;
    sent.set(id, raw);
    deliver(id);
    return id;
  };
  const connector = createConnectorRuntime<LoopbackEvent>({
    channel: 'loopback',
    account: 'alice',
    source: { package: '@offchannel/core', version: 'test' },
    retry: { minMs: 5, maxMs: 20 },
    events: {
      async open(opened) {
        io = opened;
        opened.transition('connected');
      },
      async acknowledge(events) {
        if (flaws.ackOnDelivery !== true) acknowledged.push(...events.map((event) => event.id));
      },
      async close() {
        io = undefined;
      },
    },
    map: (event) => {
      if (flaws.logText === true) io?.ctx.logger.debug(`event text: ${new TextDecoder().decode(event.raw)}`);
      if (flaws.dropUnmappable === true) {
        try {
          return mapLoopbackEvent(event);
        } catch {
          return [];
        }
      }
      return mapLoopbackEvent(event);
    },
  });
  return {
    connector,
    sendMessage: async (text) => send(encoder.encode(JSON.stringify({ text }))),
    async sendMalformed() {
      const bytes = Uint8Array.of(0x7b, 0xff, 0x00, 0x22);
      return { id: send(bytes), bytes };
    },
    redeliver: async (id) => { deliver(id); },
    acknowledged: () => acknowledged,
    async dropConnection() {
      io?.transition('disconnected', 'test-drop');
      io?.transition('connected');
    },
    destroy: async () => undefined,
  };
}
