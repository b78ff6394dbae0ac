import { createHash, createPublicKey, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { noteErrorCode as code } from '../testing/note-error-code.ts';
import { formatCheckpoint } from './checkpoint.ts';
import {
  COSIGNATURE_V1_TYPE,
  addSignatureLines,
  checkCosignatures,
  cosignatureMessage,
  cosignerFromSeed,
  generateCosigner,
  parseCosignatureVerifierKey,
  parseCosignatures,
  parseCosignerKey,
} from './cosignature.ts';
import { ed25519KeyFromSeed, parseSignerKey } from './ed25519-key.ts';
import { openNote, parseNote, signNote } from './signed-note.ts';

// c2sp.org/tlog-cosignature: the example checkpoint, its cosignature line and signed message.
const SPEC_TEXT = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n';
const SPEC_NOTE = `${SPEC_TEXT}
— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==
`;
const SPEC_MESSAGE = `cosignature/v1\ntime 1679315147\n${SPEC_TEXT}`;
// transparency-dev/formats note_cosigv1_test.go: a public witness's verifier key (type 0x04)
// and a cosignature whose timestamp is 1727964367.
const REMORA_VKEY = 'remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2';
const TDEV_SIGNATURE = 'ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==';

const SEED = createHash('sha256').update('offchannel cosignature test seed').digest();
const TEXT = formatCheckpoint({ origin: 'archive.example/offchannel', size: 5, root: new Uint8Array(32).fill(7) });

describe('cosignatures (c2sp.org/tlog-cosignature)', () => {
  it('builds the signed message of the spec example byte for byte', () => {
    expect(Buffer.from(cosignatureMessage(SPEC_TEXT, 1679315147)).toString('utf8')).toBe(SPEC_MESSAGE);
  });

  it("reads the spec example's cosignature line: key id, then the time of the spec's message", () => {
    const cosignatures = parseCosignatures(SPEC_NOTE);
    expect(cosignatures).toHaveLength(1);
    expect(cosignatures[0]?.name).toBe('witness.example.com/w1');
    expect(cosignatures[0]?.keyId.toString(16)).toBe('8d66cf3f');
    expect(cosignatures[0]?.time).toBe(1679315147);
    expect(cosignatures[0]?.signature).toHaveLength(64);
    // The log's own signature line (4 + 64 bytes) is not a cosignature.
    expect(parseNote(SPEC_NOTE).signatures).toHaveLength(2);
  });

  it("reads transparency-dev's cosignature timestamp vector and accepts a public witness's key", () => {
    const note = `${TEXT}\n— w ${TDEV_SIGNATURE}\n`;
    expect(parseCosignatures(note)[0]?.time).toBe(1727964367);
    const remora = parseCosignatureVerifierKey(REMORA_VKEY);
    expect(remora.name).toBe('remora.n621.de');
    expect(remora.keyId.toString(16)).toBe('da77ade7');
    expect(remora.verifierKey).toBe(REMORA_VKEY);
  });

  it('computes the key id as SHA-256(name ‖ 0x0A ‖ 0x04 ‖ key)[:4] and lays the line out as id ‖ time ‖ signature', () => {
    const witness = cosignerFromSeed('witness.example/w1', SEED);
    const publicKey = witness.verifier.publicKey;
    const id = createHash('sha256').update('witness.example/w1\n').update(Buffer.from([0x04])).update(publicKey).digest().subarray(0, 4);
    expect(witness.keyId).toBe(id.readUInt32BE(0));
    expect(witness.verifierKey).toBe(`witness.example/w1+${id.toString('hex')}+${Buffer.concat([Buffer.from([4]), publicKey]).toString('base64')}`);
    const line = witness.cosign(TEXT, 1_700_000_000);
    expect(line).toMatch(/^— witness\.example\/w1 [A-Za-z0-9+/]+=*\n$/);
    const bytes = Buffer.from(line.split(' ')[2] ?? '', 'base64');
    expect(bytes).toHaveLength(76);
    expect(bytes.subarray(0, 4)).toEqual(id);
    expect(bytes.readBigUInt64BE(4)).toBe(1_700_000_000n);
    // Checked with node:crypto directly, not through our verifier: Ed25519 over the message.
    const spki = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), publicKey]), format: 'der', type: 'spki' });
    const message = Buffer.from(`cosignature/v1\ntime 1700000000\n${TEXT}`);
    expect(verify(null, message, spki, bytes.subarray(12))).toBe(true);
  });

  it('round-trips key texts; the witness key is type 0x04 and a log key is refused in its place', () => {
    const witness = cosignerFromSeed('witness.example/w1', SEED);
    expect(witness.signerKeyText()).toMatch(/^PRIVATE\+KEY\+witness\.example\/w1\+[0-9a-f]{8}\+B[A-P]/);
    expect(parseCosignerKey(witness.signerKeyText()).verifierKey).toBe(witness.verifierKey);
    expect(parseCosignatureVerifierKey(witness.verifierKey).keyId).toBe(witness.keyId);
    const log = ed25519KeyFromSeed('witness.example/w1', SEED);
    expect(() => parseCosignerKey(log.signerKeyText())).toThrow(/log \(note\) key/);
    expect(() => parseCosignatureVerifierKey(log.verifierKey)).toThrow(/log \(note\) key/);
    expect(() => parseSignerKey(witness.signerKeyText())).toThrow(/witness \(cosignature\) key/);
    const wrongId = witness.verifierKey.replace(/\+[0-9a-f]{8}\+/, '+00000000+');
    expect(code(() => parseCosignatureVerifierKey(wrongId))).toBe('KEY_MALFORMED');
    expect(COSIGNATURE_V1_TYPE).toBe(4);
  });

  it('a log-key-only verifier ignores cosignatures; a witness-aware one checks them', () => {
    const log = ed25519KeyFromSeed('archive.example/offchannel', SEED);
    const witness = cosignerFromSeed('witness.example/w1', SEED);
    const note = addSignatureLines(signNote(TEXT, [log]), [witness.cosign(TEXT, 1_700_000_000)]);
    const opened = openNote(note, [log.verifier]);
    expect(opened.verified).toHaveLength(1);
    expect(opened.unknown).toHaveLength(1);
    expect(openNote(note, [log.verifier, witness.verifier]).verified).toHaveLength(2);
    expect(checkCosignatures(note, [witness.verifier])).toEqual([{ witness: 'witness.example/w1', state: 'valid', time: 1_700_000_000 }]);
  });

  it('reports altered, re-timed and absent cosignatures precisely', () => {
    const log = generateCosigner('archive.example/offchannel');
    const one = cosignerFromSeed('witness.example/w1', SEED);
    const two = generateCosigner('witness.example/w2');
    const line = one.cosign(TEXT, 1_700_000_000);
    const note = `${TEXT}\n${line}`;
    // The note altered after cosigning (extension lines included).
    const altered = note.replace(TEXT, `${TEXT}extra\n`);
    expect(checkCosignatures(altered, [one.verifier])[0]?.state).toBe('invalid');
    // The time rewritten in the line: the signature covers it.
    const bytes = Buffer.from(line.trim().split(' ')[2] ?? '', 'base64');
    bytes.writeBigUInt64BE(1_800_000_000n, 4);
    const retimed = `${TEXT}\n— witness.example/w1 ${bytes.toString('base64')}\n`;
    expect(checkCosignatures(retimed, [one.verifier])[0]?.state).toBe('invalid');
    expect(checkCosignatures(note, [one.verifier, two.verifier, log.verifier]).map((status) => status.state)).toEqual(['valid', 'missing', 'missing']);
    // The same witness name with another key is an unknown key, not this witness.
    const impostor = generateCosigner('witness.example/w1');
    expect(checkCosignatures(`${TEXT}\n${impostor.cosign(TEXT, 1)}`, [one.verifier])[0]?.state).toBe('missing');
  });

  it('adds signature lines once and refuses lines that are not signature lines', () => {
    const log = ed25519KeyFromSeed('archive.example/offchannel', SEED);
    const witness = cosignerFromSeed('witness.example/w1', SEED);
    const line = witness.cosign(TEXT, 5);
    const note = addSignatureLines(signNote(TEXT, [log]), [line, line]);
    expect(addSignatureLines(note, [line])).toBe(note);
    expect(parseNote(note).signatures).toHaveLength(2);
    expect(code(() => addSignatureLines(note, ['not a signature']))).toBe('NOTE_MALFORMED');
    expect(code(() => witness.cosign(TEXT, -1))).toBe('NOTE_MALFORMED');
    expect(code(() => witness.cosign('no newline', 1))).toBe('NOTE_MALFORMED');
  });
});
