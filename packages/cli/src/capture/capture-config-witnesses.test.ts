import { ConfigError, cosignerFromSeed, ed25519KeyFromSeed } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { parseCaptureConfig } from './capture-config.ts';

const WITNESS = cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2));
const LOG = ed25519KeyFromSeed('archive.example/offchannel', new Uint8Array(32).fill(1));
const base = { state: { keyFile: 'state.key' }, connectors: [{ channel: 'demo', account: 'alice@firm.example' }] };

function problem(witnesses: unknown): string {
  try {
    parseCaptureConfig({ ...base, signing: { keyFile: 'signing.key', witnesses } }, '/etc/offchannel/offchannel.config.json');
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return 'accepted';
}

describe('capture config: signing.witnesses', () => {
  it('accepts witnesses by url and verifier key; none by default', () => {
    const config = parseCaptureConfig({ ...base, signing: { keyFile: 'signing.key', witnesses: [{ url: 'http://127.0.0.1:7380', key: WITNESS.verifierKey }] } }, '/etc/offchannel/c.json');
    expect(config.signing?.witnesses.map((entry) => [entry.url, entry.key.verifierKey])).toEqual([['http://127.0.0.1:7380', WITNESS.verifierKey]]);
    expect(parseCaptureConfig({ ...base, signing: { keyFile: 'signing.key' } }, '/c.json').signing?.witnesses).toEqual([]);
  });

  it('refuses bad entries, naming the key and never echoing key material', () => {
    expect(problem({ url: 'http://127.0.0.1:1' })).toMatch(/^config\.signing\.witnesses must be a list/);
    expect(problem([{ url: 'http://witness.example', key: WITNESS.verifierKey }])).toMatch(/^config\.signing\.witnesses\[0\]\.url .*https/);
    expect(problem([{ url: 'https://u:p@witness.example', key: WITNESS.verifierKey }])).toMatch(/^config\.signing\.witnesses\[0\]\.url/);
    expect(problem([{ url: 'https://witness.example', key: LOG.verifierKey }])).toMatch(/^config\.signing\.witnesses\[0\]\.key this is a log \(note\) key/);
    const secret = problem([{ url: 'https://witness.example', key: WITNESS.signerKeyText() }]);
    expect(secret).toMatch(/^config\.signing\.witnesses\[0\]\.key must be a witness verifier key .*a signing \(private\) key \(not printed\)/);
    expect(secret).not.toContain(WITNESS.signerKeyText().split('+').at(-1));
    expect(problem([{ url: 'https://a.example', key: WITNESS.verifierKey }, { url: 'https://b.example', key: WITNESS.verifierKey }])).toMatch(/witnesses\[1\]\.key names a witness already listed/);
    expect(problem([{ url: 'https://a.example', key: WITNESS.verifierKey, token: 'x' }])).toMatch(/witnesses\[0\]/);
  });
});

describe('capture config: signing.archiveLog', () => {
  const parse = (archiveLog: unknown, archive: unknown = { dir: './archive' }) => parseCaptureConfig({ ...base, archive, signing: { keyFile: 'signing.key', archiveLog } }, '/etc/offchannel/c.json');
  const refusal = (archiveLog: unknown, archive?: unknown): string => {
    try {
      parse(archiveLog, archive);
    } catch (error) {
      if (error instanceof ConfigError) return error.message;
      throw error;
    }
    return 'accepted';
  };

  it('is off by default (each stream witnessed); true or {everyMs} turns it on', () => {
    expect(parseCaptureConfig({ ...base, signing: { keyFile: 'signing.key' } }, '/c.json').signing?.archiveLog).toBeUndefined();
    expect(parse(false).signing?.archiveLog).toBeUndefined();
    expect(parse(true).signing?.archiveLog).toEqual({ everyMs: 60_000 });
    expect(parse({ everyMs: 5000 }).signing?.archiveLog).toEqual({ everyMs: 5000 });
  });

  it('refuses bad values; takes an S3 archive (the forwarder copies the archive log)', () => {
    expect(refusal({ everyMs: 10 })).toMatch(/^config\.signing\.archiveLog\.everyMs/);
    expect(refusal({ every: 5000 })).toMatch(/^config\.signing\.archiveLog/);
    expect(refusal('yes')).toMatch(/^config\.signing\.archiveLog/);
    expect(parse(true, { url: 's3://bucket/comms', endpoint: 'http://127.0.0.1:7480', forcePathStyle: true }).signing?.archiveLog).toEqual({ everyMs: 60_000 });
  });
});
