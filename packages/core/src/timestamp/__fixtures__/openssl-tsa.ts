/**
 * Test fixture: a real RFC 3161 TSA on loopback, made of `openssl ts -reply` behind a tiny
 * HTTP server. Generates its own P-256 key and certificate (EKU timeStamping, critical).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface OpensslTsa {
  readonly url: string;
  readonly certificatePem: string;
  /** How many requests were answered. */
  readonly requests: () => number;
  close(): Promise<void>;
}

export async function startOpensslTsa(options: { readonly name?: string; /** Hash naming the signer certificate: sha256 (ESSCertIDv2, default) or sha1 (ESSCertID v1). */ readonly essCertIdAlg?: 'sha1' | 'sha256' } = {}): Promise<OpensslTsa> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-tsa-'));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'tsa.key', '-out', 'tsa.crt', '-days', '3650', '-subj', `/CN=${options.name ?? 'Test TSA'}`, '-addext', 'extendedKeyUsage=critical,timeStamping', '-addext', 'keyUsage=critical,digitalSignature');
  await writeFile(path.join(dir, 'serial'), '01\n');
  await writeFile(
    path.join(dir, 'tsa.cnf'),
    ['[ tsa ]', 'default_tsa = tsa_config1', '[ tsa_config1 ]', 'serial = ./serial', 'crypto_device = builtin', 'signer_cert = ./tsa.crt', 'certs = ./tsa.crt', 'signer_key = ./tsa.key', 'signer_digest = sha256', 'default_policy = 1.2.3.4.1', 'digests = sha256', 'accuracy = secs:1', 'ordering = yes', 'tsa_name = no', 'ess_cert_id_chain = no', `ess_cert_id_alg = ${options.essCertIdAlg ?? 'sha256'}`, ''].join('\n'),
  );
  let answered = 0;
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      void (async () => {
        try {
          const query = path.join(dir, `q${answered}.tsq`);
          const reply = path.join(dir, `r${answered}.tsr`);
          await writeFile(query, Buffer.concat(chunks));
          openssl('ts', '-reply', '-config', 'tsa.cnf', '-queryfile', query, '-out', reply);
          answered++;
          response.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(await readFile(reply));
        } catch {
          response.writeHead(500).end();
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}/tsa`,
    certificatePem: await readFile(path.join(dir, 'tsa.crt'), 'utf8'),
    requests: () => answered,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => { resolve(); }));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
