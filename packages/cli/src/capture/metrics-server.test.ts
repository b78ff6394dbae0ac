/** The metrics listener on loopback, spoken to with real HTTP requests and raw sockets. */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { METRICS_LIMITS, MetricsListenError, type MetricsServer, startMetricsServer } from './metrics-server.ts';

const TOKEN = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const servers: MetricsServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function serve(render = (): Promise<{ contentType: string; body: string }> => Promise.resolve({ contentType: 'text/plain; version=0.0.4', body: 'offchannel_up 1\n' })) {
  let unauthorized = 0;
  let renders = 0;
  const server = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    render: () => {
      renders++;
      return render();
    },
    onUnauthorized: () => {
      unauthorized++;
    },
  });
  servers.push(server);
  return { server, url: `http://127.0.0.1:${server.port}/metrics`, unauthorized: () => unauthorized, renders: () => renders };
}

/** Sends `request` as is on a raw socket and resolves with everything the server answered. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(request);
    });
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('end', () => {
      resolve(answer);
    });
    socket.on('close', () => {
      resolve(answer);
    });
    socket.on('error', reject);
  });
}

describe('metrics server', { timeout: 60_000 }, () => {
  it('serves GET /metrics only with the bearer token, and says nothing else to anyone else', async () => {
    const { url, unauthorized, renders } = await serve();
    const ok = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('text/plain; version=0.0.4');
    expect(ok.headers.get('cache-control')).toBe('no-store');
    expect(await ok.text()).toBe('offchannel_up 1\n');
    const refusals: [RequestInit, string, number][] = [
      [{}, url, 401],
      [{ headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` } }, url, 401],
      [{ headers: { authorization: `Bearer ${TOKEN}0` } }, url, 401],
      [{ headers: { authorization: `bearer  ${TOKEN}` } }, url, 401],
      [{ headers: { authorization: TOKEN } }, url, 401],
      [{ headers: { authorization: `Basic ${Buffer.from(`prometheus:${TOKEN}`).toString('base64')}` } }, url, 401],
      [{ method: 'POST', body: 'x' }, url, 401],
      [{ method: 'POST', body: 'x', headers: { authorization: `Bearer ${TOKEN}` } }, url, 405],
      [{ method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } }, url, 405],
      [{ headers: { authorization: `Bearer ${TOKEN}` } }, url.replace('/metrics', '/'), 404],
      [{ headers: { authorization: `Bearer ${TOKEN}` } }, `${url}?x=1`, 404],
      [{ headers: { authorization: `Bearer ${TOKEN}` } }, url.replace('/metrics', '/metrics/../metrics2'), 404],
    ];
    for (const [init, target, status] of refusals) {
      const response = await fetch(target, init);
      expect(response.status, `${init.method ?? 'GET'} ${target} ${JSON.stringify(init.headers ?? {})}`).toBe(status);
      const body = await response.text();
      expect(body).not.toContain('offchannel_up');
      expect(body).not.toContain(TOKEN);
      if (status === 401) expect(response.headers.get('www-authenticate')).toBe('Bearer realm="offchannel-metrics"');
    }
    expect(unauthorized()).toBe(7);
    expect(renders()).toBe(1);
  });

  it('refuses a GET with a body, oversized headers and garbage, and keeps serving', async () => {
    const { server, url } = await serve();
    const withBody = await raw(server.port, `GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`);
    expect(withBody).toMatch(/^HTTP\/1\.1 413 /);
    const huge = await raw(server.port, `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(METRICS_LIMITS.maxHeaderSize * 2)}\r\n\r\n`);
    expect(huge).not.toContain('200 OK');
    const garbage = await raw(server.port, '\u0000\u0001 not http at all\r\n\r\n');
    expect(garbage).not.toContain('200 OK');
    expect((await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });

  it('shares one render among concurrent scrapes and answers 500 without detail when rendering fails', async () => {
    let release: () => void = () => undefined;
    let fail = false;
    const { url, renders } = await serve(async () => {
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      if (fail) throw new Error('registry broke: secret detail');
      return { contentType: 'text/plain', body: 'offchannel_up 1\n' };
    });
    const scrapes = Array.from({ length: 5 }, () => fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } }));
    while (renders() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    expect((await Promise.all(scrapes)).map((response) => response.status)).toEqual([200, 200, 200, 200, 200]);
    expect(renders()).toBe(1);
    fail = true;
    const failing = fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    while (renders() === 1) await new Promise((resolve) => setTimeout(resolve, 5));
    release();
    const response = await failing;
    expect(response.status).toBe(500);
    expect(await response.text()).not.toContain('secret');
  });

  it('fails with a typed error naming the setting when the port is taken', async () => {
    const { server } = await serve();
    const error = await startMetricsServer({ host: '127.0.0.1', port: server.port, token: TOKEN, render: () => Promise.resolve({ contentType: 'text/plain', body: '' }) }).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(MetricsListenError);
    expect((error as MetricsListenError).code).toBe('METRICS_LISTEN_FAILED');
    expect((error as Error).message).toMatch(/EADDRINUSE.*config\.metrics\.listen/);
  });
});
