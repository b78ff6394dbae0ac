import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MerkleLevels, cosignerFromSeed, ed25519KeyFromSeed, formatAddCheckpoint, formatCheckpoint, leafHash, signNote, treeRoot } from '@offchannel/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningWitnessServer, startWitnessServer } from './witness-server.ts';
import { WitnessService } from './witness-service.ts';
import { SnapshotKey } from './witness-snapshot.ts';
import { WitnessState } from './witness-state.ts';

const LOG_KEY = ed25519KeyFromSeed('archive.example/offchannel', new Uint8Array(32).fill(1));
const WITNESS = cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2));
const SNAPSHOT_KEY = SnapshotKey.fromCosigner(WITNESS);
const ORIGIN = 'archive.example/offchannel/demo:alice';

let dir: string;
let server: RunningWitnessServer;
let goodBody: string;
let state: WitnessState;

function post(url: string, body: string | Buffer, method = 'POST', headers: Record<string, string> = {}): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), type: String(res.headers['content-type']) }); });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function stateSnapshot(): Promise<string> {
  const journal = await readFile(path.join(dir, 'journal'), 'utf8').catch(() => '');
  const logs = await readdir(path.join(dir, 'logs'));
  return JSON.stringify({ journal, logs: await Promise.all(logs.sort().map((name) => readFile(path.join(dir, 'logs', name), 'utf8'))) });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-witness-http-'));
  state = await WitnessState.open(dir, { key: SNAPSHOT_KEY });
  const service = new WitnessService({ key: WITNESS, accept: [LOG_KEY.verifier], state, now: () => 1_765_000_000 });
  server = await startWitnessServer({ service, host: '127.0.0.1', port: 0, rate: { perSecond: 50, burst: 100 } });
  const levels = new MerkleLevels();
  for (let index = 0; index < 3; index++) levels.append(leafHash(Buffer.from(`r${index}`)));
  const note = signNote(formatCheckpoint({ origin: ORIGIN, size: 3, root: await treeRoot(levels) }), [LOG_KEY]);
  goodBody = formatAddCheckpoint({ oldSize: 0, proof: [], note });
}, 60_000);

afterAll(async () => {
  await server.close();
  state.close();
  await rm(dir, { recursive: true, force: true });
});

describe('witness HTTP listener', () => {
  it('serves POST /add-checkpoint on loopback and nothing else', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const ok = await post(`${server.url}/add-checkpoint`, goodBody);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/^— witness\.example\/w1 [A-Za-z0-9+/=]+\n$/);
    const conflict = await post(`${server.url}/add-checkpoint`, goodBody.replace('old 0', 'old 2'));
    expect([conflict.status, conflict.body, conflict.type]).toEqual([409, '3\n', 'text/x.tlog.size']);
    expect((await post(`${server.url}/`, goodBody)).status).toBe(404);
    expect((await post(`${server.url}/add-checkpoint/../x`, goodBody)).status).toBe(404);
    expect((await post(`${server.url}/add-checkpoint`, '', 'GET', { 'content-length': '0' })).status).toBe(405);
  }, 60_000);

  it('refuses oversized bodies (declared or streamed) with 413 and keeps serving', { timeout: 60_000 }, async () => {
    const before = await stateSnapshot();
    const big = Buffer.alloc(65 * 1024, 'a');
    expect((await post(`${server.url}/add-checkpoint`, big)).status).toBe(413);
    // Chunked, no Content-Length: counted as it arrives.
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${server.url}/add-checkpoint`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => { resolve(413); });
      for (let index = 0; index < 80; index++) req.write(Buffer.alloc(1024, 'b'));
      req.end();
      req.on('timeout', reject);
    });
    expect(streamed).toBe(413);
    expect(await stateSnapshot()).toBe(before);
    expect((await post(`${server.url}/add-checkpoint`, goodBody.replace('old 0', 'old 3'))).status).toBe(200);
  });

  it('answers a burst of 1,500 hostile requests with 4xx only, changes no state, and still serves', { timeout: 120_000 }, async () => {
    const before = await stateSnapshot();
    const hostile = [
      'garbage',
      goodBody.replace('old 0', 'old 3').replace('\n3\n', '\n4\n'),
      goodBody.replace(ORIGIN, 'unknown.example/x'),
      `old 3\n${Buffer.alloc(32).toString('base64')}\n\n${goodBody.slice(goodBody.indexOf('\n\n') + 2).replace('\n3\n', '\n9\n')}`,
      goodBody.replace('old 0', 'old 99'),
    ];
    const statuses = new Map<number, number>();
    const batch = 100;
    for (let start = 0; start < 1500; start += batch) {
      const answers = await Promise.all(Array.from({ length: batch }, (_, index) => post(`${server.url}/add-checkpoint`, hostile[(start + index) % hostile.length] as string).then((answer) => answer.status)));
      for (const status of answers) statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    expect([...statuses.keys()].every((status) => status >= 400 && status < 500)).toBe(true);
    expect(statuses.get(429)).toBeGreaterThan(0);
    expect(await stateSnapshot()).toBe(before);
    // A slow-loris connection does not block others.
    const loris = connect(Number(new URL(server.url).port), '127.0.0.1');
    loris.write('POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nold');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const after = await post(`${server.url}/add-checkpoint`, goodBody.replace('old 0', 'old 3'));
    loris.destroy();
    expect(after.status).toBe(200);
  });
});
