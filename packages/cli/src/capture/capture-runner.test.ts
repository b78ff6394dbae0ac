import { spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type ArchiveRecord, decodeRecord, generateEd25519NoteKey, generateStateKey, verifyArchive } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { demoExchange } from '../demo/demo-exchange.ts';
import { parseCaptureConfig } from './capture-config.ts';
import { keygenCommand } from '../commands/keygen-command.ts';
import { sha256Text } from './capture-policy.ts';
import { CaptureRunner } from './capture-runner.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function workspace(): Promise<{ dir: string; config: string; key: ReturnType<typeof generateEd25519NoteKey> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-capture-'));
  dirs.push(dir);
  const key = generateEd25519NoteKey('capture-test.offchannel.example');
  await writeFile(path.join(dir, 'signing.key'), `${key.signerKeyText()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
  // The identifier key as an operator makes it: offchannel keygen --identifier-key.
  const io = { stdout: { write: () => true }, stderr: { write: () => true }, env: {}, cwd: dir, signal: new AbortController().signal };
  expect(await keygenCommand(['--identifier-key', '--out', path.join(dir, 'policy-identifier.key')], io)).toBe(0);
  const config = path.join(dir, 'offchannel.config.json');
  await writeFile(
    config,
    JSON.stringify({
      archive: { dir: './archive' },
      state: { dir: './state', keyFile: './state.key' },
      signing: { keyFile: './signing.key', everyRecords: 10 },
      policy: { version: 'test-policy@1', identifierKeyFile: './policy-identifier.key' },
      connectors: [{ channel: 'demo', account: 'alice@firm.example', intervalMs: 0, policy: { exclude: { contacts: ['+15550199'] } } }],
    }),
    { mode: 0o600 },
  );
  return { dir, config, key };
}

async function records(dir: string): Promise<ArchiveRecord[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  const out: ArchiveRecord[] = [];
  try {
    for (const stream of await sink.streams()) for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
  } finally {
    await sink.close();
  }
  return out;
}

/** Every byte of every file under `dir`, as one latin1 string to search. */
async function allBytes(dir: string): Promise<string> {
  const parts: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) parts.push((await readFile(path.join(entry.parentPath, entry.name))).toString('latin1'));
  }
  return parts.join('\n');
}

async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('capture runner', () => {
  it('records every in-scope event with the policy version, counts excluded ones without content, and restarts without duplicates', async () => {
    const { dir, config: file, key } = await workspace();
    const config = parseCaptureConfig(JSON.parse(await readFile(file, 'utf8')), file);
    const logger = createRecordingLogger();
    const runner = new CaptureRunner(config, logger);
    await runner.start();
    await until(() => runner.snapshot().connectors[0]?.status.detail === 'all demo events replayed; idle');
    const snapshot = runner.snapshot().connectors[0];
    await runner.stop();

    const personal = demoExchange().filter((event) => event.conversation?.id === 'dm:+15550199');
    expect(personal).toHaveLength(3);
    expect(snapshot?.excluded).toBe(3);
    const archived = await records(path.join(dir, 'archive'));
    expect(archived.filter((record) => record.conversation?.id === 'dm:+15550199')).toEqual([]);
    expect(archived.every((record) => record.source.policy === 'test-policy@1')).toBe(true);
    const policy = archived.filter((record) => record.kind === 'policy' && record.system?.event !== 'retention');
    // Identifiers are HMAC-SHA256 under the firm's key: recomputed here from the key file and the id.
    const identifierKey = Buffer.from((await readFile(path.join(dir, 'policy-identifier.key'), 'utf8')).trim(), 'hex');
    expect(identifierKey).toHaveLength(32);
    const hmac = (id: string): string => createHmac('sha256', identifierKey).update(id, 'utf8').digest('hex');
    const keyId = `sha256:${createHash('sha256').update(identifierKey).digest('hex')}`;
    expect(policy.map((record) => record.system)).toEqual([
      { event: 'capture-policy', fields: { version: 'test-policy@1', 'identifier.algorithm': 'hmac-sha256', 'identifier.key-id': keyId, 'exclude.contacts.hmac-sha256': hmac('+15550199') } },
      {
        event: 'conversation-excluded',
        fields: { 'conversation.hmac-sha256': hmac('dm:+15550199'), 'identifier.algorithm': 'hmac-sha256', 'identifier.key-id': keyId, count: '3', from: expect.any(String) as string, to: expect.any(String) as string, version: 'test-policy@1' },
      },
    ]);
    expect(JSON.stringify(policy)).not.toContain('Frank');
    // No unkeyed hash of an excluded id (nor a 12-character prefix of one) anywhere in the archive's files or the logs.
    const everything = `${await allBytes(path.join(dir, 'archive'))}\n${logger.text()}`;
    for (const id of ['+15550199', 'dm:+15550199']) {
      expect(everything).not.toContain(id);
      expect(everything).not.toContain(sha256Text(id).slice(0, 12));
    }
    // Each excluded event is logged at debug level, with no identifier of any kind.
    const excludedLines = logger.lines.filter((line) => line.message === 'event excluded by capture policy; counted, not stored');
    expect(excludedLines).toHaveLength(3);
    for (const line of excludedLines) {
      const text = JSON.stringify(line);
      expect(text).not.toMatch(/[0-9a-f]{12}/);
      for (const id of ['+15550199', 'dm:+15550199', hmac('dm:+15550199').slice(0, 12), sha256Text('dm:+15550199').slice(0, 12)]) expect(text).not.toContain(id);
    }
    const inScope = demoExchange().length - personal.length;
    const supervision = archived.filter((record) => record.kind === 'system' && record.system?.event.startsWith('capture-'));
    expect(supervision.map((record) => record.system?.event)).toEqual(['capture-started', 'capture-stopped']);
    expect(supervision.every((record) => record.source.policy === 'test-policy@1' && record.system?.fields?.run === runner.runId)).toBe(true);
    expect(archived).toHaveLength(inScope + 2 + supervision.length);

    const text = JSON.stringify(logger.lines);
    for (const event of demoExchange()) if (event.text) expect(text).not.toContain(event.text);

    // A restart replays the same events: all duplicates; the same policy is not recorded twice.
    const again = new CaptureRunner(config, createRecordingLogger());
    await again.start();
    await until(() => again.snapshot().connectors[0]?.status.detail === 'all demo events replayed; idle');
    expect(again.snapshot().connectors[0]?.status).toMatchObject({ captured: 0, duplicates: inScope });
    await again.stop();
    const after = await records(path.join(dir, 'archive'));
    expect(after.filter((record) => record.system?.event === 'conversation-excluded')).toHaveLength(2); // the second run's own count
    expect(after.filter((record) => record.system?.event === 'capture-policy')).toHaveLength(1);

    const sink = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
    const report = await verifyArchive(sink, { verifiers: [key.verifier] }).finally(() => sink.close());
    expect(report.failures).toEqual([]);
    expect(report.streams[0]?.checkpoints?.at(-1)?.size).toBe(after.length);
  });

  it('the built binary stops cleanly on SIGINT and signs a final checkpoint', { timeout: 60_000 }, async () => {
    const { dir, config, key } = await workspace();
    const bin = path.join(import.meta.dirname, '..', '..', 'dist', 'bin.js');
    const child = spawn(process.execPath, [bin, 'capture', '--config', config, '--log-level', 'info'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await until(() => stderr.includes('"capture running"'), 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stdout).toMatch(/stopped: demo:alice@firm\.example \d+ records? captured/);
    const sink = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
    const report = await verifyArchive(sink, { verifiers: [key.verifier] }).finally(() => sink.close());
    expect(report.ok).toBe(true);
    expect(report.streams[0]?.checkpoints?.at(-1)?.size).toBe(report.streams[0]?.records);
  });

  it('refuses to start on a bad config, naming the key, with exit status 2', async () => {
    const { dir, config } = await workspace();
    await writeFile(config, JSON.stringify({ state: { keyFile: './state.key' }, connectors: [{ channel: 'demo', account: 'a', intervalMs: 'fast' }] }));
    const { runCli } = await import('../testing/run-cli.ts');
    const result = await runCli(['capture', '--config', config], dir);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/config\.connectors\[0\]\.intervalMs must be a whole number/);
  });

  it('keygen writes a 0600 identifier key and never overwrites it; capture refuses a missing, shared or malformed one', async () => {
    const { dir, config } = await workspace();
    const keyFile = path.join(dir, 'policy-identifier.key');
    const { runCli } = await import('../testing/run-cli.ts');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect((await readFile(keyFile, 'utf8')).trim()).toMatch(/^[0-9a-f]{64}$/);
    const again = await runCli(['keygen', '--identifier-key', '--out', keyFile], dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists; keygen never overwrites/);
    const secret = (await readFile(keyFile, 'utf8')).trim();

    await chmod(keyFile, 0o640);
    const shared = await runCli(['capture', '--config', config], dir);
    expect(shared.code).toBe(2);
    expect(shared.stderr).toMatch(/identifier key file .* is readable by group or others; run `chmod 600/);
    await rm(keyFile);
    await writeFile(keyFile, 'not-a-key\n', { mode: 0o600 });
    const malformed = await runCli(['capture', '--config', config], dir);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/is not an identifier key \(64 hexadecimal characters/);
    await rm(keyFile);
    const missing = await runCli(['capture', '--config', config], dir);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot be read; create one with `offchannel keygen --identifier-key/);
    for (const result of [shared, malformed, missing]) expect(result.stdout + result.stderr).not.toContain(secret);
  });

  it("a Telegram Business connector gets its webhook token from capture's environment, and its bot token from a 0600 file", { timeout: 60_000 }, async () => {
    const { dir } = await workspace();
    const token = 'webhook-token-from-env-0123456789';
    await writeFile(path.join(dir, 'bot-token'), '123456:ABCdef_ghi-JKLmnopQRStuvwx\n', { mode: 0o600 });
    const port = await new Promise<number>((resolve, reject) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address();
        probe.close(() => {
          if (typeof address === 'object' && address) resolve(address.port);
          else reject(new Error('no port'));
        });
      });
    });
    const file = path.join(dir, 'offchannel.config.json');
    const connector = { channel: 'telegram', route: 'business', account: 'desk-42', secretTokenEnv: 'OFFCHANNEL_WEBHOOK_TOKEN', botTokenFile: './bot-token', listen: { port, path: '/tg' } };
    const config = parseCaptureConfig({ archive: { dir: './archive' }, state: { dir: './state', keyFile: './state.key' }, connectors: [connector] }, file);
    const logger = createRecordingLogger();
    const runner = new CaptureRunner(config, logger, { env: { OFFCHANNEL_WEBHOOK_TOKEN: token } });
    await runner.start();
    const update = { update_id: 1, business_message: { business_connection_id: 'B1', message_id: 7, from: { id: 42, is_bot: false, first_name: 'Dana' }, chat: { id: 42, type: 'private', first_name: 'Dana' }, date: 1_700_000_000, text: 'Buy 100 ACME' } };
    const post = (secret: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/tg', method: 'POST', headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret } }, (response) => {
          response.resume();
          response.on('end', () => {
            resolve(response.statusCode ?? 0);
          });
        });
        req.on('error', reject);
        req.end(JSON.stringify(update));
      });
    try {
      expect(await post('not-the-token-0123456789abcdef')).toBe(401);
      expect(await post(token)).toBe(200);
    } finally {
      await runner.stop();
    }
    const archived = await records(path.join(dir, 'archive'));
    expect(archived.filter((record) => record.kind === 'message').map((record) => record.key)).toEqual(['message:42:7']);
    expect(logger.text()).not.toContain(token);
    expect(logger.text()).not.toContain('ABCdef_ghi');
  });
});
