/**
 * RFC 3161 trusted timestamps: the request sent to a Time-Stamping Authority, the response,
 * and verification of the token (a CMS SignedData over a TSTInfo) — so that a checkpoint can
 * be proven to have existed at a time vouched for by a third party.
 *
 * Verifying a token checks, in order: it is a SignedData whose content is a TSTInfo; the
 * TSTInfo's message imprint is the SHA-256/384/512 of the timestamped bytes; the signed
 * attributes carry content type TSTInfo, the digest of the TSTInfo and the ESS signing-certificate
 * attribute (RFC 2634 / RFC 5035) naming the signer certificate by its hash; the signature over
 * the signed attributes verifies with that certificate, included in the token (RSA, ECDSA or
 * Ed25519; SHA-1 signatures are refused — SHA-1 appears only as the version-1 ESS certificate
 * identifier). When trusted TSA certificates are given, the signer certificate must be one of
 * them or be issued by one of them, carry a critical extended key usage of timeStamping only
 * (RFC 3161 §2.3), and be valid at the token's time. Without them the result says
 * `trusted: false`.
 */
import { X509Certificate, createHash, randomBytes, verify } from 'node:crypto';
import { NoteError } from '../errors/note-errors.ts';
import {
  type DerNode,
  TAG,
  children,
  content,
  encode,
  encodeOid,
  encodeUnsignedInteger,
  encoded,
  expectTag,
  readGeneralizedTime,
  readInteger,
  readOid,
  readRoot,
} from './der.ts';

const OID = {
  signedData: '1.2.840.113549.1.7.2',
  tstInfo: '1.2.840.113549.1.9.16.1.4',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  signingCertificate: '1.2.840.113549.1.9.16.2.12',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  extKeyUsage: '2.5.29.37',
} as const;

const HASHES: Record<string, 'sha256' | 'sha384' | 'sha512'> = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
const SHA256_OID = '2.16.840.1.101.3.4.2.1';

/** Signature algorithms accepted in a token: the hash each one implies (`null`: from digestAlgorithm, or none for Ed25519). */
const SIGNATURES: Record<string, 'sha256' | 'sha384' | 'sha512' | 'digest' | 'ed25519'> = {
  '1.2.840.113549.1.1.1': 'digest', // rsaEncryption, hash from digestAlgorithm
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': 'ed25519',
};

/** Largest token accepted (a TSA's chain of certificates can be long, but not this long). */
export const MAX_TOKEN_BYTES = 256 * 1024;

/** What a verified token says. */
export interface TimestampInfo {
  /** The time the TSA vouches for. */
  readonly genTime: Date;
  /** The TSA's serial number for this token, hex. */
  readonly serial: string;
  /** The TSA policy OID. */
  readonly policy: string;
  readonly nonce: bigint | undefined;
  /** The signer certificate's subject and SHA-256 fingerprint. */
  readonly tsa: { readonly subject: string; readonly fingerprint256: string };
  /** True when the signer chains to a given trusted certificate (see module doc). */
  readonly trusted: boolean;
}

function invalid(why: string): NoteError {
  return new NoteError('TIMESTAMP_INVALID', `timestamp token: ${why}`);
}

/** A TimeStampReq (DER) for the SHA-256 of `data`, with a random 64-bit nonce, asking for the TSA's certificate. */
export function createTimestampRequest(data: Uint8Array): { readonly request: Uint8Array; readonly nonce: bigint } {
  const nonceBytes = randomBytes(8);
  nonceBytes[0] = (nonceBytes[0] as number) & 0x7f;
  const imprint = encode(TAG.SEQUENCE, encode(TAG.SEQUENCE, encodeOid(SHA256_OID), encode(TAG.NULL)), encode(TAG.OCTET_STRING, createHash('sha256').update(data).digest()));
  const request = encode(TAG.SEQUENCE, encode(TAG.INTEGER, Uint8Array.from([1])), imprint, encodeUnsignedInteger(nonceBytes), encode(TAG.BOOLEAN, Uint8Array.from([0xff])));
  return { request, nonce: BigInt(`0x${nonceBytes.toString('hex')}`) };
}

/** Extracts the token from a TimeStampResp, or throws with the TSA's status if it was refused. */
export function parseTimestampResponse(response: Uint8Array): Uint8Array {
  if (response.length > MAX_TOKEN_BYTES) throw invalid('response is too large');
  const root = expectTag(readRoot(response), TAG.SEQUENCE, 'TimeStampResp');
  const [statusInfo, token] = children(root);
  const status = readInteger(children(expectTag(statusInfo, TAG.SEQUENCE, 'PKIStatusInfo'))[0], 'status');
  if (status !== 0n && status !== 1n) throw invalid(`the TSA refused the request (PKIStatus ${status})`);
  return Uint8Array.from(encoded(expectTag(token, TAG.SEQUENCE, 'timeStampToken')));
}

/**
 * Verifies `token` over `data`. Throws `NoteError` `TIMESTAMP_INVALID` naming the first check
 * that failed; never anything else for malformed input.
 */
export function verifyTimestampToken(token: Uint8Array, data: Uint8Array, options: { readonly trusted?: readonly X509Certificate[] } = {}): TimestampInfo {
  if (token.length > MAX_TOKEN_BYTES) throw invalid('token is too large');
  const contentInfo = children(expectTag(readRoot(token), TAG.SEQUENCE, 'ContentInfo'));
  if (readOid(contentInfo[0], 'contentType') !== OID.signedData) throw invalid('not a CMS SignedData');
  const signedData = children(expectTag(children(expectTag(contentInfo[1], 0xa0, 'content'))[0], TAG.SEQUENCE, 'SignedData'));
  // RFC 5652 §5.1: version 3 whenever the content is not id-data.
  if (readInteger(signedData[0], 'SignedData version') !== 3n) throw invalid('SignedData version is not 3');
  const digestAlgorithms = children(expectTag(signedData[1], TAG.SET, 'digestAlgorithms')).map((algorithm) => readOid(children(expectTag(algorithm, TAG.SEQUENCE, 'digestAlgorithm'))[0], 'digestAlgorithm'));
  const encapsulated = children(expectTag(signedData[2], TAG.SEQUENCE, 'encapContentInfo'));
  if (readOid(encapsulated[0], 'eContentType') !== OID.tstInfo) throw invalid('content is not a TSTInfo');
  const tstInfoBytes = content(expectTag(children(expectTag(encapsulated[1], 0xa0, 'eContent'))[0], TAG.OCTET_STRING, 'eContent'));

  let position = 3;
  const certificates: X509Certificate[] = [];
  if (signedData[position]?.tag === 0xa0) {
    for (const certificate of children(signedData[position] as DerNode)) {
      try {
        certificates.push(new X509Certificate(Buffer.from(encoded(certificate))));
      } catch {
        throw invalid('an included certificate cannot be parsed');
      }
    }
    position++;
  }
  if (signedData[position]?.tag === 0xa1) position++;
  const signerInfos = children(expectTag(signedData[position], TAG.SET, 'signerInfos'));
  if (signerInfos.length !== 1) throw invalid(`expected one signer, found ${signerInfos.length}`);

  const info = readTstInfo(tstInfoBytes);
  const imprintHash = HASHES[info.imprintAlgorithm];
  if (!imprintHash) throw invalid(`message imprint uses unsupported hash ${info.imprintAlgorithm}`);
  if (!Buffer.from(info.imprint).equals(createHash(imprintHash).update(data).digest())) throw invalid('the message imprint is not the hash of the timestamped data');

  const signer = checkSignerInfo(signerInfos[0] as DerNode, tstInfoBytes, certificates, digestAlgorithms);
  const trusted = isTrusted(signer, info.genTime, options.trusted ?? []);
  return { genTime: info.genTime, serial: info.serial, policy: info.policy, nonce: info.nonce, tsa: { subject: signer.subject, fingerprint256: signer.fingerprint256 }, trusted };
}

function readTstInfo(bytes: Uint8Array) {
  const fields = children(expectTag(readRoot(bytes), TAG.SEQUENCE, 'TSTInfo'));
  if (readInteger(fields[0], 'TSTInfo version') !== 1n) throw invalid('TSTInfo version is not 1');
  const policy = readOid(fields[1], 'policy');
  const imprint = children(expectTag(fields[2], TAG.SEQUENCE, 'messageImprint'));
  const imprintAlgorithm = readOid(children(expectTag(imprint[0], TAG.SEQUENCE, 'hashAlgorithm'))[0], 'hashAlgorithm');
  const hashed = content(expectTag(imprint[1], TAG.OCTET_STRING, 'hashedMessage'));
  const serialValue = readInteger(fields[3], 'serialNumber');
  const genTime = readGeneralizedTime(fields[4], 'genTime');
  let nonce: bigint | undefined;
  for (const field of fields.slice(5)) if (field.tag === TAG.INTEGER) nonce = readInteger(field, 'nonce');
  return { policy, imprintAlgorithm, imprint: hashed, serial: serialValue.toString(16), genTime, nonce };
}

function checkSignerInfo(signerInfo: DerNode, tstInfo: Uint8Array, certificates: readonly X509Certificate[], digestAlgorithms: readonly string[]): X509Certificate {
  const fields = children(expectTag(signerInfo, TAG.SEQUENCE, 'SignerInfo'));
  const sid = fields[1];
  const digestAlgorithm = readOid(children(expectTag(fields[2], TAG.SEQUENCE, 'digestAlgorithm'))[0], 'digestAlgorithm');
  const digest = HASHES[digestAlgorithm];
  if (!digest) throw invalid(`signer digest algorithm ${digestAlgorithm} is not accepted (SHA-256/384/512 only)`);
  if (!digestAlgorithms.includes(digestAlgorithm)) throw invalid("the signer's digest algorithm is not listed in SignedData.digestAlgorithms");
  const signedAttributes = expectTag(fields[3], 0xa0, 'signedAttrs');
  const signatureAlgorithm = readOid(children(expectTag(fields[4], TAG.SEQUENCE, 'signatureAlgorithm'))[0], 'signatureAlgorithm');
  const signature = content(expectTag(fields[5], TAG.OCTET_STRING, 'signature'));

  let contentTypeOk = false;
  let digestOk = false;
  let certId: { readonly hash: 'sha1' | 'sha256' | 'sha384' | 'sha512'; readonly value: Buffer } | undefined;
  for (const attribute of children(signedAttributes)) {
    const [type, values] = children(expectTag(attribute, TAG.SEQUENCE, 'attribute'));
    const oid = readOid(type, 'attribute type');
    const value = children(expectTag(values, TAG.SET, 'attribute values'))[0];
    if (oid === OID.contentType) contentTypeOk = readOid(value, 'content type attribute') === OID.tstInfo;
    if (oid === OID.messageDigest) digestOk = Buffer.from(content(expectTag(value, TAG.OCTET_STRING, 'message digest'))).equals(createHash(digest).update(tstInfo).digest());
    if (oid === OID.signingCertificate || oid === OID.signingCertificateV2) {
      if (certId) throw invalid('more than one signing-certificate attribute');
      certId = readEssCertId(value, oid === OID.signingCertificateV2);
    }
  }
  if (!contentTypeOk) throw invalid('signed attributes do not declare the TSTInfo content type');
  if (!digestOk) throw invalid('the signed message digest does not match the TSTInfo');
  if (!certId) throw invalid('signed attributes lack the ESS signing-certificate attribute that names the TSA certificate (RFC 3161 §2.4.1)');
  const named = certId;

  // The signature covers the DER SET OF the attributes (the [0] tag replaced by SET).
  const signedBytes = Buffer.from(encoded(signedAttributes));
  signedBytes[0] = TAG.SET;
  const scheme = SIGNATURES[signatureAlgorithm];
  if (!scheme) throw invalid(`signature algorithm ${signatureAlgorithm} is not supported`);
  const hash = scheme === 'digest' ? digest : scheme === 'ed25519' ? null : scheme;
  const serial = sid?.tag === TAG.SEQUENCE ? readInteger(children(sid)[1], 'signer serial').toString(16).toUpperCase() : undefined;
  // Only the certificate the signed attributes name can be the signer.
  const candidates = certificates.filter((certificate) => (serial === undefined || stripZeros(certificate.serialNumber) === stripZeros(serial)) && createHash(named.hash).update(certificate.raw).digest().equals(named.value));
  for (const certificate of candidates) {
    try {
      if (verify(hash, signedBytes, certificate.publicKey, signature)) return certificate;
    } catch {
      // a certificate whose key type does not fit the algorithm: try the next
    }
  }
  throw invalid(candidates.length === 0 ? 'the signer certificate named by the signed attributes is not included in the token' : 'the TSA signature does not verify');
}

/** The first ESSCertID(v2) of a SigningCertificate(V2) attribute value: hash algorithm and certificate hash. */
function readEssCertId(value: DerNode | undefined, v2: boolean): { readonly hash: 'sha1' | 'sha256' | 'sha384' | 'sha512'; readonly value: Buffer } {
  const signingCertificate = children(expectTag(value, TAG.SEQUENCE, 'SigningCertificate'));
  const certs = children(expectTag(signingCertificate[0], TAG.SEQUENCE, 'certs'));
  const first = children(expectTag(certs[0], TAG.SEQUENCE, 'ESSCertID'));
  if (!v2) return { hash: 'sha1', value: Buffer.from(content(expectTag(first[0], TAG.OCTET_STRING, 'certHash'))) };
  // ESSCertIDv2: hashAlgorithm AlgorithmIdentifier DEFAULT sha256, certHash, issuerSerial OPTIONAL.
  if (first[0]?.tag === TAG.SEQUENCE) {
    const algorithm = readOid(children(first[0])[0], 'ESSCertIDv2 hashAlgorithm');
    const hash = HASHES[algorithm];
    if (!hash) throw invalid(`ESSCertIDv2 uses unsupported hash ${algorithm}`);
    return { hash, value: Buffer.from(content(expectTag(first[1], TAG.OCTET_STRING, 'certHash'))) };
  }
  return { hash: 'sha256', value: Buffer.from(content(expectTag(first[0], TAG.OCTET_STRING, 'certHash'))) };
}

function stripZeros(hex: string): string {
  return hex.toUpperCase().replace(/^0+/, '');
}

function isTrusted(signer: X509Certificate, at: Date, trusted: readonly X509Certificate[]): boolean {
  if (trusted.length === 0) return false;
  const anchored = trusted.some((anchor) => anchor.fingerprint256 === signer.fingerprint256 || (signer.checkIssued(anchor) && signer.verify(anchor.publicKey)));
  if (!anchored) throw invalid(`the TSA certificate (${signer.subject.replaceAll('\n', ', ')}) is not one of, or issued by, the trusted TSA certificates`);
  checkTsaKeyUsage(signer);
  if (at < signer.validFromDate || at > signer.validToDate) throw invalid('the token time is outside the TSA certificate validity');
  return true;
}

/**
 * RFC 3161 §2.3: a TSA certificate carries exactly one extended key usage extension, marked
 * critical, whose only purpose is timeStamping. Throws `TIMESTAMP_INVALID` otherwise.
 */
export function checkTsaKeyUsage(certificate: X509Certificate): void {
  const tbs = children(children(expectTag(readRoot(certificate.raw), TAG.SEQUENCE, 'Certificate'))[0] as DerNode);
  const wrapper = tbs.find((node) => node.tag === 0xa3);
  const extensions = wrapper ? children(expectTag(children(wrapper)[0], TAG.SEQUENCE, 'extensions')) : [];
  const usages = extensions.map((extension) => children(expectTag(extension, TAG.SEQUENCE, 'extension'))).filter((parts) => readOid(parts[0], 'extension id') === OID.extKeyUsage);
  if (usages.length !== 1) throw invalid(`the TSA certificate must have exactly one extended key usage extension (it has ${usages.length})`);
  const parts = usages[0] as DerNode[];
  const critical = parts[1]?.tag === TAG.BOOLEAN && content(parts[1])[0] === 0xff;
  if (!critical) throw invalid('the TSA certificate\'s extended key usage is not marked critical (RFC 3161 §2.3)');
  const purposes = certificate.keyUsage ?? [];
  if (purposes.length !== 1 || purposes[0] !== OID.timeStamping) throw invalid('the TSA certificate\'s extended key usage must be timeStamping only');
}