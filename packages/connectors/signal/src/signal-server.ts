/**
 * Which Signal service to talk to. Production is the default; staging for development; a
 * local test server (Signal's own mock server on loopback) for tests, with its CA certificate.
 * The sealed-sender trust roots follow the environment unless configured explicitly.
 */
import { PublicKey } from '@signalapp/libsignal-client';
import { Environment, Net } from '@signalapp/libsignal-client/dist/net.js';
import { PRODUCTION_CDN_URLS } from './attachments.ts';
import { SignalError } from './signal-error.ts';

/**
 * Production sealed-sender trust roots (base64 of the 33-byte public keys). Sender
 * certificates must chain to one of these. Re-check against Signal-Desktop's
 * `config/production.json` `serverTrustRoots` when upgrading.
 */
export const PRODUCTION_TRUST_ROOTS: readonly string[] = ['BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF', 'BUkY0I+9+oPgDCn4+Ac6Iu813yvqkDr/ga8DzLxFxuk6'];
/** Staging trust roots. */
export const STAGING_TRUST_ROOTS: readonly string[] = ['BbqY1DzohE4NUZoVF+L18oUPrK3kILllLEJh2UnPSsEx', 'BYhU6tPjqP46KGZEzRs1OL4U39V5dlPJ/X09ha4rErkm'];

/** Staging CDNs (unverified against a live staging server; override with `cdnUrls`). */
export const STAGING_CDN_URLS: Readonly<Record<number, string>> = {
  0: 'https://cdn-staging.signal.org',
  2: 'https://cdn2-staging.signal.org',
  3: 'https://cdn3-staging.signal.org',
};

export type SignalServer =
  | { readonly environment: 'production' | 'staging' }
  | {
      /** A local test server (e.g. `@signalapp/mock-server`) on 127.0.0.1. */
      readonly environment: 'local';
      readonly port: number;
      /** PEM of the CA that signed the server's TLS certificate. */
      readonly caCertificatePem: string;
    };

export const USER_AGENT = 'offchannel-signal';

/** A libsignal network stack for `server`. */
export function createNet(server: SignalServer): Net {
  if (server.environment === 'local') {
    const der = pemToDer(server.caCertificatePem);
    return new Net({
      localTestServer: true,
      userAgent: USER_AGENT,
      TESTING_localServer_chatPort: server.port,
      TESTING_localServer_cdsiPort: server.port,
      TESTING_localServer_svr2Port: server.port,
      TESTING_localServer_svrBPort: server.port,
      TESTING_localServer_rootCertificateDer: der,
      TESTING_localServer_httpVersion: 2,
    });
  }
  return new Net({ env: server.environment === 'staging' ? Environment.Staging : Environment.Production, userAgent: USER_AGENT });
}

/** The default trust roots for `server` (a local server has none: configure them). */
export function defaultTrustRoots(server: SignalServer): readonly string[] {
  return server.environment === 'production' ? PRODUCTION_TRUST_ROOTS : server.environment === 'staging' ? STAGING_TRUST_ROOTS : [];
}

export function defaultCdnUrls(server: SignalServer): Readonly<Record<number, string>> {
  if (server.environment === 'local') {
    const base = `https://127.0.0.1:${server.port}`;
    return { 0: base, 2: base, 3: base };
  }
  return server.environment === 'staging' ? STAGING_CDN_URLS : PRODUCTION_CDN_URLS;
}

/** Parses base64 trust roots; throws `SIGNAL_CONFIG_INVALID` naming the index of a bad one. */
export function parseTrustRoots(roots: readonly string[]): PublicKey[] {
  return roots.map((root, index) => {
    try {
      return PublicKey.deserialize(new Uint8Array(Buffer.from(root, 'base64')));
    } catch {
      throw new SignalError('SIGNAL_CONFIG_INVALID', `trust root ${index} is not a base64 Curve25519 public key (33 bytes starting 0x05).`);
    }
  });
}

function pemToDer(pem: string): Uint8Array<ArrayBuffer> {
  const body = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return new Uint8Array(Buffer.from(body, 'base64'));
}
