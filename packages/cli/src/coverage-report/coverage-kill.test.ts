/**
 * Must-show: a signing `offchannel capture` of demo connectors is SIGKILLed and started again
 * three real minutes later. `offchannel coverage --json` reports one gap per account covering
 * the downtime, cause "process down"; `--fail-on-gap 2m` exits 1 and `--fail-on-gap 10m` exits 0.
 * The host attests every 5 s (coverage.attestEveryMs). Waits three real minutes: the capture
 * process runs the real clock (10-minute timeout).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Process, type Workspace, events, records, runBuilt, start, until, workspace } from '../testing/capture-process.ts';

const STREAMS = ['demo:alice@firm.example', 'demo:bob@firm.example'];
const DOWN_MS = 180_000;
let ws: Workspace | undefined;
const runs: Process[] = [];

afterEach(async () => {
  for (const run of runs.splice(0)) if (run.child.exitCode === null) run.child.kill('SIGKILL');
  await ws?.remove();
});

describe('offchannel coverage, capture killed', () => {
  it('reports the downtime of a SIGKILLed capture as "process down", and --fail-on-gap decides the exit status', async () => {
    ws = await workspace('offchannel-coverage-kill-');
    const current = ws;
    await ws.write({ coverage: { attestEveryMs: 5000, host: 'capture-1' }, connectors: STREAMS.map((stream) => ({ channel: 'demo', account: stream.slice('demo:'.length), intervalMs: 250, repeat: true })) });
    const from = new Date(Date.now() - 60_000).toISOString();
    const capture = () => {
      const run = start(['capture', '--config', current.config, '--log-level', 'info'], current.dir);
      runs.push(run);
      return run;
    };
    const first = capture();
    for (const stream of STREAMS) await until(async () => (await records(current, stream)).length >= 20, `20 records in ${stream}`, first);

    const killedAt = Date.now();
    first.child.kill('SIGKILL');
    await first.exited;
    await new Promise((resolve) => setTimeout(resolve, DOWN_MS));

    const restartedAt = Date.now();
    const second = capture();
    for (const stream of STREAMS) await until(async () => (await events(current, stream)).filter((entry) => entry.event === 'capture-started').length >= 2, `the restart in ${stream}`, second);
    const upAt = Date.now();
    const to = new Date(upAt).toISOString();
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);

    const coverage = await runBuilt(['coverage', current.archive, '--from', from, '--to', to, '--key', current.verifierFile, '--attest-every', '5s', '--json'], current.dir);
    expect(coverage.code).toBe(1);
    const report = JSON.parse(coverage.stdout) as { evidence: string; streams: { stream: string; attested: boolean; gaps: { from: string; to: string; cause: string }[] }[] };
    expect(report.evidence).toBe('verified');
    expect(report.streams.map((stream) => stream.stream)).toEqual(STREAMS);
    for (const stream of report.streams) {
      expect(stream.attested).toBe(true);
      expect(stream.gaps.map((gap) => gap.cause)).toEqual(['process down']);
      const gap = stream.gaps[0];
      const gapFrom = Date.parse(gap?.from ?? '');
      const gapTo = Date.parse(gap?.to ?? '');
      // Starts at the last record or attestation before the kill (within one attestation
      // interval, 5 s), ends when the new process recorded capture-started.
      expect(gapFrom).toBeLessThanOrEqual(killedAt);
      expect(killedAt - gapFrom).toBeLessThan(5_000);
      // The report's times are whole seconds: compare with the restart's second.
      expect(gapTo).toBeGreaterThanOrEqual(Math.floor(restartedAt / 1000) * 1000);
      expect(gapTo).toBeLessThanOrEqual(upAt);
      expect(gapTo - gapFrom).toBeGreaterThanOrEqual(DOWN_MS - 1000);
    }

    const args = ['coverage', current.archive, '--from', from, '--to', to, '--key', current.verifierFile, '--attest-every', '5s'];
    const strict = await runBuilt([...args, '--fail-on-gap', '2m'], current.dir);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toContain('FAIL: 2 streams have a gap of 2m or longer.');
    const lenient = await runBuilt([...args, '--fail-on-gap', '10m'], current.dir);
    expect(lenient.code).toBe(0);
    expect(lenient.stdout).toContain('No gap of 10m or longer.');
  }, 600_000);
});
