/**
 * A throwaway Postfix on 127.0.0.1 (scripts/postfix/start.sh), delivering every message for
 * journal@archive.test into a Maildir this helper reads.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPTS = path.resolve(import.meta.dirname, '../../../../scripts/postfix');

export const JOURNAL = 'journal@archive.test';

export interface PostfixInstance {
  readonly port: number;
  readonly url: string;
  /** The self-signed certificate (starttls mode), to trust as CA. */
  readonly ca: Buffer | undefined;
  /** Messages in the Maildir's new/ (raw bytes). */
  messages(): Promise<Buffer[]>;
  /** Waits until the Maildir holds at least `count` messages and the queue is empty. */
  settle(count: number, timeoutMs?: number): Promise<Buffer[]>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

export async function startPostfix(tls: 'starttls' | 'plain'): Promise<PostfixInstance> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-postfix-'));
  const port = await freePort();
  await run('bash', [path.join(SCRIPTS, 'start.sh'), dir, String(port), tls], { timeout: 60_000 });
  const maildir = path.join(dir, 'mail', 'journal', 'new');
  const messages = async (): Promise<Buffer[]> => {
    const names = await readdir(maildir).catch(() => []);
    return Promise.all(names.sort().map((name) => readFile(path.join(maildir, name))));
  };
  const queued = async (): Promise<number> => {
    let count = 0;
    for (const queue of ['incoming', 'active', 'deferred', 'maildrop']) count += (await readdir(path.join(dir, 'spool', queue), { recursive: true, withFileTypes: true }).catch(() => [])).filter((entry) => entry.isFile()).length;
    return count;
  };
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    ca: tls === 'starttls' ? await readFile(path.join(dir, 'etc', 'cert.pem')) : undefined,
    messages,
    async settle(count, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = await messages();
        if (found.length >= count && (await queued()) === 0) return found;
        if (Date.now() > deadline) throw new Error(`Postfix delivered ${found.length} of ${count} messages within ${timeoutMs} ms; see ${dir}/maillog`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async stop() {
      await run('bash', [path.join(SCRIPTS, 'stop.sh'), dir], { timeout: 60_000 });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
