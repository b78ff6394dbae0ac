/**
 * A throwaway self-signed TLS certificate, made at run time, so the loopback media CDN can
 * serve an allowlisted WhatsApp host name over real TLS (hostname and chain checked by Node)
 * without any key material in the repository. ECDSA P-256, valid 2000-01-01 to 2099-12-31
 * (fixed: no dependence on today's date), `CA:TRUE` so it can be its own trust anchor.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';

export interface TestCertificate {
  /** Certificate, PEM. Pass as `ca` to trust it. */
  readonly cert: string;
  /** Private key, PEM (PKCS#8). */
  readonly key: string;
}

/** A self-signed certificate for `names` (DNS subjectAltNames; the first is also the CN). */
export function createTestCertificate(names: readonly string[]): TestCertificate {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const ecdsaWithSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(names[0] ?? 'localhost', 'utf8')))));
  const serial = Buffer.concat([Buffer.from([0x01]), randomBytes(15)]);
  const extensions = seq(
    seq(oid('2.5.29.19'), tlv(0x01, Buffer.from([0xff])), tlv(0x04, seq(tlv(0x01, Buffer.from([0xff]))))),
    seq(oid('2.5.29.17'), tlv(0x04, seq(...names.map((dns) => tlv(0x82, Buffer.from(dns, 'ascii')))))),
  );
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([0x02]))),
    tlv(0x02, serial),
    ecdsaWithSha256,
    name,
    seq(tlv(0x18, Buffer.from('20000101000000Z')), tlv(0x18, Buffer.from('20991231235959Z'))),
    name,
    spki,
    tlv(0xa3, extensions),
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = seq(tbs, ecdsaWithSha256, tlv(0x03, Buffer.concat([Buffer.from([0x00]), signature])));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, body]);
}

function seq(...items: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(items));
}

function set(...items: Buffer[]): Buffer {
  return tlv(0x31, Buffer.concat(items));
}

function oid(dotted: string): Buffer {
  const [a = 0, b = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [a * 40 + b];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let v = arc >> 7; v > 0; v >>= 7) base128.unshift((v & 0x7f) | 0x80);
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}
