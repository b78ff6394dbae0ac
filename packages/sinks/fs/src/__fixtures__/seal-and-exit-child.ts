/**
 * Test child for segment-hasher.test.ts: records into an fs archive, closes, prints `done`, and
 * then must exit by itself — the segment-hash worker never keeps a finished process alive.
 * `sealed`: tiny segments, several sealed (each seal waits for the worker), recorder closed.
 * `unsealed`: one segment that is never sealed (no digest is ever asked for), only the sink closed.
 */
import { Recorder } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

const [dir, mode] = process.argv.slice(2) as [string, 'sealed' | 'unsealed'];
const sink = await openFsSink({ dir, segmentBytes: mode === 'sealed' ? 2048 : 1024 * 1024 });
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
if (mode === 'sealed') await recorder.close();
await sink.close();
process.stdout.write('done\n');
