/**
 * A scriptable SMTP server on loopback (the `smtp-server` package) for fault injection: each
 * received message is kept, then answered as `decide` says — accept (250), a reply code (4xx or
 * 5xx), or `drop` (close the connection after taking the data, before any reply).
 */
import type { Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';

export type Decision = 'accept' | 'drop' | { readonly code: number; readonly text: string };

export interface FaultServer {
  readonly url: string;
  readonly port: number;
  /** Every message that reached the end of DATA, in order, with the decision taken. */
  readonly received: { readonly bytes: Buffer; readonly decision: Decision }[];
  decide: (message: Buffer, index: number) => Decision;
  close(): Promise<void>;
}

export async function startFaultServer(options: { readonly port?: number; readonly auth?: { readonly user: string; readonly password: string } } = {}): Promise<FaultServer> {
  const received: FaultServer['received'][number][] = [];
  const sockets = new Set<Socket>();
  const state: { decide: (message: Buffer, index: number) => Decision } = { decide: () => 'accept' };
  const server = new SMTPServer({
    secure: false,
    disabledCommands: options.auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    allowInsecureAuth: true,
    authOptional: options.auth === undefined,
    logger: false,
    onAuth(auth, _session, callback) {
      if (options.auth && auth.username === options.auth.user && auth.password === options.auth.password) callback(null, { user: auth.username });
      else callback(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
    },
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const decision = state.decide(bytes, received.length);
        received.push({ bytes, decision });
        if (decision === 'accept') callback(null, 'Ok: queued as TEST');
        else if (decision === 'drop') for (const socket of sockets) socket.destroy();
        else callback(Object.assign(new Error(decision.text), { responseCode: decision.code }));
      });
    },
  });
  server.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      const address = server.server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    });
  });
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    received,
    get decide() {
      return state.decide;
    },
    set decide(value) {
      state.decide = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** The `X-Offchannel-Seq` of a rendered record e-mail. */
export function seqOf(message: Buffer): number {
  return Number(/^X-Offchannel-Seq: (\d+)/m.exec(message.toString('latin1'))?.[1] ?? 0);
}

export function streamOf(message: Buffer): string {
  return /^X-Offchannel-Stream: (\S+)/m.exec(message.toString('latin1'))?.[1] ?? '';
}
