/**
 * Must-show: a demo account driven to "logged out" and back (its `loggedOutWhile` control file,
 * then SIGHUP) in a real, signing `offchannel capture` process; `offchannel coverage --json`
 * reports the gap with cause "logged out", from the logout to the relink.
 */
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Process, type Workspace, events, records, runBuilt, start, until, workspace } from '../testing/capture-process.ts';

const STREAM = 'demo:alice@firm.example';
let ws: Workspace | undefined;
let capture: Process | undefined;

afterEach(async () => {
  if (capture?.child.exitCode === null) capture.child.kill('SIGKILL');
  await ws?.remove();
});

describe('offchannel coverage, logged out and back', () => {
  it('reports the time the demo account was logged out as a gap with cause "logged out"', async () => {
    ws = await workspace('offchannel-coverage-logout-');
    const control = path.join(ws.dir, 'logged-out');
    await ws.write({ coverage: { attestEveryMs: 5000, host: 'capture-1' }, connectors: [{ channel: 'demo', account: 'alice@firm.example', intervalMs: 100, repeat: true, loggedOutWhile: './logged-out' }] });
    const from = new Date(Date.now() - 60_000).toISOString();
    const run = start(['capture', '--config', ws.config, '--log-level', 'info'], ws.dir);
    capture = run;
    const current = ws;
    const has = async (event: string, count = 1) => (await events(current, STREAM)).filter((entry) => entry.event === event).length >= count;
    await until(async () => (await records(current, STREAM)).length >= 20, '20 records', run);

    const loggedOutAt = Date.now();
    await writeFile(control, 'logged out\n');
    await until(() => has('capture-logged-out'), 'capture-logged-out', run);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await rm(control);
    const relinkedAt = Date.now();
    run.child.kill('SIGHUP');
    await until(() => has('capture-started', 2), 'the second capture-started', run);
    const count = (await records(current, STREAM)).length;
    await until(async () => (await records(current, STREAM)).length >= count + 5, 'capture after the relink', run);
    const to = new Date().toISOString();
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);

    const coverage = await runBuilt(['coverage', ws.archive, '--from', from, '--to', to, '--key', ws.verifierFile, '--attest-every', '5s', '--json'], ws.dir);
    expect(coverage.stderr).toBe('');
    expect(coverage.code).toBe(1);
    const report = JSON.parse(coverage.stdout) as { evidence: string; streams: { stream: string; state: string; gaps: { from: string; to: string; cause: string; detail: string }[] }[] };
    expect(report.evidence).toBe('verified');
    const [stream] = report.streams;
    expect(stream?.stream).toBe(STREAM);
    expect(stream?.state).toBe('live');
    expect(stream?.gaps.map((gap) => gap.cause)).toEqual(['logged out']);
    const gap = stream?.gaps[0];
    expect(Date.parse(gap?.from ?? '')).toBeGreaterThanOrEqual(loggedOutAt);
    expect(Date.parse(gap?.from ?? '')).toBeLessThan(relinkedAt);
    expect(Date.parse(gap?.to ?? '')).toBeGreaterThanOrEqual(relinkedAt);
    expect(Date.parse(gap?.to ?? '') - Date.parse(gap?.from ?? '')).toBeGreaterThanOrEqual(3000);

    const table = await runBuilt(['coverage', ws.archive, '--from', from, '--to', to, '--key', ws.verifierFile, '--attest-every', '5s'], ws.dir);
    expect(table.stdout).toMatch(/logged out: capture-logged-out \(CONNECTOR_LOGGED_OUT\)|logged out: connector-logged-out \(demo-control-file\)/);
  }, 120_000);
});
