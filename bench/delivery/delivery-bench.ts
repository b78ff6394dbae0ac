/**
 * bench/delivery — SMTP journaling throughput against a real Postfix on loopback, as a ratio to
 * writing the same EML files to disk in the same run.
 *
 * Builds a signed file-system archive of N records (default 2,000 — 1 KiB messages in 20
 * conversations), starts a throwaway Postfix with STARTTLS (scripts/postfix; needs root and
 * Debian's postfix — see scripts/postfix/ensure.sh), then:
 *   eml-to-disk  exportArchive --format eml: verify, index, render and fsync every file
 *   deliver      Deliverer.deliverPending: the same verification and rendering, then each message
 *                over one pooled STARTTLS connection, 250, receipt record durable, cursor fsync'd
 *   maildir      until Postfix has put the last message in the Maildir (end to end)
 *
 * Usage: pnpm bench:delivery [--records N] [--json]
 */
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type CaptureInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { Deliverer } from '@offchannel/delivery';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_TEXT } from '../shared/bench-input.ts';

const { values } = parseArgs({ options: { records: { type: 'string', default: '2000' }, json: { type: 'boolean', default: false } } });
const records = Number(values.records);
const scripts = path.resolve(import.meta.dirname, '../../scripts/postfix');

function input(index: number): CaptureInput {
  const chat = `chat-${index % 20}`;
  return { kind: 'message', key: `message:${index}`, sentAt: new Date(Date.UTC(2026, 10, 1) + index * 1000).toISOString(), conversation: { id: chat, type: 'direct' }, sender: { id: `party-${index % 20}`, name: `Party ${index % 20}` }, direction: index % 2 === 0 ? 'inbound' : 'outbound', native: { id: `m-${index}`, chat }, text: BENCH_TEXT };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  return typeof address === 'object' && address !== null ? address.port : 0;
}

const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-delivery-'));
const postfixDir = path.join(work, 'postfix');
try {
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  const archiveDir = path.join(work, 'archive');
  const sink = await openFsSink({ dir: archiveDir });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 50_000, everyMs: 3_600_000 } });
  const writer = recorder.writer({ channel: 'bench', account: 'alice', source: { package: '@offchannel-bench/bench', version: '0' } });
  await Promise.all(Array.from({ length: records }, (_, index) => writer.capture(input(index))));
  await recorder.close();
  await sink.close();

  execFileSync('bash', [path.join(scripts, 'ensure.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const port = await freePort();
  await chmod(work, 0o755); // Postfix's own user must reach its queue under it
  await mkdir(postfixDir);
  execFileSync('bash', [path.join(scripts, 'start.sh'), postfixDir, String(port), 'starttls'], { stdio: 'inherit' });
  const ca = await readFile(path.join(postfixDir, 'etc', 'cert.pem'));

  const readOnly = await openFsSink({ dir: archiveDir, readOnly: true });
  let started = performance.now();
  await exportArchive({ sink: readOnly, out: path.join(work, 'eml'), formats: ['eml'], verifiers: [key.verifier], streams: ['bench:alice'] });
  const emlMs = performance.now() - started;

  const receipts = await openFsSink({ dir: archiveDir });
  const deliverer = await Deliverer.open({ archive: readOnly, receipts, stateDir: path.join(work, 'state'), verifiers: [key.verifier], checkpoints: { signer: key }, target: { name: 'bench', smtp: `smtp://localhost:${port}`, to: 'journal@archive.test', from: 'offchannel@firm.example', ca } });
  started = performance.now();
  const report = await deliverer.deliverPending();
  const deliverMs = performance.now() - started;
  await deliverer.close();
  await receipts.close();
  await readOnly.close();
  const maildir = path.join(postfixDir, 'mail', 'journal', 'new');
  while ((await readdir(maildir).catch(() => [])).length < records) await new Promise((resolve) => setTimeout(resolve, 50));
  const maildirMs = performance.now() - started;

  const result = {
    records,
    sent: report.sent,
    emlToDiskMs: Math.round(emlMs),
    deliverMs: Math.round(deliverMs),
    maildirMs: Math.round(maildirMs),
    emlPerSecond: Math.round((records / emlMs) * 1000),
    deliveredPerSecond: Math.round((records / deliverMs) * 1000),
    deliverToDiskRatio: Number((deliverMs / emlMs).toFixed(2)),
    maildirToDiskRatio: Number((maildirMs / emlMs).toFixed(2)),
  };
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    process.stdout.write(
      [
        `bench/delivery: ${records} records, 1 KiB messages, STARTTLS to Postfix on loopback`,
        `  eml to disk (export)   ${result.emlToDiskMs} ms  (${result.emlPerSecond}/s)`,
        `  deliver (250+receipt)  ${result.deliverMs} ms  (${result.deliveredPerSecond}/s)  ${result.deliverToDiskRatio}× eml-to-disk`,
        `  in the Maildir         ${result.maildirMs} ms  ${result.maildirToDiskRatio}× eml-to-disk`,
      ].join('\n') + '\n',
    );
  }
} finally {
  execFileSync('bash', [path.join(scripts, 'stop.sh'), postfixDir]);
  await rm(work, { recursive: true, force: true });
}
