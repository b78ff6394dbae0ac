import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type CaptureInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../testing/run-cli.ts';

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const MIN = 60_000;
const at = (minutes: number) => new Date(T0 + minutes * MIN).toISOString();
/** What the tests read of the --json report. */
interface JsonReport {
  readonly format: string;
  readonly evidence: string;
  readonly keys: readonly string[];
  readonly streams: readonly { readonly stream: string; readonly state: string; readonly gaps: readonly unknown[] }[];
}
const parse = (text: string) => JSON.parse(text) as JsonReport;
const HOSTILE = '<img src=x onerror=alert(1)>"\u001b[31m';

let dir: string;
let archive: string;
let keyFile: string;
let otherKeyFile: string;

/** A signed archive: alice's WhatsApp killed for 30 minutes, bob's demo logged out 20, carol's covered. */
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-coverage-cli-'));
  archive = path.join(dir, 'archive');
  const key = generateEd25519NoteKey('coverage-test.offchannel.example');
  keyFile = path.join(dir, 'signing.pub');
  otherKeyFile = path.join(dir, 'other.pub');
  await writeFile(keyFile, `${key.verifierKey}\n`, { mode: 0o600 });
  await writeFile(otherKeyFile, `${generateEd25519NoteKey('coverage-test.offchannel.example').verifierKey}\n`, { mode: 0o600 });
  let now = T0;
  const sink = await openFsSink({ dir: archive });
  const recorder = new Recorder({ sink, clock: () => new Date(now), checkpoints: { signer: key, everyRecords: 1 } });
  const source = { package: 'offchannel', version: '0.0.0' };
  const writers = { alice: recorder.writer({ channel: 'whatsapp', account: 'alice', source }), bob: recorder.writer({ channel: 'demo', account: 'bob', source }), carol: recorder.writer({ channel: 'demo', account: 'carol', source }) };
  let n = 0;
  const write = async (minutes: number, who: keyof typeof writers, input: CaptureInput) => {
    now = T0 + minutes * MIN;
    await writers[who].capture(input);
  };
  const state = (event: string, fields: Record<string, string>): CaptureInput => ({ kind: 'system', key: `capture-state:${fields.run}:${++n}`, system: { event, fields } });
  for (const who of ['alice', 'bob', 'carol'] as const) await write(0, who, state('capture-started', { run: 'a', attempt: '0' }));
  await write(10, 'alice', { kind: 'message', key: 'm1', conversation: { id: 'dm:x', type: 'direct' }, sender: { id: 'x' }, direction: 'inbound', native: { id: 'm1' }, text: 'hi', sentAt: at(10) });
  await write(20, 'bob', { kind: 'system', system: { event: 'connector-logged-out', fields: { reason: HOSTILE } } });
  await write(40, 'bob', state('capture-started', { run: 'a', attempt: '0' }));
  await write(40, 'alice', state('capture-started', { run: 'b', attempt: '0' }));
  await write(50, 'carol', { kind: 'gap', key: 'gap:1', gap: { reason: HOSTILE, from: '1', to: '9', missing: 8 } });
  await recorder.close();
  await sink.close();
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const period = ['--from', at(0), '--to', at(120)];

describe('offchannel coverage', () => {
  it('--json lists each stream with its gaps (from, to, cause); exit 1 on any gap', async () => {
    const { code, stdout } = await runCli(['coverage', archive, ...period, '--json']);
    expect(code).toBe(1);
    const report = parse(stdout);
    expect(report).toMatchObject({ format: 'offchannel-coverage-report', evidence: 'unverified', from: at(0), to: at(120), ok: false });
    const gaps = Object.fromEntries(report.streams.map((stream) => [stream.stream, stream.gaps]));
    expect(gaps['whatsapp:alice']).toEqual([expect.objectContaining({ from: at(10), to: at(40), cause: 'process down' })]);
    expect(gaps['demo:bob']).toEqual([expect.objectContaining({ from: at(20), to: at(40), cause: 'logged out', detail: `connector-logged-out (${HOSTILE})` })]);
    expect(gaps['demo:carol']).toEqual([expect.objectContaining({ from: at(50), to: at(50), cause: 'platform-reported loss', missing: 8 })]);
  });

  it('--fail-on-gap: exit 1 when a gap is at least that long, 0 when every gap is shorter', async () => {
    expect((await runCli(['coverage', archive, ...period, '--fail-on-gap', '30m'])).code).toBe(1);
    expect((await runCli(['coverage', archive, ...period, '--fail-on-gap', '1800s'])).code).toBe(1);
    const passed = await runCli(['coverage', archive, ...period, '--fail-on-gap', '31m']);
    expect(passed.code).toBe(0);
    expect(passed.stdout).toContain('No gap of 31m or longer.');
    expect((await runCli(['coverage', archive, ...period, '--stream', 'demo:bob', '--fail-on-gap', '20m'])).code).toBe(1);
    expect((await runCli(['coverage', archive, '--from', at(45), '--to', at(49), '--stream', 'demo:bob'])).code).toBe(0);
  });

  it('prints a table per custodian with each gap, daily counts, and says the evidence was not verified; control characters never reach the terminal', async () => {
    const { stdout } = await runCli(['coverage', archive, ...period]);
    expect(stdout).toContain('NOT verified');
    expect(stdout).toMatch(/Custodian alice\n {2}channel +live +gaps +longest +messages +state\n {2}whatsapp +75\.0% +1 +30m +1 +live/);
    expect(stdout).toContain(`${at(10)} → ${at(40)}       30m  process down`);
    expect(stdout).toMatch(/2026-11-02 +1 +0/);
    expect(stdout).not.toContain('\u001b');
  });

  it('--key counts only signed evidence, and says so; with the wrong key nothing is evidence', async () => {
    const verified = await runCli(['coverage', archive, ...period, '--key', keyFile, '--json']);
    const report = parse(verified.stdout);
    expect(report.evidence).toBe('verified');
    expect(report.keys).toEqual(['coverage-test.offchannel.example']);
    expect(report.streams.find((stream) => stream.stream === 'whatsapp:alice')?.gaps).toHaveLength(1);
    const text = await runCli(['coverage', archive, ...period, '--key', keyFile]);
    expect(text.stdout).toContain('evidence  verified with coverage-test.offchannel.example');
    const forged = await runCli(['coverage', archive, ...period, '--key', otherKeyFile, '--json', '--fail-on-gap', '7d']);
    expect(forged.code).toBe(1);
    expect(parse(forged.stdout).streams.map((stream) => stream.state)).toEqual(['unverified', 'unverified', 'unverified']);
  });

  it('--html writes one page with a strict CSP and everything from the archive escaped', async () => {
    const out = path.join(dir, 'html');
    const { code, stderr } = await runCli(['coverage', archive, ...period, '--html', out]);
    expect(code).toBe(1);
    expect(stderr).toContain('coverage.html');
    const page = await readFile(path.join(out, 'coverage.html'), 'utf8');
    expect(page).toMatch(/<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(page).not.toContain('<img');
    expect(page).not.toMatch(/<script/i);
    expect(page).toContain('&lt;img src=x onerror=alert(1)&gt;&quot;');
  });

  it.each([
    ['--fail-on-gap', '90'],
    ['--fail-on-gap', '1.5h'],
    ['--fail-on-gap=-5m', '--json'],
    ['--fail-on-gap', '5 m'],
    ['--fail-on-gap', '2w'],
    ['--fail-on-gap', '0s'],
    ['--fail-on-gap', '1h30m'],
    ['--attest-every', ''],
    ['--from', 'yesterday'],
    ['--to', '2026-13-45'],
    ['--to', '2026-11-02T09:00:00'],
  ])('%s %j is a usage error (exit 2) that says how to write it', async (option, value) => {
    const { code, stderr } = await runCli(['coverage', archive, ...period, option, value]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/e\.g\. 90s, 15m, 2h, 7d|must be longer than 0|write 2026-11-01/);
  });

  it('ends a period that reaches into the future now: nothing after now is reported', async () => {
    const { stdout } = await runCli(['coverage', archive, '--from', at(0), '--to', '2999-01-01', '--stream', 'demo:carol', '--json']);
    const report = JSON.parse(stdout) as { to: string };
    expect(Date.parse(report.to)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(report.to)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('refuses a period that ends before it starts, and a missing archive argument', async () => {
    expect((await runCli(['coverage', archive, '--from', at(10), '--to', at(0)])).code).toBe(2);
    expect((await runCli(['coverage'])).code).toBe(2);
  });
});
