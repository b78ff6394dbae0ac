import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { NoteError } from '../errors/note-errors.ts';
import { noteErrorCode as timestampCode } from '../testing/note-error-code.ts';
import { type OpensslTsa, startOpensslTsa } from './__fixtures__/openssl-tsa.ts';
import { type DerNode, TAG, children, encode, readGeneralizedTime, readRoot } from './der.ts';
import { checkTsaKeyUsage, createTimestampRequest, parseTimestampResponse, verifyTimestampToken } from './rfc3161.ts';
import { createTsaClient } from './tsa-client.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const note = new TextEncoder().encode('archive.example/offchannel/demo:alice\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— archive.example/offchannel AAAA\n');
let tsa: OpensslTsa;
let other: OpensslTsa;
let token: Uint8Array;
let trusted: X509Certificate;

beforeAll(async () => {
  tsa = await startOpensslTsa();
  other = await startOpensslTsa({ name: 'Other TSA' });
  trusted = new X509Certificate(tsa.certificatePem);
  token = await createTsaClient({ url: tsa.url, trusted: [trusted] })(note);
});
afterAll(async () => {
  await tsa.close();
  await other.close();
});

describe('RFC 3161 with a real TSA (openssl ts -reply on loopback)', () => {
  it('gets a token whose imprint, signature, nonce and certificate verify', () => {
    const info = verifyTimestampToken(token, note, { trusted: [trusted] });
    expect(info.trusted).toBe(true);
    expect(Math.abs(info.genTime.getTime() - Date.now())).toBeLessThan(60_000);
    expect(info.policy).toBe('1.2.3.4.1');
    expect(info.tsa.subject).toContain('Test TSA');
    expect(tsa.requests()).toBe(1);
  });

  it('produces tokens that openssl itself verifies', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-tsa-check-'));
    try {
      await writeFile(path.join(dir, 'note'), note);
      await writeFile(path.join(dir, 'token.der'), token);
      await writeFile(path.join(dir, 'tsa.crt'), tsa.certificatePem);
      const output = execFileSync('openssl', ['ts', '-verify', '-data', 'note', '-in', 'token.der', '-token_in', '-CAfile', 'tsa.crt'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(output).toContain('Verification: OK');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a token for other data, and one from a TSA that is not trusted', async () => {
    expect(() => verifyTimestampToken(token, new TextEncoder().encode('other'), { trusted: [trusted] })).toThrow(/imprint is not the hash/);
    const foreign = await createTsaClient({ url: other.url })(note);
    expect(verifyTimestampToken(foreign, note).trusted).toBe(false);
    expect(() => verifyTimestampToken(foreign, note, { trusted: [trusted] })).toThrow(/not one of, or issued by, the trusted TSA certificates/);
    await expect(createTsaClient({ url: other.url, trusted: [trusted] })(note)).rejects.toMatchObject({ code: 'TIMESTAMP_INVALID' });
  });

  it('never accepts a changed token as saying anything else, and never crashes on damage', () => {
    // (Without trusted TSA certificates a token proves nothing about who signed it: trusted is false.)
    const original = verifyTimestampToken(token, note, { trusted: [trusted] });
    for (let length = 0; length < token.length; length++) {
      expect(timestampCode(() => verifyTimestampToken(token.subarray(0, length), note)), `prefix of ${length} bytes`).toBe('TIMESTAMP_INVALID');
    }
    // Where the signed TSTInfo lies in the token: ContentInfo → [0] → SignedData → encapContentInfo → [0] → OCTET STRING.
    const signedData = children(children(children(readRoot(token))[1] as DerNode)[0] as DerNode);
    const eContent = children(children(signedData[2] as DerNode)[1] as DerNode)[0] as DerNode;
    let rejected = 0;
    for (let index = 0; index < token.length; index++) {
      const flipped = Uint8Array.from(token);
      flipped[index] = (flipped[index] as number) ^ 0x04;
      try {
        const info = verifyTimestampToken(flipped, note, { trusted: [trusted] });
        expect(info.genTime).toEqual(original.genTime);
        expect(info.serial).toBe(original.serial);
        expect(info.tsa.fingerprint256).toBe(original.tsa.fingerprint256);
        // Nothing inside the signed TSTInfo can change unnoticed.
        expect(index < eContent.start || index >= eContent.end, `flip at ${index} inside the TSTInfo was accepted`).toBe(true);
      } catch (error) {
        expect(error).toBeInstanceOf(NoteError);
        rejected++;
      }
    }
    // openssl includes the TSA certificate twice (signer and chain); the signed attributes name
    // the signer by hash, so flips in the spare copy, and in unsigned hints such as the signer's
    // issuer name, change nothing that is asserted.
    expect(rejected).toBeGreaterThan(token.length / 3);
  });

  it('rejects garbage, oversized input, refusals and malformed DER with clear errors', () => {
    for (const bad of [new Uint8Array(0), Uint8Array.from([0x30]), Uint8Array.from([0x30, 0x80, 0, 0]), Uint8Array.from([0x30, 0x81, 0x01, 0x00]), Uint8Array.from([0x30, 0x00, 0x00]), new Uint8Array(300_000), Uint8Array.from([0x1f, 0x81, 0x00])]) {
      expect(timestampCode(() => verifyTimestampToken(bad, note))).toBe('TIMESTAMP_INVALID');
      expect(timestampCode(() => parseTimestampResponse(bad))).toBe('TIMESTAMP_INVALID');
    }
    const refusal = encode(TAG.SEQUENCE, encode(TAG.SEQUENCE, encode(TAG.INTEGER, Uint8Array.from([2]))));
    expect(() => parseTimestampResponse(refusal)).toThrow(/refused the request \(PKIStatus 2\)/);
    expect(() => readRoot(Uint8Array.from([0x04, 0x84, 0x7f, 0xff, 0xff, 0xff]))).toThrow(/runs past its container/);
  });

  it('builds requests openssl can read', async () => {
    const { request, nonce } = createTimestampRequest(note);
    expect(nonce > 0n).toBe(true);
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-tsq-'));
    try {
      await writeFile(path.join(dir, 'req.tsq'), request);
      const text = execFileSync('openssl', ['ts', '-query', '-in', 'req.tsq', '-text'], { cwd: dir, encoding: 'utf8' });
      expect(text).toContain('Hash Algorithm: sha256');
      expect(text).toContain('Certificate required: yes');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('accepts the version-1 ESS certificate identifier (SHA-1) that openssl uses by default', async () => {
    const v1 = await startOpensslTsa({ name: 'V1 TSA', essCertIdAlg: 'sha1' });
    try {
      const certificate = new X509Certificate(v1.certificatePem);
      const stamped = await createTsaClient({ url: v1.url, trusted: [certificate] })(note);
      expect(verifyTimestampToken(stamped, note, { trusted: [certificate] }).trusted).toBe(true);
      // The v1 token names its own certificate: the other TSA's certificate cannot stand in for it.
      expect(Buffer.from(stamped).includes(Buffer.from(new X509Certificate(v1.certificatePem).raw))).toBe(true);
    } finally {
      await v1.close();
    }
  });

  it('requires a critical timeStamping-only extended key usage on a trusted TSA certificate', async () => {
    expect(() => { checkTsaKeyUsage(trusted); }).not.toThrow();
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-eku-'));
    try {
      const make = (name: string, ...extensions: string[]) => {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`, ...extensions.flatMap((extension) => ['-addext', extension])], { cwd: dir, stdio: 'ignore' });
        return new X509Certificate(execFileSync('cat', [`${name}.crt`], { cwd: dir }));
      };
      expect(() => { checkTsaKeyUsage(make('plain', 'extendedKeyUsage=timeStamping')); }).toThrow(/not marked critical/);
      expect(() => { checkTsaKeyUsage(make('wide', 'extendedKeyUsage=critical,timeStamping,serverAuth')); }).toThrow(/timeStamping only/);
      expect(() => { checkTsaKeyUsage(make('none')); }).toThrow(/exactly one extended key usage/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads GeneralizedTime years below 100 as written', () => {
    const time = (text: string) => readGeneralizedTime(readRoot(encode(TAG.GENERALIZED_TIME, new TextEncoder().encode(text))), 'time');
    expect(time('00990101000000Z').getUTCFullYear()).toBe(99);
    expect(time('20261121093000.5Z').toISOString()).toBe('2026-11-21T09:30:00.500Z');
    expect(() => time('20260230000000Z')).toThrow(/not a real time/);
  });

  it('refuses plain http to anything but loopback', () => {
    expect(() => createTsaClient({ url: 'http://tsa.example.com/' })).toThrow(/must use https/);
    expect(() => createTsaClient({ url: 'https://tsa.example.com/' })).not.toThrow();
  });
});
