/**
 * bench/coverage/coverage-report — `offchannel coverage` over a month of a large firm.
 *
 * Builds a file-system archive of S streams (default 1,000) over D days (default 30) with an
 * injected clock, in real format through the Recorder with signed checkpoints: each stream a
 * `capture-started`, M messages per day (default 10), and, for one stream in 50, a SIGKILLed
 * process (a new run with no `capture-stopped`) and a logged-out day; one signed host
 * attestation for all streams every `--attest-every` minutes (default 60; 5 is the capture
 * default: 8,640 notes of S lines for 30 days). Then runs the real command in-process:
 *   unverified   offchannel coverage --json (every record and attestation read once)
 *   verified     offchannel coverage --json --key (plus verify's pass over records and attestations)
 * and checks the gaps it finds are the ones written.
 *
 * Usage: pnpm bench:coverage [--streams S] [--days D] [--messages M] [--attest-every MIN] [--json]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type CaptureInput, HostAttestor, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { run } from '../../packages/cli/src/run.ts';
import { BENCH_SOURCE, benchInput } from '../shared/bench-input.ts';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '1000' },
    days: { type: 'string', default: '30' },
    messages: { type: 'string', default: '10' },
    'attest-every': { type: 'string', default: '60' },
    json: { type: 'boolean', default: false },
  },
});
const STREAMS = Number(values.streams);
const DAYS = Number(values.days);
const MESSAGES = Number(values.messages);
const EVERY_MIN = Number(values['attest-every']);
const T0 = Date.parse('2026-11-01T00:00:00Z');
const MIN = 60_000;

const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-coverage-'));
try {
  const dir = path.join(work, 'archive');
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  await writeFile(path.join(work, 'key.pub'), `${key.verifierKey}\n`, { mode: 0o600 });
  const sink = await openFsSink({ dir });
  let now = T0;
  const clock = (): Date => new Date(now);
  const recorder = new Recorder({ sink, clock, checkpoints: { signer: key, everyRecords: 1_000_000, everyMs: 86_400_000 } });
  const writers = Array.from({ length: STREAMS }, (_, index) => recorder.writer({ channel: 'bench', account: `custodian-${String(index).padStart(5, '0')}`, source: BENCH_SOURCE }));
  const attestor = await HostAttestor.open({ sink, host: 'bench-host', signer: key, clock });
  let n = 0;
  const state = (event: string, run: string, fields: Record<string, string> = {}): CaptureInput => ({ kind: 'system', key: `capture-state:${run}:${++n}`, system: { event, fields: { ...fields, run } } });
  const troubled = (index: number) => index % 50 === 7;
  let expectedGaps = 0;

  const t0 = performance.now();
  await Promise.all(writers.map((writer) => writer.capture(state('capture-started', 'r0', { attempt: '0' }))));
  let message = 0;
  const minutes = DAYS * 24 * 60;
  const perMessage = (24 * 60) / MESSAGES;
  for (let minute = 0; minute < minutes; minute += EVERY_MIN) {
    now = T0 + minute * MIN;
    const day = Math.floor(minute / 1440);
    const batch: Promise<unknown>[] = [];
    for (const [index, writer] of writers.entries()) {
      // Troubled streams: a process killed on day 3 (down 2 h), logged out all of day 10.
      if (troubled(index) && minute === 3 * 1440 + 120) batch.push(writer.capture(state('capture-started', 'r1', { attempt: '0' })));
      if (troubled(index) && minute === 10 * 1440) batch.push(writer.capture(state('capture-logged-out', 'r1', { code: 'CONNECTOR_LOGGED_OUT' })));
      if (troubled(index) && minute === 11 * 1440) batch.push(writer.capture(state('capture-started', 'r1', { attempt: '0' })));
      const silent = troubled(index) && ((minute >= 3 * 1440 && minute < 3 * 1440 + 120) || day === 10);
      if (!silent && Math.floor(minute / perMessage) !== Math.floor((minute + EVERY_MIN) / perMessage)) batch.push(writer.capture(benchInput(message++)));
    }
    await Promise.all(batch);
    const alive = recorder.merkleHeads().filter((head) => !(troubled(Number(head.stream.slice(-5))) && minute >= 3 * 1440 && minute < 3 * 1440 + 120));
    await attestor.attest(alive.map((head) => ({ stream: head.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' })));
  }
  now = T0 + minutes * MIN;
  await recorder.close();
  await sink.close();
  for (let index = 0; index < STREAMS; index++) if (troubled(index) && DAYS > 11) expectedGaps += 2;
  const buildMs = performance.now() - t0;

  const runCoverage = async (extra: string[]) => {
    let stdout = '';
    const started = performance.now();
    const cpu = process.cpuUsage();
    const code = await run(['coverage', dir, '--from', new Date(T0).toISOString(), '--to', new Date(T0 + minutes * MIN).toISOString(), '--attest-every', `${EVERY_MIN}m`, '--json', ...extra], {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => process.stderr.write(text) },
      env: {},
      cwd: work,
      signal: new AbortController().signal,
    });
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000;
    const report = JSON.parse(stdout) as { streams: { gaps: { cause: string }[] }[] };
    return { code, ms, cpuMs, gaps: report.streams.reduce((sum, stream) => sum + stream.gaps.length, 0) };
  };
  const unverified = await runCoverage([]);
  const verified = await runCoverage(['--key', path.join(work, 'key.pub')]);
  if (unverified.gaps !== expectedGaps || verified.gaps !== expectedGaps) throw new Error(`expected ${expectedGaps} gaps, found ${unverified.gaps} (unverified) and ${verified.gaps} (verified)`);

  const result = {
    streams: STREAMS,
    days: DAYS,
    records: message + STREAMS,
    attestations: Math.ceil(minutes / EVERY_MIN),
    attestEveryMin: EVERY_MIN,
    gaps: unverified.gaps,
    buildS: Number((buildMs / 1000).toFixed(1)),
    coverageS: Number((unverified.ms / 1000).toFixed(2)),
    coverageVerifiedS: Number((verified.ms / 1000).toFixed(2)),
    coverageCpuS: Number((unverified.cpuMs / 1000).toFixed(2)),
    coverageVerifiedCpuS: Number((verified.cpuMs / 1000).toFixed(2)),
    rssMb: Math.round(process.memoryUsage().rss / 1e6),
  };
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(`coverage: ${STREAMS} streams × ${DAYS} days, ${result.records} records, ${result.attestations} attestations (every ${EVERY_MIN} min), ${result.gaps} gaps`);
    console.log(`  archive built in   ${result.buildS} s (injected clock)`);
    console.log(`  coverage           ${result.coverageS} s (${result.coverageCpuS} s CPU)`);
    console.log(`  coverage --key     ${result.coverageVerifiedS} s (${result.coverageVerifiedCpuS} s CPU; verified evidence: verify's pass included)`);
    console.log(`  process RSS after  ${result.rssMb} MB (the whole bench, building the archive included)`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
