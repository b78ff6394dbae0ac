/**
 * Test child for segment-hasher.test.ts: records into an fs archive with tiny segments (so
 * several are sealed, each seal waiting for the segment-hash worker), closes, prints `done`, and
 * then must exit by itself — the worker never keeps a finished process alive.
 */
import { Recorder } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

const [dir] = process.argv.slice(2) as [string];
const sink = await openFsSink({ dir, segmentBytes: 2048 });
const recorder = new Recorder({ sink });
const writer = recorder.writer({ channel: 'demo', account: 'exit', source: { package: 'exit-child', version: '0' } });
// Waves of five: one batch each, so a segment fills and is sealed every few waves.
for (let wave = 0; wave < 12; wave++) {
  const captures = [];
  for (let index = 0; index < 5; index++) {
    captures.push(writer.capture({ kind: 'message', sentAt: '2026-11-21T09:30:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 's' }, direction: 'inbound', native: { id: `m${wave}-${index}` }, text: 'x'.repeat(300) }));
  }
  await Promise.all(captures);
}
await recorder.close();
await sink.close();
process.stdout.write('done\n');
