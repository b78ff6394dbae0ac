/**
 * Embedding the Recorder in your own service: your code receives messages from some source
 * (here, a stand-in for an internal chat system's webhook), records each one durably, and only
 * then acknowledges it to the source. Run it:
 *
 *   pnpm --filter @offchannel-example/embed-recorder start [archive-dir]
 */
import path from 'node:path';
import { type CaptureInput, Recorder, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

/** What our (imaginary) internal chat system delivers. */
interface ChatEvent {
  readonly id: string;
  readonly room: string;
  readonly from: string;
  readonly body: string;
  readonly at: string;
  readonly editOf?: string;
}

/** The mapping from your platform's event to a capture input: keep it pure and readable. */
export function toCaptureInput(event: ChatEvent, me: string): CaptureInput {
  const common = {
    sentAt: event.at,
    conversation: { id: event.room, type: 'group' as const },
    sender: { id: event.from },
    direction: event.from === me ? ('outbound' as const) : ('inbound' as const),
    raw: { bytes: new TextEncoder().encode(JSON.stringify(event)), format: 'acme-chat.event.json' },
  };
  if (event.editOf) {
    return { ...common, kind: 'edit', key: `edit:${event.id}`, native: { id: event.id, room: event.room }, target: { id: event.editOf, room: event.room }, text: event.body };
  }
  return { ...common, kind: 'message', key: `message:${event.id}`, native: { id: event.id, room: event.room }, text: event.body };
}

export async function main(archive: string): Promise<boolean> {
  const sink = await openFsSink({ dir: archive });
  const recorder = new Recorder({ sink });
  const writer = recorder.writer({ channel: 'acme-chat', account: 'desk-42', source: { package: '@offchannel-example/embed-recorder', version: '0.0.0' } });

  const delivered: ChatEvent[] = [
    { id: '1', room: 'fx-desk', from: 'kim', body: 'EURUSD 1.0842 bid for 10m?', at: '2026-11-21T08:00:00Z' },
    { id: '2', room: 'fx-desk', from: 'desk-42', body: 'Done at 1.0842.', at: '2026-11-21T08:00:05Z' },
    { id: '3', room: 'fx-desk', from: 'desk-42', body: 'Done at 1.0841.', at: '2026-11-21T08:00:09Z', editOf: '2' },
    { id: '1', room: 'fx-desk', from: 'kim', body: 'EURUSD 1.0842 bid for 10m?', at: '2026-11-21T08:00:00Z' }, // redelivered
  ];
  for (const event of delivered) {
    const result = await writer.capture(toCaptureInput(event, 'desk-42'));
    // Only now is the event durable: acknowledge it to the source system here.
    console.log(`event ${event.id}: ${result.status} as seq ${result.seq}`);
  }
  await recorder.close();
  await sink.close();

  const reader = await openFsSink({ dir: archive, readOnly: true });
  const report = await verifyArchive(reader);
  await reader.close();
  console.log(report.ok ? `archive ${archive} verified: ${report.streams.map((stream) => `${stream.stream} (${stream.records} records)`).join(', ')}` : `archive damaged: ${report.failures[0]?.message}`);
  return report.ok;
}

if (import.meta.main) {
  const ok = await main(path.resolve(process.argv[2] ?? 'example-archive'));
  process.exitCode = ok ? 0 : 1;
}
