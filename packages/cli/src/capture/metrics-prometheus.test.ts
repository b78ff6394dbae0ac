/**
 * The metrics endpoint against a real Prometheus server (Debian's `prometheus`, installed by
 * scripts/prometheus/ensure.sh): the built CLI captures a demo account beside an unlinked
 * WhatsApp account with metrics on loopback; Prometheus scrapes it with the bearer token from a
 * `credentials_file`, and PromQL over its HTTP API must return the records, the states and the
 * latency. The endpoint refuses requests without the token, and the scraped text holds no
 * message text, conversation or sender. No skip: without Prometheus this test fails.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateEd25519NoteKey, generateStateKey, openStateStore } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { demoExchange } from '../demo/demo-exchange.ts';

const BIN = path.join(import.meta.dirname, '..', '..', 'dist', 'bin.js');
const ENSURE = path.resolve(import.meta.dirname, '../../../../scripts/prometheus/ensure.sh');
const dirs: string[] = [];
const children: ChildProcess[] = [];
let prometheus = '';

beforeAll(() => {
  const out = execFileSync('bash', [ENSURE], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 }).toString().trim().split('\n');
  prometheus = out.at(-1) ?? '';
}, 620_000);

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A port free on loopback now (Prometheus takes its listen address as a flag). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => { resolve(); }));
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

function started(name: string, child: ChildProcess): { output: () => string } {
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.on('error', (error) => (output += `\n${name} failed to start: ${error.message}`));
  return { output: () => output };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, alive: () => string | undefined, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    const dead = alive();
    if (dead !== undefined) throw new Error(`${dead} before ${what}`);
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

interface Sample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

describe('metrics endpoint scraped by a real Prometheus server', () => {
  it('serves per-stream records, states and latency that PromQL returns; refuses requests without the token; holds no content', { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-metrics-'));
    dirs.push(dir);
    const stateKey = generateStateKey();
    const token = randomBytes(32).toString('hex');
    await writeFile(path.join(dir, 'signing.key'), `${generateEd25519NoteKey('metrics-test.offchannel.example').signerKeyText()}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'state.key'), `${stateKey}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'metrics.token'), `${token}\n`, { mode: 0o600 });
    await openStateStore({ dir: path.join(dir, 'state'), key: Buffer.from(stateKey, 'base64') });
    await (await openFsSink({ dir: path.join(dir, 'archive') })).close();
    const config = path.join(dir, 'offchannel.config.json');
    await writeFile(
      config,
      JSON.stringify({
        archive: { dir: './archive' },
        state: { dir: './state', keyFile: './state.key' },
        signing: { keyFile: './signing.key' },
        metrics: { listen: '127.0.0.1:0', tokenFile: './metrics.token' },
        connectors: [
          { channel: 'demo', account: 'alice@firm.example', intervalMs: 50, repeat: true },
          { channel: 'whatsapp', account: 'bob' },
        ],
      }),
      { mode: 0o600 },
    );

    const capture = spawn(process.execPath, [BIN, 'capture', '--config', config, '--log-level', 'info'], { cwd: dir, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const captureOut = started('capture', capture);
    const captureAlive = (): string | undefined => (capture.exitCode === null ? undefined : `capture exited (${capture.exitCode}):\n${captureOut.output().slice(-3000)}`);
    const listen = await until(
      'the metrics endpoint to listen',
      () => {
        const line = captureOut.output().split('\n').find((text) => text.includes('metrics endpoint listening'));
        return Promise.resolve(line === undefined ? undefined : (JSON.parse(line) as { listen: string }).listen);
      },
      captureAlive,
    );
    expect(listen).toMatch(/^127\.0\.0\.1:\d+$/);
    const endpoint = `http://${listen}/metrics`;

    // Refused without the token, with a wrong one, and for anything but GET /metrics.
    const refused = await fetch(endpoint);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await fetch(endpoint, { headers: { authorization: `Bearer ${token.slice(0, -1)}x` } })).status).toBe(401);
    expect((await fetch(endpoint, { headers: { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } })).status).toBe(401);
    expect((await fetch(endpoint, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: 'x' })).status).toBe(405);
    expect((await fetch(`http://${listen}/`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(404);

    // Prometheus gets its own copy of the token, as a separate user's would be.
    const promDir = path.join(dir, 'prometheus');
    await mkdir(path.join(promDir, 'data'), { recursive: true });
    await writeFile(path.join(promDir, 'metrics.token'), `${token}\n`, { mode: 0o600 });
    await writeFile(
      path.join(promDir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: offchannel',
        '    metrics_path: /metrics',
        '    authorization:',
        '      type: Bearer',
        `      credentials_file: ${JSON.stringify(path.join(promDir, 'metrics.token'))}`,
        '    static_configs:',
        `      - targets: [${JSON.stringify(listen)}]`,
        '',
      ].join('\n'),
    );
    const promPort = await freePort();
    const server = spawn(prometheus, [`--config.file=${path.join(promDir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(promDir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], { cwd: promDir, stdio: ['ignore', 'pipe', 'pipe'] });
    const serverOut = started('prometheus', server);
    const alive = (): string | undefined => captureAlive() ?? (server.exitCode === null && server.signalCode === null ? undefined : `prometheus exited (${server.exitCode ?? server.signalCode}):\n${serverOut.output().slice(-3000)}`);

    const query = async (promql: string): Promise<Sample[]> => {
      const response = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(promql)}`);
      if (!response.ok) throw new Error(`query ${promql}: HTTP ${response.status}`);
      const body = (await response.json()) as { status: string; data: { resultType: string; result: Sample[] } };
      if (body.status !== 'success') throw new Error(`query ${promql}: ${body.status}`);
      return body.data.result;
    };
    // The HTTP API writes values as strings, infinities as "+Inf" / "-Inf".
    const number = (text: string): number => (text === '+Inf' ? Infinity : text === '-Inf' ? -Infinity : Number(text));
    const value = (samples: readonly Sample[]): number | undefined => (samples.length === 1 && samples[0] ? number(samples[0].value[1]) : undefined);
    const whenValue = (promql: string, test: (value: number) => boolean): Promise<number> =>
      until(
        `${promql} to hold the expected value`,
        async () => {
          const seen = value(await query(promql));
          return seen !== undefined && test(seen) ? seen : undefined;
        },
        alive,
      );

    expect(await whenValue('up{job="offchannel"}', (seen) => seen === 1)).toBe(1);
    expect(await whenValue('sum(offchannel_records_total{stream="demo:alice@firm.example",kind="message"})', (seen) => seen > 0)).toBeGreaterThan(0);
    expect(await whenValue('offchannel_connector_state{stream="demo:alice@firm.example",state="running"}', (seen) => seen === 1)).toBe(1);
    expect(await whenValue('offchannel_connector_state{stream="whatsapp:bob",state="not-linked"}', (seen) => seen === 1)).toBe(1);
    expect(await whenValue('offchannel_connector_state{stream="whatsapp:bob",state="running"}', (seen) => seen === 0)).toBe(0);
    expect(await whenValue('sum(offchannel_connector_failures_total{stream="whatsapp:bob",code="WHATSAPP_NOT_LINKED"})', (seen) => seen >= 1)).toBeGreaterThanOrEqual(1);
    expect(await whenValue('sum(offchannel_capture_latency_seconds_count{stream="demo:alice@firm.example"})', (seen) => seen > 0)).toBeGreaterThan(0);
    expect(await whenValue('offchannel_seconds_since_last_event{stream="demo:alice@firm.example"}', (seen) => seen >= 0 && seen < 60)).toBeLessThan(60);
    // The host attested at start (signing is configured): the age is that of its last attestation.
    expect(await whenValue('offchannel_seconds_since_last_attestation{stream="demo:alice@firm.example"}', (seen) => seen >= 0 && seen < 600)).toBeLessThan(600);
    // Prometheus counted none of its own scrapes as unauthorized; our five refusals above were.
    expect(await whenValue('offchannel_metrics_unauthorized_requests_total', (seen) => seen === 3)).toBe(3);

    // What Prometheus stores: no message text, no conversation, no sender — stream names only.
    const text = await (await fetch(endpoint, { headers: { authorization: `Bearer ${token}` } })).text();
    expect(text).toContain('offchannel_records_total{stream="demo:alice@firm.example",kind="message"}');
    const secrets = new Set<string>([token]);
    for (const event of demoExchange()) {
      for (const item of [event.text, event.conversation?.id, event.conversation?.title, event.sender?.id, event.sender?.name, event.native?.id]) {
        if (typeof item === 'string' && item.length >= 4 && item !== 'alice@firm.example') secrets.add(item);
      }
    }
    expect(secrets.size).toBeGreaterThan(10);
    for (const secret of secrets) expect(text.includes(secret), `scraped text holds "${secret}"`).toBe(false);
    const series = await query('{job="offchannel",stream!=""}');
    const labels = new Set(series.flatMap((sample) => Object.keys(sample.metric)));
    const allowed = new Set(['__name__', 'code', 'instance', 'job', 'kind', 'le', 'state', 'stream']);
    expect([...labels].filter((name) => !allowed.has(name))).toEqual([]);
    expect(new Set(series.map((sample) => sample.metric.stream))).toEqual(new Set(['demo:alice@firm.example', 'whatsapp:bob']));
    expect(captureOut.output().includes(token)).toBe(false);

    capture.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => {
      if (capture.exitCode !== null) resolve(capture.exitCode);
      else capture.on('exit', resolve);
    });
    expect(code).toBe(0);
    // After a clean stop the endpoint is gone.
    await expect(fetch(endpoint, { headers: { authorization: `Bearer ${token}` } })).rejects.toThrow();
  });
});
