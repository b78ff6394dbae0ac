/**
 * The real `makeWASocket` against a loopback WebSocket server (no WhatsApp): the connector
 * installs its tap on a real socket, sees the connection drop, reports it in status() and
 * reconnects; linking reports a failed connection clearly.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, createConnectorContext, openStateStore, type ConnectorStatus } from '@offchannel/core';
import { createMemorySink, createRecordingLogger, openFilesUnder } from '@offchannel/core/testing';
import makeWASocket, { initAuthCreds, makeEventBuffer, type UserFacingSocketConfig } from '@whiskeysockets/baileys';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openAuthState } from './auth-state.ts';
import { tapEmitter } from './emit-tap.ts';
import { linkWhatsApp, type LinkIO } from './link-whatsapp.ts';
import { seedOfflineLink } from './testing/offline-driver.ts';
import { createWhatsAppConnector, type WhatsAppSocket } from './whatsapp-connector.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

/** A WebSocket endpoint that completes the HTTP upgrade, reads the client's first frame, then closes. */
async function loopbackWebSocket(onUpgrade: () => void = () => undefined): Promise<{ url: string; firstFrames: Buffer[]; connections: number; close(): Promise<void> }> {
  const firstFrames: Buffer[] = [];
  let connections = 0;
  const server: Server = createServer((_request, response) => response.writeHead(404).end());
  server.on('upgrade', (request, socket) => {
    connections++;
    onUpgrade();
    const accept = createHash('sha1').update(`${String(request.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.once('data', (frame: Buffer) => {
      firstFrames.push(frame);
      socket.end(Buffer.from([0x88, 0x02, 0x03, 0xf3])); // close frame, code 1011
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws/chat`,
    firstFrames,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => { resolve(); });
      }),
  };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempState() {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-ws-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return openStateStore({ dir, key: randomBytes(32) });
}

const silent = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

describe('real makeWASocket on a loopback WebSocket', () => {
  it('the emitter tap sees the real socket’s events before any listener', async () => {
    const ws = await loopbackWebSocket();
    cleanups.push(() => ws.close());
    const socket = makeWASocket({ waWebSocketUrl: ws.url, auth: { creds: initAuthCreds(), keys: { get: async () => ({}), set: async () => undefined } }, logger: silent, markOnlineOnConnect: false, connectTimeoutMs: 3000 });
    cleanups.push(async () => socket.end(undefined));
    const order: string[] = [];
    tapEmitter(socket.ev, (event, data) => event === 'connection.update' && order.push(`tap:${String((data as { connection?: string }).connection)}`), () => undefined);
    const closed = new Promise<void>((resolve) => { socket.ev.on('connection.update', (update) => {
        order.push(`listener:${String(update.connection)}`);
        if (update.connection === 'close') resolve();
      }); },
    );
    await closed;
    expect(ws.firstFrames[0]?.length).toBeGreaterThan(0);
    expect(order.indexOf('tap:close')).toBeGreaterThanOrEqual(0);
    expect(order.indexOf('tap:close')).toBeLessThan(order.indexOf('listener:close'));
  });

  it('connector: a dropped connection is reported in status() and retried with backoff', async () => {
    const seen: ConnectorStatus[] = [];
    let third: () => void = () => undefined;
    const thirdConnection = new Promise<void>((resolve) => (third = resolve));
    const ws = await loopbackWebSocket(() => {
      seen.push(connector.status()); // the connector's state when it dials again
      if (seen.length === 3) third();
    });
    cleanups.push(() => ws.close());
    const state = await tempState();
    const logger = createRecordingLogger();
    const recorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
    const connector = createWhatsAppConnector({ account: 'loop', waWebSocketUrl: ws.url, reconnect: { initialDelayMs: 20, maxDelayMs: 40 } });
    const ctx = createConnectorContext({ recorder, connector, state, logger, signal: new AbortController().signal });
    await seedOfflineLink(ctx.state);
    await connector.start(ctx);
    cleanups.push(() => connector.stop());
    await thirdConnection;
    // The runtime reports `running` once the source is open; the first dial is under way then.
    expect(seen[0]?.state).toBe('running');
    expect(seen[1]).toMatchObject({ state: 'reconnecting', detail: 'reconnecting: 428; retry in 20 ms' });
    expect(seen[2]).toMatchObject({ state: 'reconnecting', detail: 'reconnecting: 428; retry in 40 ms' });
    await connector.stop();
    expect(connector.status().state).toBe('stopped');
    const after = ws.connections;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(ws.connections).toBe(after); // stop() cancels reconnection
  });

  it('link: a connection closed during pairing fails with a clear error', async () => {
    const ws = await loopbackWebSocket();
    cleanups.push(() => ws.close());
    const io: LinkIO = { showQr: () => undefined, showPairingCode: () => undefined, status: () => undefined };
    await expect(linkWhatsApp({ state: await tempState(), io, waWebSocketUrl: ws.url, timeoutMs: 5000 })).rejects.toMatchObject({ code: 'WHATSAPP_LINK_FAILED' });
  });
});

describe('linkWhatsApp with a scripted socket (the events Baileys emits while pairing)', () => {
  /** Pairing: first socket shows QR, phone accepts (creds.update), WhatsApp asks for a restart (515); second socket opens. */
  function pairingFactory(sockets: UserFacingSocketConfig[]) {
    return (config: UserFacingSocketConfig): WhatsAppSocket => {
      sockets.push(config);
      const ev = makeEventBuffer(silent);
      const first = sockets.length === 1;
      setImmediate(() => {
        if (first) {
          ev.emit('connection.update', { qr: '2@offline-test-qr,abc,def' });
          const creds = config.auth?.creds;
          if (creds) Object.assign(creds, { me: { id: '15550000009:3@s.whatsapp.net', lid: '900000000000009:3@lid' }, account: { details: new Uint8Array([1]) } });
          ev.emit('creds.update', {});
          const error = Object.assign(new Error('restart required'), { output: { statusCode: 515 } });
          ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } });
        } else {
          ev.emit('connection.update', { connection: 'open' });
        }
      });
      return { ev, end: () => undefined, requestPairingCode: async () => 'ABCD1234' };
    };
  }

  it('shows the QR (payload and terminal art), stops at the post-pairing 515 without logging in, stores the credentials', async () => {
    const state = await tempState();
    const shown: { text: string; terminal: string }[] = [];
    const notes: string[] = [];
    const configs: UserFacingSocketConfig[] = [];
    const linked = await linkWhatsApp({
      state,
      io: { showQr: (text, terminal) => shown.push({ text, terminal }), showPairingCode: () => undefined, status: (m) => notes.push(m) },
      socketFactory: pairingFactory(configs),
    });
    expect(linked).toEqual({ id: '15550000009:3@s.whatsapp.net', lid: '900000000000009:3@lid' });
    expect(shown[0]?.text).toBe('2@offline-test-qr,abc,def');
    expect(shown[0]?.terminal).toMatch(/[█▀▄]/);
    expect(configs).toHaveLength(1); // no login: the capture process's first session receives the history sync
    expect((await openAuthState(state.scope('auth'))).state.creds.me?.id).toBe('15550000009:3@s.whatsapp.net');
    expect(configs[0]?.markOnlineOnConnect).toBe(false);
    expect(notes.at(-1)).toBe('linked');
    await expect(linkWhatsApp({ state, io: { showQr: () => undefined, showPairingCode: () => undefined, status: () => undefined }, socketFactory: pairingFactory([]) })).rejects.toMatchObject({ code: 'WHATSAPP_ALREADY_LINKED' });
  });

  // Baileys stores keys (pre-keys, sessions) while it links: they open the keys table's file.
  it.each([
    { outcome: 'WhatsApp closes the connection', code: 'WHATSAPP_LINK_FAILED', timeoutMs: 60_000, close: true },
    { outcome: 'the phone never confirms', code: 'WHATSAPP_LINK_TIMEOUT', timeoutMs: 300, close: false },
  ])('a link that fails after keys were stored ($outcome) leaves no state file open', async ({ code, timeoutMs, close }) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-link-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const state = await openStateStore({ dir, key: randomBytes(32) });
    const factory = (config: UserFacingSocketConfig): WhatsAppSocket => {
      const ev = makeEventBuffer(silent);
      setImmediate(() => {
        void (async () => {
          ev.emit('connection.update', { qr: '2@offline-test-qr,abc,def' });
          await config.auth?.keys.set({ 'pre-key': { '1': { public: new Uint8Array(32).fill(1), private: new Uint8Array(32).fill(2) } } });
          if (!close) return;
          const error = Object.assign(new Error('connection failure'), { output: { statusCode: 500 } });
          ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } });
        })();
      });
      return { ev, end: () => undefined };
    };
    const io: LinkIO = { showQr: () => undefined, showPairingCode: () => undefined, status: () => undefined };
    await expect(linkWhatsApp({ state, io, socketFactory: factory, timeoutMs })).rejects.toMatchObject({ code });
    expect(await openFilesUnder(dir)).toEqual([]);
  });

  it('supports the phone-number pairing code and validates the number', async () => {
    const codes: string[] = [];
    const io: LinkIO = { showQr: () => undefined, showPairingCode: (code) => codes.push(code), status: () => undefined };
    await linkWhatsApp({ state: await tempState(), io, phoneNumber: '+1 555 000 0009', socketFactory: pairingFactory([]) });
    expect(codes).toEqual(['ABCD1234']);
    await expect(linkWhatsApp({ state: await tempState(), io, phoneNumber: '12', socketFactory: pairingFactory([]) })).rejects.toMatchObject({ code: 'WHATSAPP_BAD_PHONE_NUMBER' });
  });
});
