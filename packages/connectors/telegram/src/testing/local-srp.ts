/**
 * The server side of Telegram's two-step-verification SRP (the
 * `passwordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow` algorithm), so the local
 * server can check a password login for real: a wrong password fails, the right one passes.
 * Offline testing only. The modulus is a fixed 2048-bit odd number, not Telegram's prime: the
 * protocol's algebra holds in any modulus, and nothing here protects a real secret.
 */
import { createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { Long, type tl } from '@mtcute/core';

const P_BYTES = new Uint8Array(256).fill(0xff);
const P = toBigInt(P_BYTES);
const G = 3n;

export class LocalSrpVerifier {
  readonly hint: string | undefined;
  readonly #salt1 = new Uint8Array(randomBytes(16));
  readonly #salt2 = new Uint8Array(randomBytes(16));
  readonly #v: bigint;
  /** Outstanding challenges by srpId: the server's secret `b` and public `B`. */
  readonly #challenges = new Map<string, { b: bigint; B: Uint8Array }>();

  constructor(password: string, hint?: string) {
    this.hint = hint;
    this.#v = modPow(G, toBigInt(passwordHash(password, this.#salt1, this.#salt2)), P);
  }

  /** The `account.password` answer, with a fresh challenge. */
  challenge(): tl.account.RawPassword {
    const b = toBigInt(new Uint8Array(randomBytes(256))) % P;
    const k = toBigInt(sha256(P_BYTES, toBytes(G)));
    const B = toBytes((k * this.#v + modPow(G, b, P)) % P);
    const srpId = Long.fromBits(randomBytes(4).readInt32LE(0), randomBytes(4).readInt32LE(0));
    this.#challenges.set(srpId.toString(), { b, B });
    return {
      _: 'account.password',
      hasPassword: true,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      currentAlgo: { _: 'passwordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow', salt1: this.#salt1, salt2: this.#salt2, g: Number(G), p: P_BYTES },
      srpB: B,
      srpId,
      newAlgo: { _: 'passwordKdfAlgoUnknown' },
      newSecureAlgo: { _: 'securePasswordKdfAlgoUnknown' },
      secureRandom: new Uint8Array(randomBytes(32)),
    };
  }

  /** Checks the client's proof for one challenge (each challenge answers once). */
  verify(check: tl.TypeInputCheckPasswordSRP): boolean {
    if (check._ !== 'inputCheckPasswordSRP') return false;
    const challenge = this.#challenges.get(check.srpId.toString());
    this.#challenges.delete(check.srpId.toString());
    if (!challenge) return false;
    const A = toBigInt(check.A);
    const u = toBigInt(sha256(check.A, challenge.B));
    const S = modPow((A * modPow(this.#v, u, P)) % P, challenge.b, P);
    const K = sha256(toBytes(S));
    const hp = sha256(P_BYTES);
    const hg = sha256(toBytes(G));
    const M1 = sha256(hp.map((byte, index) => byte ^ (hg[index] ?? 0)), sha256(this.#salt1), sha256(this.#salt2), check.A, challenge.B, K);
    return Buffer.from(M1).equals(Buffer.from(check.M1));
  }
}

function passwordHash(password: string, salt1: Uint8Array, salt2: Uint8Array): Uint8Array {
  const sh = (data: Uint8Array, salt: Uint8Array): Uint8Array => sha256(salt, data, salt);
  const ph1 = sh(sh(new TextEncoder().encode(password), salt1), salt2);
  return sh(new Uint8Array(pbkdf2Sync(ph1, salt1, 100_000, 64, 'sha512')), salt2);
}

function sha256(...parts: Uint8Array[]): Uint8Array {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return new Uint8Array(hash.digest());
}

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function toBytes(value: bigint): Uint8Array {
  return new Uint8Array(Buffer.from(value.toString(16).padStart(512, '0'), 'hex'));
}

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let b = base % modulus;
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
    e >>= 1n;
  }
  return result;
}
