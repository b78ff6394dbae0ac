import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { RAW_FORMAT, decodeRawEvidence, encodeRawEvidence, freezeMessage } from './raw-envelope.ts';
import { JIDS, envelope, textContent } from './testing/fixtures.ts';
import { PACKAGE_VERSION } from './version.ts';

describe('raw evidence format', () => {
  it('is "WAX1" ‖ uint32 length ‖ sorted-key JSON sidecar ‖ WebMessageInfo bytes', async () => {
    const message = envelope(await textContent('x', JIDS.alice), { from: JIDS.alice, group: JIDS.group, id: 'R1', t: 1, alt: JIDS.aliceLid });
    const env = freezeMessage(message, 'append', { requestId: 'req-1', receivedAt: 1_790_000_000_123 });
    const blob = Buffer.from(encodeRawEvidence(env));
    expect(blob.subarray(0, 4).toString('latin1')).toBe('WAX1');
    const length = blob.readUInt32BE(4);
    const json = blob.subarray(8, 8 + length).toString('utf8');
    expect(json).toBe(JSON.stringify({ key: { addressingMode: 'pn', participantAlt: JIDS.aliceLid }, origin: 'append', receivedAt: 1_790_000_000_123, requestId: 'req-1' }));
    expect(blob.subarray(8 + length).equals(Buffer.from(env.bytes))).toBe(true);
    expect(decodeRawEvidence(blob).sidecar.requestId).toBe('req-1');
    expect(RAW_FORMAT).toBe('whatsapp.wmi-ext.v1');
  });

  it('rejects blobs that are not in the format', () => {
    const bad = [new Uint8Array(0), Buffer.from('WAX2\0\0\0\0'), Buffer.from([0x57, 0x41, 0x58, 0x31, 0xff, 0xff, 0xff, 0xff]), Buffer.concat([Buffer.from('WAX1'), Buffer.from([0, 0, 0, 2]), Buffer.from('[]')]), Buffer.concat([Buffer.from('WAX1'), Buffer.from([0, 0, 0, 2]), Buffer.from('{x')])];
    for (const blob of bad) expect(() => decodeRawEvidence(blob)).toThrow(TypeError);
  });

  it('states the package version that package.json declares', async () => {
    const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(PACKAGE_VERSION).toBe(manifest.version);
  });
});
