/**
 * `offchannel deliver` against a real Postfix on loopback (scripts/postfix): the demo archive
 * arrives in the Maildir exactly once per record, receipts and `--check` agree, a rerun sends
 * nothing, TLS is required, and a password file must be private.
 */
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Recorder } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { JOURNAL, type PostfixInstance, startPostfix } from '../../../delivery/src/__fixtures__/postfix-instance.ts';
import { run } from '../run.ts';
import { runCli } from '../testing/run-cli.ts';

let work: string;
let tls: PostfixInstance;
let plain: PostfixInstance;
let records: number;

beforeAll(async () => {
  execFileSync('bash', [path.resolve(import.meta.dirname, '../../../../scripts/postfix/ensure.sh')], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
  work = await mkdtemp(path.join(os.tmpdir(), 'offchannel-deliver-cli-'));
  const [demo, started, startedPlain] = await Promise.all([runCli(['demo', '--no-connectors', '--archive', 'archive', '--signing-key', 'demo.key', '--create-key'], work), startPostfix('starttls'), startPostfix('plain')]);
  expect(demo.code, demo.stderr).toBe(0);
  tls = started;
  plain = startedPlain;
  await writeFile(path.join(work, 'ca.pem'), tls.ca ?? '');
  const sink = await openFsSink({ dir: path.join(work, 'archive'), readOnly: true });
  records = 0;
  for (const stream of await sink.streams()) records += (await sink.head(stream)).seq;
  await sink.close();
}, 180_000);
afterAll(async () => {
  await Promise.all([tls?.stop(), plain?.stop()]);
  await rm(work, { recursive: true, force: true });
}, 60_000);

const base = (smtp: string, state: string): string[] => ['deliver', 'archive', '--smtp', smtp, '--to', JOURNAL, '--from', 'offchannel@firm.example', '--state', state, '--key', 'demo.key.pub', '--signing-key', 'demo.key', '--once'];

describe('offchannel deliver', () => {
  it('delivers every record of the demo archive exactly once, and --check agrees', async () => {
    const smtp = tls.url.replace('127.0.0.1', 'localhost');
    const result = await runCli([...base(smtp, 'state'), '--ca', 'ca.pem', '--json'], work);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { sent: number; backlog: number };
    expect(report).toMatchObject({ sent: records, backlog: 0 });
    const arrived = await tls.settle(records);
    const ids = arrived.map((message) => /^Message-ID: (\S+)/im.exec(message.toString('latin1'))?.[1]);
    expect(new Set(ids).size).toBe(records);
    expect(arrived).toHaveLength(records);

    const check = await runCli(['deliver', 'archive', '--check', '--key', 'demo.key.pub'], work);
    expect(check.code, check.stdout).toBe(0);
    expect(check.stdout).toMatch(/: OK\n/);
    expect(check.stdout).toContain(`${records}/${records} delivered`);

    const again = await runCli([...base(smtp, 'state'), '--ca', 'ca.pem'], work);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('0 messages sent, backlog 0 records');
    // The receipts stream is signed with the archive's key: the whole archive still verifies.
    const verify = await runCli(['verify', path.join(work, 'archive'), '--key', path.join(work, 'demo.key.pub')], work);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('refuses to reuse a target name for another journal address, even with a new state directory', async () => {
    const result = await runCli([...base(tls.url, 'state-other'), '--to', 'other@archive.test', '--ca', 'ca.pem'], work);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/another journal address.*\[DELIVERY_STATE\]/);
  });

  it('without --once keeps following the archive until stopped, then exits 0', async () => {
    const before = (await tls.messages()).length;
    const controller = new AbortController();
    let stdout = '';
    const running = run([...base(tls.url.replace('127.0.0.1', 'localhost'), 'state-follow').filter((arg) => arg !== '--once'), '--target', 'follow', '--ca', 'ca.pem', '--poll', '0.2'], {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: () => true },
      env: {},
      cwd: work,
      signal: controller.signal,
    });
    await tls.settle(before + records);
    // A record captured while it follows is delivered on a later pass.
    const sink = await openFsSink({ dir: path.join(work, 'archive') });
    const recorder = new Recorder({ sink });
    const [stream] = (await sink.streams()).filter((name) => !name.startsWith('delivery:'));
    const [channel, account] = (stream ?? 'demo:x').split(':') as [string, string];
    await recorder.writer({ channel, account, source: { package: 'test', version: '0' } }).capture({ kind: 'system', key: 'follow-test', system: { event: 'follow-test' } });
    await recorder.close();
    await sink.close();
    await tls.settle(before + records + 1);
    controller.abort();
    expect(await running).toBe(0);
    expect(stdout).toContain('backlog 0 records');
    records += 1;
  }, 60_000);

  it('--check lists what was not delivered and exits 1', async () => {
    const check = await runCli(['deliver', 'archive', '--check', '--target', 'never'], work);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain('NOT COMPLETE');
    expect(check.stdout).toMatch(/NOT DELIVERED: seq 1 \(/);
  });

  it('refuses a server without STARTTLS unless --allow-plaintext-loopback', async () => {
    const refused = await runCli([...base(plain.url, 'state-plain'), '--target', 'plain'], work);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/must offer STARTTLS.*\[DELIVERY_TLS\]/);
    expect(await plain.messages()).toHaveLength(0);
    const allowed = await runCli([...base(plain.url, 'state-plain'), '--target', 'plain', '--allow-plaintext-loopback'], work);
    expect(allowed.code, allowed.stderr).toBe(0);
    await plain.settle(records);
  });

  it('takes a password only from a private file or the environment', async () => {
    await writeFile(path.join(work, 'smtp.pass'), 'not-for-logs\n');
    await chmod(path.join(work, 'smtp.pass'), 0o644);
    const shared = await runCli([...base(tls.url, 'state-pass'), '--user', 'svc', '--password-file', 'smtp.pass'], work);
    expect(shared.code).toBe(2);
    expect(shared.stderr).toContain('chmod 600');
    expect(shared.stderr).not.toContain('not-for-logs');
    const missing = await runCli([...base(tls.url, 'state-pass'), '--user', 'svc'], work);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('OFFCHANNEL_SMTP_PASSWORD');
    expect(await readFile(path.join(work, 'smtp.pass'), 'utf8')).toBe('not-for-logs\n');
  });
});
