/**
 * Test child for the crash-safety test: captures messages into an fs archive as fast as it can
 * (hundreds in flight, each with a raw-evidence blob, some with an attachment), printing
 * `<index> <seq>` for every capture that resolved. The parent
 * SIGKILLs it at a random moment.
 */
import { Recorder, ed25519KeyFromSeed, openKeyIndex } from '@offchannel/core';
import { openFsSink, requestBlobWriteThreads } from '@offchannel/sink-fs';

// As the CLI does: many blob fsyncs in flight at once, so kills land among them.
requestBlobWriteThreads();

// With an index file: a persistent key index and checkpoints signed every 200 records with a
// fixed test key, so restarts take the start-up path that reads only what is new.
const [dir, startText, indexFile] = process.argv.slice(2) as [string, string, string | undefined];
const sink = await openFsSink({ dir, segmentBytes: 48 * 1024 });
const signer = ed25519KeyFromSeed('crash.example/offchannel', new Uint8Array(32).fill(7));
const recorder = indexFile
  ? new Recorder({ sink, keyIndex: openKeyIndex({ file: indexFile }), checkpoints: { signer, everyRecords: 200, everyMs: 50 } })
  : new Recorder({ sink });
const writer = recorder.writer({ channel: 'demo', account: 'crash', source: { package: 'crash-child', version: '0' } });
const padding = 'lorem ipsum dolor sit amet '.repeat(30);
let acks: string[] = [];
const flush = (): void => {
  if (acks.length > 0) process.stdout.write(acks.join(''));
  acks = [];
};
setInterval(flush, 2);
if (indexFile) {
  // Reopen the stream (key index caught up, Merkle state restored) and sign what is there, so
  // that every kill from here on leaves a signed checkpoint for the next start to restore from.
  await writer.lookup('warm-up');
  await recorder.checkpoint();
}
process.stdout.write('ready\n');
let inflight = 0;
for (let index = Number(startText); ; index++) {
  while (inflight >= 256) await new Promise((resolve) => setImmediate(resolve));
  inflight++;
  const attachment = index % 40 === 0 ? [{ bytes: new TextEncoder().encode(`attachment ${index} ${padding}`), mime: 'text/plain' }] : undefined;
  writer
    .capture({
      kind: 'message',
      sentAt: new Date(1_763_000_000_000 + index * 1000),
      conversation: { id: `chat-${index % 7}`, type: 'group' },
      sender: { id: `user-${index % 13}` },
      direction: index % 3 === 0 ? 'outbound' : 'inbound',
      native: { id: `m-${index}` },
      text: `message ${index}: ${padding}`,
      // Every connector's records carry their raw platform bytes: one blob per record.
      raw: { bytes: new TextEncoder().encode(`raw evidence of message ${index}`), format: 'crash-raw' },
      ...(attachment ? { attachments: attachment } : {}),
    })
    .then(
      (result) => {
        inflight--;
        acks.push(`${index} ${result.seq}\n`);
      },
      (error: unknown) => {
        process.stderr.write(`capture failed: ${String(error)}\n`);
        process.exit(3);
      },
    );
}
