/**
 * How the connector and the login build their mtcute client. The factory is a seam: production
 * uses mtcute's own `BaseTelegramClient` over TCP; the offline harness
 * (`@offchannel/telegram/testing`) passes a subclass whose RPCs are answered in-process, so the
 * rest of mtcute — the updates engine, gap recovery, flood waits, downloads — runs for real.
 */
import type { Logger } from '@offchannel/core';
import { networkMiddlewares, type RpcCallMiddleware } from '@mtcute/core';
import { BaseTelegramClient, type BaseTelegramClientOptions } from '@mtcute/core/client.js';
import { NodeCryptoProvider, TcpTransport, nodePlatform } from './node-runtime.ts';
import type { StateStoreStorage } from './state-storage.ts';

/** Builds an mtcute client from fully prepared options. */
export type TelegramClientFactory = (options: BaseTelegramClientOptions) => BaseTelegramClient;

export const defaultClientFactory: TelegramClientFactory = (options) => new BaseTelegramClient(options);

/** Longest flood wait slept through automatically, in ms; longer ones fail the request. */
export const DEFAULT_MAX_FLOOD_WAIT_MS = 60_000;

export interface ClientOptionsInput {
  readonly apiId: number;
  readonly apiHash: string;
  readonly storage: StateStoreStorage;
  readonly logger: Logger;
  /** Extra middlewares, run after mtcute's own (flood waiter, internal-error retries). */
  readonly observe?: readonly RpcCallMiddleware[];
  readonly updates?: BaseTelegramClientOptions['updates'];
  readonly testMode?: boolean;
  readonly maxFloodWaitMs?: number;
  readonly onFloodWait?: (method: string, seconds: number) => void;
}

export function clientOptions(input: ClientOptionsInput): BaseTelegramClientOptions {
  const onFloodWait = input.onFloodWait;
  return {
    apiId: input.apiId,
    apiHash: input.apiHash,
    storage: input.storage,
    crypto: new NodeCryptoProvider(),
    transport: new TcpTransport(),
    platform: nodePlatform(input.logger),
    ...(input.testMode === true ? { testMode: true } : {}),
    updates: input.updates ?? false,
    network: {
      middlewares: [
        ...networkMiddlewares.basic({
          floodWaiter: {
            maxWait: input.maxFloodWaitMs ?? DEFAULT_MAX_FLOOD_WAIT_MS,
            ...(onFloodWait ? { onBeforeWait: (ctx, seconds) => {
                    onFloodWait(ctx.request._, seconds);
                  },
                } : {}),
          },
        }),
        ...(input.observe ?? []),
      ],
    },
  };
}
