import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaUnavailableError, createMediaDownloader, isPublicAddress, publicAddressLookup, type MediaDownloader, type MediaRef } from './media-download.ts';
import { encryptMedia } from './testing/fixtures.ts';
import { startMediaServer, type MediaServer } from './testing/media-server.ts';

/** A TCP listener that must see no connection: every accepted socket is counted and closed. */
interface Trap {
  readonly port: number;
  readonly connections: number;
  close(): Promise<void>;
}

async function trap(host: string): Promise<Trap | undefined> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.destroy();
  });
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => { resolve(false); });
    server.listen(0, host, () => { resolve(true); });
  });
  if (!ok) return undefined; // e.g. no IPv6 loopback in this container
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get connections() {
      return connections;
    },
    close: () => new Promise<void>((resolve) => { server.close(() => { resolve(); }); }),
  };
}

let v4: Trap;
let v6: Trap | undefined;
let cdn: MediaServer;
let media: Awaited<ReturnType<typeof encryptMedia>>;
beforeAll(async () => {
  v4 = (await trap('127.0.0.1')) as Trap;
  v6 = await trap('::1');
  cdn = await startMediaServer();
  media = await encryptMedia(Buffer.from('quarterly figures'), 'document');
});
afterAll(async () => {
  await v4.close();
  await v6?.close();
  await cdn.close();
});

const ref = (where: { url?: string; directPath?: string }): MediaRef => ({ kind: 'document', mediaKey: media.mediaKey, fileSha256: media.fileSha256, fileEncSha256: media.fileEncSha256, fileLength: media.fileLength, ...where });

async function reason(download: MediaDownloader, r: MediaRef): Promise<string> {
  try {
    await download(r);
  } catch (error) {
    if (error instanceof MediaUnavailableError) return error.reason;
    throw error;
  }
  return 'downloaded';
}

/** The downloader with its test seam aimed at the trap: records every host it is asked to connect to. */
function trapped(): { download: MediaDownloader; hosts: string[] } {
  const hosts: string[] = [];
  const download = createMediaDownloader({ timeoutMs: 60_000, resolveHost: (host) => { hosts.push(host); return { address: '127.0.0.1', port: v4.port }; } });
  return { download, hosts };
}

describe('media URLs: only the allowlisted WhatsApp host, over https', () => {
  it('the trap works: a valid directPath aimed at it through the seam connects', async () => {
    const { download, hosts } = trapped();
    const before = v4.connections;
    expect(await reason(download, ref({ directPath: '/v/t62.7119-24/12345_67890_n.enc?ccb=11-4&oh=01_Q5AaIB&oe=68A1B2C3&_nc_sid=5e03e0&mms3=true' }))).toBe('network-error');
    expect(hosts).toEqual(['mmg.whatsapp.net']);
    expect(v4.connections).toBe(before + 1);
  });

  it('refuses hostile `url`s (loopback in every spelling, userinfo, other schemes, ports, look-alike hosts) without connecting', async () => {
    const p = v4.port;
    const hostile = [
      `https://127.0.0.1:${p}/x`,
      `https://127.1:${p}/x`,
      `https://2130706433:${p}/x`, // decimal
      `https://0177.0.0.1:${p}/x`, // octal
      `https://0x7f.0.0.1:${p}/x`, // hex
      `https://[::ffff:127.0.0.1]:${p}/x`, // IPv4-mapped IPv6
      `https://[::ffff:7f00:1]:${p}/x`,
      `https://localhost:${p}/x`,
      `https://mmg.whatsapp.net@127.0.0.1:${p}/x`, // userinfo
      `https://mmg.whatsapp.net:x@127.0.0.1:${p}/x`,
      `https://mmg.whatsapp.net\\@127.0.0.1:${p}/x`,
      `https://mmg.whatsapp.net:${p}/x`, // allowlisted host, other port
      `https://mmg.whatsapp.net:443/x`,
      `https://mmg.whatsapp.net.evil.example/x`,
      `https://evil.example/https://mmg.whatsapp.net/x`,
      `https://MMG.WHATSAPP.NET./x`,
      `http://127.0.0.1:${p}/x`,
      'http://mmg.whatsapp.net/x',
      'file:///etc/passwd',
      'data:application/octet-stream;base64,AAAA',
      'ftp://mmg.whatsapp.net/x',
      ` https://127.0.0.1:${p}/x`,
      `\thttps://127.0.0.1:${p}/x`,
      `https://mmg.whatsapp.net//127.0.0.1:${p}/x`, // protocol-relative path
      'https://mmg.whatsapp.net/../x',
      'https://mmg.whatsapp.net/a/%2e%2e/%2e%2e/x',
      'https://mmg.whatsapp.net/x#fragment',
    ];
    if (v6) hostile.push(`https://[::1]:${v6.port}/x`, `https://[0:0:0:0:0:0:0:1]:${v6.port}/x`);
    const { download, hosts } = trapped();
    const production = createMediaDownloader({ timeoutMs: 60_000 });
    const before = v4.connections;
    for (const url of hostile) {
      expect([url, await reason(production, ref({ url }))]).toEqual([url, 'invalid-media-url']);
      expect([url, await reason(download, ref({ url }))]).toEqual([url, 'invalid-media-url']);
    }
    expect(hosts).toEqual([]);
    expect(v4.connections).toBe(before);
    expect(v6?.connections ?? 0).toBe(0);
  });

  it('refuses hostile `directPath`s (no leading /, //host, .., backslashes, percent tricks, control bytes, huge) without connecting', async () => {
    const hostile = [
      '.evil.example/x',
      '@evil.example/x',
      `:${v4.port}/x`,
      'x',
      '//evil.example/x',
      '///evil.example/x',
      '/\\evil.example/x',
      '\\\\evil.example\\x',
      '/../x',
      '/a/../../x',
      '/./x',
      '/a/..',
      '/%2e%2e/x',
      '/%2E%2e/x',
      '/.%2e/x',
      '/a%2fb',
      '/a%2Fb',
      '/a%5cb',
      '/a%00b',
      '/a%0d%0aHost:%20evil',
      '/a%40evil.example',
      '/a%252e%252e/x', // double encoding
      '/a%',
      '/a%zz',
      '/a%c0%ae%c0%ae/x', // overlong UTF-8 dot
      '/a b',
      '/a\tb',
      '/a\r\nHost: evil.example',
      '/é',
      '/x#y',
      `/${'a'.repeat(5000)}`,
    ];
    const { download, hosts } = trapped();
    const before = v4.connections;
    for (const directPath of hostile) {
      expect([directPath, await reason(download, ref({ directPath, url: 'https://mmg.whatsapp.net/fallback' }))]).toEqual([directPath, 'invalid-media-path']);
    }
    expect(hosts).toEqual([]);
    expect(v4.connections).toBe(before);
  });

  it('downloads from the allowlisted host over real TLS (self-signed test CA) and refuses a certificate for another name', async () => {
    cdn.put('ok', media.file);
    const download = createMediaDownloader({ ...cdn.downloaderOptions, timeoutMs: 60_000 });
    expect(Buffer.from(await download(ref({ directPath: '/ok' }))).toString()).toBe('quarterly figures');
    expect(Buffer.from(await download(ref({ url: 'https://mmg.whatsapp.net/ok' }))).toString()).toBe('quarterly figures');
    // the system trust store does not know the test CA: production settings refuse the same server
    const { resolveHost } = cdn.downloaderOptions;
    const untrusted = createMediaDownloader({ ...(resolveHost ? { resolveHost } : {}), timeoutMs: 60_000 });
    expect(await reason(untrusted, ref({ directPath: '/ok' }))).toBe('network-error');
  });

  it('lets the test seam aim at loopback only', async () => {
    for (const address of ['10.0.0.1', '192.168.1.1', '157.240.1.53', 'mmg.whatsapp.net']) {
      const download = createMediaDownloader({ timeoutMs: 60_000, resolveHost: () => ({ address, port: v4.port }) });
      expect([address, await reason(download, ref({ directPath: '/ok' }))]).toEqual([address, 'blocked-address']);
    }
  });

  it('production lookup: a media host that resolves to loopback or private addresses is never connected to', async () => {
    const answers: Record<string, { address: string; family: number }[]> = {
      'rebound.example': [{ address: '127.0.0.1', family: 4 }],
      'private.example': [{ address: '10.0.0.7', family: 4 }, { address: '::1', family: 6 }, { address: '::ffff:127.0.0.1', family: 6 }],
    };
    const lookup = publicAddressLookup((hostname, callback) => { callback(null, answers[hostname] ?? []); });
    const before = v4.connections;
    for (const host of Object.keys(answers)) {
      const error = await new Promise<unknown>((resolve) => {
        const socket = connect({ host, port: v4.port, lookup, autoSelectFamily: false });
        socket.once('connect', () => { socket.destroy(); resolve(undefined); });
        socket.once('error', resolve);
      });
      expect([host, (error as MediaUnavailableError | undefined)?.reason]).toEqual([host, 'blocked-address']);
    }
    expect(v4.connections).toBe(before);
    // mixed answers: only the public ones are handed to the socket
    const mixed = publicAddressLookup((_hostname, callback) => { callback(null, [{ address: '127.0.0.1', family: 4 }, { address: '157.240.1.53', family: 4 }]); });
    const all = await new Promise<unknown>((resolve) => { (mixed as unknown as (h: string, o: object, cb: (e: unknown, a: unknown) => void) => void)('x', { all: true }, (_e, a) => { resolve(a); }); });
    expect(all).toEqual([{ address: '157.240.1.53', family: 4 }]);
  });

  it('counts only public addresses as connectable', () => {
    for (const address of ['127.0.0.1', '127.255.0.1', '0.0.0.0', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '224.0.0.1', '::', '::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', 'fe80::1', 'fd00::1', 'ff02::1', 'mmg.whatsapp.net', '']) {
      expect([address, isPublicAddress(address)]).toEqual([address, false]);
    }
    for (const address of ['157.240.1.53', '31.13.64.1', '2a03:2880:f000::1']) expect([address, isPublicAddress(address)]).toEqual([address, true]);
  });
});

