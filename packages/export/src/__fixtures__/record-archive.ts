import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Ed25519NoteKey, Recorder, type StreamWriter, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { fixtureClock } from './trade-archive.ts';

export interface RecordedArchive {
  readonly dir: string;
  readonly key: Ed25519NoteKey;
  readonly stream: string;
}

/**
 * A signed archive of one `<channel>:alice` stream in a new temporary directory, filled by
 * `fill` through the real Recorder (fixed clock) into a real file-system sink. The caller
 * removes `dir`.
 */
export async function recordArchive(channel: string, fill: (writer: StreamWriter) => Promise<void>): Promise<RecordedArchive> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-export-archive-'));
  const key = generateEd25519NoteKey('export-test.offchannel.example');
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, clock: fixtureClock, checkpoints: { signer: key, everyRecords: 5000 } });
  const writer = recorder.writer({ channel, account: 'alice', source: { package: '@offchannel/export-test', version: '0.0.0' } });
  try {
    await fill(writer);
    await recorder.close();
  } finally {
    await sink.close();
  }
  return { dir, key, stream: writer.stream };
}
