import { describe, expect, it } from 'vitest';
import { WitnessError } from '../errors/witness-errors.ts';
import { addSignatureLines, cosignerFromSeed } from '../note/cosignature.ts';
import { ed25519KeyFromSeed } from '../note/ed25519-key.ts';
import { parseNote } from '../note/signed-note.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { Recorder } from '../recorder/recorder.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
import { MAX_PROOF_LINES, formatAddCheckpoint, parseAddCheckpoint, parseConflictSize } from './add-checkpoint.ts';
import { cosignedFile } from './witness-client.ts';

const LOG_KEY = ed25519KeyFromSeed('archive.example/offchannel', new Uint8Array(32).fill(1));
const W1 = cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2));
const W2 = cosignerFromSeed('witness.example/w2', new Uint8Array(32).fill(3));
const STREAM = 'demo:alice';
const source = { package: '@offchannel/test', version: '0.0.0' };

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

/** An archive of 10 records with checkpoints at 5 and 10, each cosigned by `witnesses` (by hand, at fixed times). */
async function archive(witnesses = [W1, W2]): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: LOG_KEY, everyRecords: 5 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (let index = 0; index < 10; index++) await writer.capture(message(index));
  await recorder.close();
  const sink = createMemorySink(storage);
  for (const size of [5, 10]) {
    const note = new TextDecoder().decode(await sink.getCheckpoint(STREAM, size, 'note'));
    for (const witness of witnesses) {
      const cosigned = addSignatureLines(note, [witness.cosign(parseNote(note).text, 1_765_000_000 + size)]);
      await sink.putCheckpoint(STREAM, size, cosignedFile(witness.verifier), new TextEncoder().encode(cosigned));
    }
  }
  return storage;
}

async function verify(storage: MemoryStorage, quorum?: number) {
  return verifyArchive(createMemorySink(storage), { verifiers: [LOG_KEY.verifier], witnesses: [W1.verifier, W2.verifier], ...(quorum === undefined ? {} : { quorum }) });
}

describe('verify with a witness policy', () => {
  it('passes with every witness, names who cosigned and when; a log-key-only verify ignores the copies', async () => {
    const storage = await archive();
    const report = await verify(storage);
    expect(report.failures).toEqual([]);
    expect(report.streams[0]?.checkpoints?.at(-1)?.cosignedBy).toEqual([
      { witness: 'witness.example/w1', time: new Date(1_765_000_010_000).toISOString() },
      { witness: 'witness.example/w2', time: new Date(1_765_000_010_000).toISOString() },
    ]);
    expect((await verifyArchive(createMemorySink(storage), { verifiers: [LOG_KEY.verifier] })).ok).toBe(true);
  });

  it('a missing witness fails the default quorum (all named), not --quorum 1', async () => {
    const storage = await archive([W1]);
    const report = await verify(storage);
    expect(report.failures.map((failure) => failure.code)).toEqual(['WITNESS_QUORUM', 'UNWITNESSED_RECORDS']);
    expect(report.failures[0]?.message).toMatch(/has 1 valid witness cosignature, the policy needs 2 \(missing: witness\.example\/w2\)/);
    expect((await verify(storage, 1)).failures).toEqual([]);
  });

  it('an altered cosignature, and a witness copy of another checkpoint, are critical failures', async () => {
    const storage = await archive();
    const sink = createMemorySink(storage);
    const copyKey = `${STREAM}/10.${cosignedFile(W1.verifier)}`;
    const copy = new TextDecoder().decode(storage.checkpoints.get(copyKey));
    // Flip one bit in the signature of the cosignature line (the time and key id stay).
    const tampered = copy.replace(/(— witness\.example\/w1 )(\S+)\n/, (_, head: string, b64: string) => {
      const bytes = Buffer.from(b64, 'base64');
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1;
      return `${head}${bytes.toString('base64')}\n`;
    });
    storage.checkpoints.set(copyKey, new TextEncoder().encode(tampered));
    let report = await verify(storage);
    expect(report.failures.find((failure) => failure.code === 'COSIGNATURE_INVALID')).toMatchObject({ severity: 'critical', seq: 10 });
    // A cosigned copy of another checkpoint filed under size 10: the checkpoint was replaced.
    const other = new TextDecoder().decode(await sink.getCheckpoint(STREAM, 5, cosignedFile(W1.verifier)));
    storage.checkpoints.set(copyKey, new TextEncoder().encode(other));
    report = await verify(storage);
    expect(report.failures.find((failure) => failure.code === 'COSIGNED_COPY_MISMATCH')).toMatchObject({ severity: 'critical', seq: 10 });
  });
});

describe('add-checkpoint bodies', () => {
  it('round-trips the spec example request and rejects what the spec forbids', () => {
    const note = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n';
    const proof = ['PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=', 'jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=', '5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=', '/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0='];
    const body = `old 20852014\n${proof.map((line) => `${line}\n`).join('')}\n${note}`;
    const parsed = parseAddCheckpoint(Buffer.from(body));
    expect(parsed.oldSize).toBe(20852014);
    expect(parsed.proof.map((hash) => Buffer.from(hash).toString('base64'))).toEqual(proof);
    expect(parsed.note).toBe(note);
    expect(formatAddCheckpoint(parsed)).toBe(body);
    const hash = `${proof[0] as string}\n`;
    for (const bad of ['old 1\n', `old 00\n\n${note}`, `old 1\n${hash.repeat(MAX_PROOF_LINES + 1)}\n${note}`, `old 0\n${hash}\n${note}`, `old 1\nAAAA\n\n${note}`, `new 1\n\n${note}`]) {
      expect(() => parseAddCheckpoint(Buffer.from(bad))).toThrow(WitnessError);
    }
    expect(parseConflictSize('20852163\n')).toBe(20852163);
    expect(parseConflictSize('12')).toBeUndefined();
    expect(parseConflictSize('012\n')).toBeUndefined();
  });
});
