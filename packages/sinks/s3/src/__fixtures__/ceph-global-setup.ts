/**
 * Vitest global setup for the S3 tests: starts a throwaway single-node Ceph (mon + memstore
 * OSD + radosgw on 127.0.0.1) with the project's scripts, writes a shared-credentials file for
 * the SDK's standard chain, and stops exactly that cluster afterwards. With
 * OFFCHANNEL_S3_ENDPOINT set, uses that server instead (credentials from your environment).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';

const run = promisify(execFile);
const scripts = fileURLToPath(new URL('../../../../../scripts/ceph/', import.meta.url));

/** What the tests get through `inject('s3')`. */
export interface S3TestServer {
  readonly endpoint: string;
  /** A shared-credentials file with the profile `offchannel-test` (local cluster only). */
  readonly credentialsFile?: string;
  /** The run directory of the local cluster (for the outage test's extra radosgw). */
  readonly runDir?: string;
  readonly scripts: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3TestServer;
  }
}

/** A free loopback port whose port + 10 (where up.sh puts the monitor) is free too. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port: chosen } = server.address() as { port: number };
        server.close(() => { resolve(chosen); });
      });
    });
    // up.sh puts the monitor on port + 10: that one must be free too.
    const monitorFree = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => { resolve(false); });
      server.listen(port + 10, '127.0.0.1', () => server.close(() => { resolve(true); }));
    });
    if (monitorFree && port + 10 < 65_536) return port;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.OFFCHANNEL_S3_ENDPOINT;
  if (external) {
    project.provide('s3', { endpoint: external, scripts });
    return async () => undefined;
  }
  const base = await mkdtemp(path.join(tmpdir(), 'offchannel-ceph-'));
  const runDir = path.join(base, 'run');
  try {
    await run('bash', [path.join(scripts, 'up.sh'), runDir, String(await freePort())], { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    await run('bash', [path.join(scripts, 'down.sh'), runDir]).catch(() => undefined);
    throw new Error(`could not start the test Ceph cluster (scripts/ceph/up.sh): ${stderr?.slice(-2000) ?? String(error)}\nSet OFFCHANNEL_S3_ENDPOINT to test against another S3 server with Object Lock.`, { cause: error });
  }
  const env = Object.fromEntries((await readFile(path.join(runDir, 'env'), 'utf8')).trim().split('\n').map((line) => line.split('=', 2) as [string, string]));
  const credentialsFile = path.join(base, 'credentials');
  await writeFile(credentialsFile, `[offchannel-test]\naws_access_key_id = ${env.AWS_ACCESS_KEY_ID}\naws_secret_access_key = ${env.AWS_SECRET_ACCESS_KEY}\n`, { mode: 0o600 });
  project.provide('s3', { endpoint: env.OFFCHANNEL_S3_ENDPOINT as string, credentialsFile, runDir, scripts });
  return async () => {
    await run('bash', [path.join(scripts, 'down.sh'), runDir]);
    await rm(base, { recursive: true, force: true });
  };
}
