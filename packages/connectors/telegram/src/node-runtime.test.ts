import { createHash } from 'node:crypto';
import { createRecordingLogger } from '@offchannel/core/testing';
import { describe, expect, it } from 'vitest';
import { NodeCryptoProvider, nodePlatform } from './node-runtime.ts';

describe('node runtime for mtcute', () => {
  it('does AES-IGE with mtcute’s WASM build (round trip) and hashes with node:crypto', async () => {
    const crypto = new NodeCryptoProvider();
    await crypto.initialize();
    const key = new Uint8Array(32).fill(7);
    const iv = new Uint8Array(32).fill(9);
    const plain = new Uint8Array(64).map((_, index) => index);
    const ige = crypto.createAesIge(key, iv);
    const sealed = ige.encrypt(plain);
    expect(Buffer.from(sealed).equals(Buffer.from(plain))).toBe(false);
    expect(Buffer.from(crypto.createAesIge(key, iv).decrypt(sealed)).equals(Buffer.from(plain))).toBe(true);
    expect(Buffer.from(crypto.sha256(plain)).toString('hex')).toBe(createHash('sha256').update(plain).digest('hex'));
    const { gzipSync } = await import('node:zlib');
    expect(Buffer.from(crypto.gunzip(gzipSync(plain))).equals(Buffer.from(plain))).toBe(true);
  });

  it('forwards mtcute log lines without their arguments (which can hold message text)', () => {
    const logger = createRecordingLogger();
    const platform = nodePlatform(logger);
    platform.log(0, 1, 'updates', 'processing message %d: %s', [1001, 'Buy 100 ACME']);
    platform.log(0, 2, 'network', 'flood wait %d', [5]);
    expect(logger.text()).not.toContain('Buy 100 ACME');
    expect(logger.text()).toContain('processing message %d: %s');
  });
});
