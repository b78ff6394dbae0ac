import { describe, expect, it } from 'vitest';
import { NoteError } from '../errors/note-errors.ts';
import { noteErrorCode as code } from '../testing/note-error-code.ts';
import { checkpointOrigin, formatCheckpoint, parseCheckpoint } from './checkpoint.ts';
import { ed25519KeyFromSeed, generateEd25519NoteKey, parseSignerKey, parseVerifierKey } from './ed25519-key.ts';
import { openNote, parseNote, signNote } from './signed-note.ts';

// golang.org/x/mod/sumdb/note test vector.
const GO_SIGNER = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const GO_VERIFIER = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIGNATURE = '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';

describe('signed notes', () => {
  it('reproduces the Go sumdb/note Ed25519 vector byte for byte', () => {
    const signer = parseSignerKey(GO_SIGNER);
    expect(signer.verifierKey).toBe(GO_VERIFIER);
    expect(signer.signerKeyText()).toBe(GO_SIGNER);
    const note = signNote(GO_TEXT, [signer]);
    expect(note).toBe(`${GO_TEXT}\n${GO_SIGNATURE}`);
    const opened = openNote(note, [parseVerifierKey(GO_VERIFIER)]);
    expect(opened.text).toBe(GO_TEXT);
    expect(opened.verified).toHaveLength(1);
  });

  it('ignores signatures from unknown keys, even with a shared name or id, and keeps the known one', () => {
    const known = generateEd25519NoteKey('archive.example/offchannel');
    const sameName = generateEd25519NoteKey('archive.example/offchannel');
    const witness = generateEd25519NoteKey('witness.example');
    const note = signNote('hello\n', [witness, known, sameName]);
    const opened = openNote(note, [known.verifier]);
    expect(opened.verified.map((signature) => signature.name)).toEqual(['archive.example/offchannel']);
    expect(opened.unknown).toHaveLength(2);
    // An extra unknown signature line appended by anyone changes nothing.
    const extra = `${note}— stranger.example ${Buffer.from('abcdefghijklmnopqrstuvwxyz').toString('base64')}\n`;
    expect(openNote(extra, [known.verifier]).verified).toHaveLength(1);
  });

  it('rejects a note signed only by another key, and any change to a signed note', () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const forger = generateEd25519NoteKey('archive.example/offchannel');
    expect(code(() => openNote(signNote('checkpoint\n', [forger]), [key.verifier]))).toBe('NOTE_UNVERIFIED');
    const note = signNote('origin\n10\nroot\n', [key]);
    expect(code(() => openNote(note.replace('10', '11'), [key.verifier]))).toBe('NOTE_BAD_SIGNATURE');
    const forgedSameId = note.replace(/ (\S+)\n$/, (_, signature: string) => ` ${Buffer.concat([Buffer.from(signature, 'base64').subarray(0, 4), Buffer.alloc(64, 1)]).toString('base64')}\n`);
    expect(code(() => openNote(forgedSameId, [key.verifier]))).toBe('NOTE_BAD_SIGNATURE');
  });

  it.each([
    ['no blank line', 'text\n— a AAAAAAA=\n'],
    ['no final newline', 'text\n\n— a AAAAAAA='],
    ['a control character', 'te\u0007xt\n\n— a AAAAAAA=\n'],
    ['a carriage return', 'text\r\n\n— a AAAAAAA=\n'],
    ['a line without the dash', 'text\n\n- a AAAAAAA=\n'],
    ['a name with a plus', 'text\n\n— a+b AAAAAAA=\n'],
    ['a short signature', 'text\n\n— a AAAA\n'],
    ['bad base64', 'text\n\n— a !!!!\n'],
    ['non-canonical base64', 'text\n\n— a AAAAAAB=\n'],
    ['no signature at all', 'text\n\n\n'],
    ['an empty note', ''],
  ])('rejects a note with %s as NOTE_MALFORMED', (_name, note) => {
    expect(code(() => parseNote(note))).toBe('NOTE_MALFORMED');
  });

  it('rejects oversized notes, too many signatures and invalid UTF-8', () => {
    const key = generateEd25519NoteKey('k');
    expect(code(() => parseNote(`${'x'.repeat(1024 * 1024)}\n\n— k AAAAAAA=\n`))).toBe('NOTE_MALFORMED');
    const many = signNote('t\n', Array.from({ length: 101 }, () => key));
    expect(code(() => parseNote(many))).toBe('NOTE_MALFORMED');
    expect(code(() => parseNote(Uint8Array.from([0x74, 0xff, 0x0a, 0x0a])))).toBe('NOTE_MALFORMED');
    expect(openNote(signNote('t\n', Array.from({ length: 16 }, () => key)), [key.verifier]).verified).toHaveLength(16);
  });

  it('never crashes on any truncation or byte flip of a valid note', () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const note = Buffer.from(signNote(formatCheckpoint({ origin: 'archive.example/offchannel/demo:a', size: 5, root: new Uint8Array(32) }), [key]));
    for (let length = 0; length < note.length; length++) {
      expect(() => openNote(note.subarray(0, length), [key.verifier])).toThrow(NoteError);
    }
    for (let index = 0; index < note.length; index++) {
      const flipped = Buffer.from(note);
      flipped[index] = (flipped[index] as number) ^ 0x01;
      expect(() => openNote(flipped, [key.verifier])).toThrow(NoteError);
    }
  });
});

describe('keys', () => {
  it('derives the same key and texts from the same seed', () => {
    const a = ed25519KeyFromSeed('archive.example/x', new Uint8Array(32).fill(7));
    const b = parseSignerKey(a.signerKeyText());
    expect(b.verifierKey).toBe(a.verifierKey);
    expect(parseVerifierKey(`${a.verifierKey}\n`).verifierKey).toBe(a.verifierKey);
  });

  it.each([
    ['wrong prefix', 'PUBLIC+KEY+a+00000000+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz'],
    ['wrong id', GO_SIGNER.replace('c74f20a3', 'c74f20a4')],
    ['short key', 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFA=='],
    ['wrong algorithm byte', `PRIVATE+KEY+PeterNeumann+c74f20a3+${Buffer.concat([Buffer.from([2]), Buffer.alloc(32)]).toString('base64')}`],
  ])('rejects a signer key with %s, without echoing it', (_name, text) => {
    try {
      parseSignerKey(text);
      throw new Error('accepted');
    } catch (error) {
      expect(error).toBeInstanceOf(NoteError);
      expect((error as NoteError).code).toBe('KEY_MALFORMED');
      expect((error as Error).message).not.toContain(text.split('+').at(-1));
    }
  });

  it.each([['nothing', ''], ['two parts', 'a+b'], ['upper-case id', GO_VERIFIER.replace('c74f20a3', 'C74F20A3')], ['wrong id', GO_VERIFIER.replace('c74f20a3', '00000000')], ['name with space', 'a b+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW']])(
    'rejects a verifier key with %s',
    (_name, text) => {
      expect(code(() => parseVerifierKey(text))).toBe('KEY_MALFORMED');
    },
  );
});

describe('checkpoints', () => {
  const root = Uint8Array.from({ length: 32 }, (_, index) => index);

  it('formats and parses the tlog-checkpoint text', () => {
    const text = formatCheckpoint({ origin: checkpointOrigin('archive.example/offchannel', 'whatsapp:alice'), size: 20852163, root });
    expect(text).toBe(`archive.example/offchannel/whatsapp:alice\n20852163\n${Buffer.from(root).toString('base64')}\n`);
    expect(parseCheckpoint(text)).toEqual({ origin: 'archive.example/offchannel/whatsapp:alice', size: 20852163, root, extensions: [] });
    expect(parseCheckpoint(`${text}ext one\n`).extensions).toEqual(['ext one']);
    expect(parseCheckpoint(formatCheckpoint({ origin: 'o', size: 0, root })).size).toBe(0);
  });

  it.each([
    ['two lines', 'origin\n5\n'],
    ['an empty origin', `\n5\n${Buffer.from(root).toString('base64')}\n`],
    ['a leading zero', `o\n05\n${Buffer.from(root).toString('base64')}\n`],
    ['a negative size', `o\n-5\n${Buffer.from(root).toString('base64')}\n`],
    ['a huge size', `o\n99999999999999999\n${Buffer.from(root).toString('base64')}\n`],
    ['a short root', `o\n5\n${Buffer.from(root.subarray(1)).toString('base64')}\n`],
    ['a non-base64 root', 'o\n5\nnot base64!\n'],
    ['an empty extension line', `o\n5\n${Buffer.from(root).toString('base64')}\n\n`],
    ['no final newline', `o\n5\n${Buffer.from(root).toString('base64')}`],
  ])('rejects a checkpoint with %s', (_name, text) => {
    expect(code(() => parseCheckpoint(text))).toBe('NOTE_MALFORMED');
  });
});
