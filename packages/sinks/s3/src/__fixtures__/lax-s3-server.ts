/**
 * Test fixture: an "S3-compatible" server that accepts Object Lock headers and enforces
 * nothing — the kind of store `sink-check` exists to catch (several such servers exist). It
 * keeps versions in memory, answers the few calls the probe makes, and lets anyone delete
 * or change anything. Loopback only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type IncomingMessage, type Server, createServer } from 'node:http';

interface StoredVersion {
  readonly id: string;
  readonly body: Buffer;
  readonly headers: Record<string, string>;
  readonly at: Date;
}

const xml = (body: string) => `<?xml version="1.0" encoding="UTF-8"?>${body}`;
const escape = (text: string) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

async function bodyOf(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function startLaxS3Server(): Promise<{ readonly endpoint: string; close(): Promise<void> }> {
  const objects = new Map<string, StoredVersion[]>();
  const server: Server = createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      const [, , ...rest] = url.pathname.split('/');
      const key = decodeURIComponent(rest.join('/'));
      const query = url.searchParams;
      const body = await bodyOf(request);
      const versions = objects.get(key) ?? [];
      const versionId = query.get('versionId');
      const version = versionId ? versions.find((entry) => entry.id === versionId) : versions.at(-1);
      const send = (status: number, text = '', headers: Record<string, string> = {}) => {
        response.writeHead(status, { 'content-type': 'application/xml', ...headers }).end(text);
      };
      if (key === '') {
        if (query.has('versioning')) { send(200, xml('<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>')); return; }
        if (query.has('object-lock')) { send(200, xml('<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>')); return; }
        if (query.has('versions')) {
          const prefix = query.get('prefix') ?? '';
          const entries = [...objects.entries()]
            .filter(([name]) => name.startsWith(prefix))
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .flatMap(([name, list]) => [...list].reverse().map((entry, index) => `<Version><Key>${escape(name)}</Key><VersionId>${entry.id}</VersionId><IsLatest>${index === 0}</IsLatest><ETag>"${createHash('md5').update(entry.body).digest('hex')}"</ETag><Size>${entry.body.length}</Size><LastModified>${entry.at.toISOString()}</LastModified></Version>`));
          send(200, xml(`<ListVersionsResult><Name>b</Name><Prefix>${escape(prefix)}</Prefix><IsTruncated>false</IsTruncated>${entries.join('')}</ListVersionsResult>`)); return;
        }
        send(200, xml('<ListBucketResult></ListBucketResult>')); return;
      }
      switch (request.method) {
        case 'PUT': {
          if (query.has('retention') || query.has('legal-hold')) { send(200); return; } // accepted, ignored
          const id = randomBytes(8).toString('hex');
          const headers: Record<string, string> = {};
          for (const name of ['x-amz-object-lock-mode', 'x-amz-object-lock-retain-until-date', 'x-amz-object-lock-legal-hold']) {
            const value = request.headers[name];
            if (typeof value === 'string') headers[name] = value;
          }
          objects.set(key, [...versions, { id, body, headers, at: new Date() }]);
          send(200, '', { 'x-amz-version-id': id, etag: `"${createHash('md5').update(body).digest('hex')}"` }); return;
        }
        case 'HEAD':
        case 'GET':
          if (!version) { send(404, xml('<Error><Code>NoSuchKey</Code></Error>')); return; }
          response.writeHead(200, { ...version.headers, 'x-amz-version-id': version.id, 'content-length': String(version.body.length), 'last-modified': version.at.toUTCString() });
          return void response.end(request.method === 'GET' ? version.body : undefined);
        case 'DELETE':
          objects.set(key, versionId ? versions.filter((entry) => entry.id !== versionId) : versions);
          { send(204); return; }
        default:
          { send(405); return; }
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
