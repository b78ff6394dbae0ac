/**
 * Runs the offline Signal demo into an fs archive:
 *
 *   node --conditions=@offchannel/source packages/connectors/signal-mock-tests/src/run-demo.ts \
 *     --archive ./demo-archive [--state ./demo-state]
 *
 * The state store is opened unencrypted with a fresh directory by default (demo only). Exits
 * the process at the end: the simulator leaves HTTP/2 handles open after closing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, openStateStore, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { runSignalDemo } from './offline-demo.ts';

const { values } = parseArgs({ options: { archive: { type: 'string', default: './demo-archive' }, state: { type: 'string' } } });
const scratch = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-demo-'));
const sink = await openFsSink({ dir: values.archive });
const recorder = new Recorder({ sink });
const state = await openStateStore({ dir: values.state ?? path.join(scratch, 'state'), unencrypted: true });
try {
  const result = await runSignalDemo({
    recorder,
    state,
    workDir: scratch,
    onLinkUri: (uri) => process.stdout.write(`link code (shown as a QR code in real use): ${uri.slice(0, 60)}…\n`),
  });
  await recorder.close();
  const report = await verifyArchive(sink, { streams: [result.stream] });
  process.stdout.write(`${result.stream}: ${result.acknowledged} envelopes recorded and acknowledged; archive ${report.ok ? 'verified' : 'FAILED verification'}\n`);
  await sink.close();
  await rm(scratch, { recursive: true, force: true });
  process.exit(report.ok ? 0 : 1);
} catch (error) {
  process.stderr.write(`signal demo failed: ${(error as Error).message}\n`);
  process.exit(1);
}
