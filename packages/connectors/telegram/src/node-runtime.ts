/**
 * What mtcute needs from the host, written for Node without native modules: crypto on
 * `node:crypto` plus mtcute's WASM build for AES-IGE, a TCP transport on `@fuman/node`, and a
 * platform whose log output goes to our redacting logger — level, tag and format string only,
 * never the arguments (they can hold message text or key material).
 */
import { createCipheriv, createHash, createHmac, pbkdf2, randomFillSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import { deflateSync, gunzipSync } from 'node:zlib';
import type { Logger } from '@offchannel/core';
import { connectTcp } from '@fuman/node';
import { IntermediatePacketCodec, type ICorePlatform, type TelegramTransport } from '@mtcute/core';
import { BaseCryptoProvider, type IAesCtr, type ICryptoProvider, type IEncryptionScheme } from '@mtcute/core/utils.js';
import { SIMD_AVAILABLE, ige256Decrypt, ige256Encrypt, initSync } from '@mtcute/wasm';

let wasmReady: Promise<void> | undefined;

/** Loads mtcute's WASM module once per process. */
function loadWasm(): Promise<void> {
  wasmReady ??= (async () => {
    const require = createRequire(import.meta.url);
    const file = require.resolve(`@mtcute/wasm/${SIMD_AVAILABLE ? 'mtcute-simd.wasm' : 'mtcute.wasm'}`);
    initSync(await readFile(file));
  })();
  return wasmReady;
}

export class NodeCryptoProvider extends BaseCryptoProvider implements ICryptoProvider {
  async initialize(): Promise<void> {
    await loadWasm();
  }

  createAesCtr(key: Uint8Array, iv: Uint8Array): IAesCtr {
    const cipher = createCipheriv(`aes-${key.length * 8}-ctr`, key, iv);
    return { process: (data) => cipher.update(data) };
  }

  createAesIge(key: Uint8Array, iv: Uint8Array): IEncryptionScheme {
    return { encrypt: (data) => ige256Encrypt(data, key, iv), decrypt: (data) => ige256Decrypt(data, key, iv) };
  }

  pbkdf2(password: Uint8Array, salt: Uint8Array, iterations: number, keylen = 64, algo = 'sha512'): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      pbkdf2(password, salt, iterations, keylen, algo, (error, key) => {
        if (error) reject(error);
        else resolve(key);
      });
    });
  }

  sha1(data: Uint8Array): Uint8Array {
    return createHash('sha1').update(data).digest();
  }

  sha256(data: Uint8Array): Uint8Array {
    return createHash('sha256').update(data).digest();
  }

  hmacSha256(data: Uint8Array, key: Uint8Array): Uint8Array {
    return createHmac('sha256', key).update(data).digest();
  }

  gzip(data: Uint8Array, maxSize: number): Uint8Array | null {
    try {
      return deflateSync(data, { maxOutputLength: maxSize });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return null;
      throw error;
    }
  }

  gunzip(data: Uint8Array): Uint8Array {
    return gunzipSync(data);
  }

  randomFill(buffer: Uint8Array): void {
    randomFillSync(buffer);
  }
}

/** MTProto over TCP (intermediate framing), as Telegram's own clients use. */
export class TcpTransport implements TelegramTransport {
  async connect(dc: { ipAddress: string; port: number }): Promise<Awaited<ReturnType<TelegramTransport['connect']>>> {
    const connection = await connectTcp({ address: dc.ipAddress, port: dc.port });
    connection.setNoDelay(true);
    connection.setKeepAlive(true);
    return connection;
  }

  packetCodec(): IntermediatePacketCodec {
    return new IntermediatePacketCodec();
  }
}

const LEVELS = ['', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/** The host platform for mtcute; its log lines go to `logger` without their arguments. */
export function nodePlatform(logger: Logger): ICorePlatform {
  return {
    beforeExit: () => () => undefined, // the connector's stop() closes storage; no global exit hooks
    log: (_color, level, tag, format) => {
      const name = LEVELS[level] ?? 'debug';
      const line = { component: 'mtcute', tag, format };
      if (name === 'error') logger.error(line, 'mtcute error');
      else if (name === 'warn') logger.warn(line, 'mtcute warning');
      else logger.debug(line, 'mtcute');
    },
    getDefaultLogLevel: () => 2,
    getDeviceModel: () => `offchannel (Node.js ${process.version}; ${os.type()} ${os.arch()})`,
  };
}
