/**
 * `verifyArchive` with verifier keys checks host attestations: signatures, the per-host chain,
 * and every attested (size, root) against the stream's own records.
 */
import { describe, expect, it } from 'vitest';
import { HostAttestor } from '../attest/host-attestor.ts';
import type { StreamAttestation } from '../attest/attestation.ts';
import { formatAttestation } from '../attest/attestation.ts';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { signNote } from '../note/signed-note.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { Recorder } from '../recorder/recorder.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { verifyArchive } from './verify-archive.ts';
import { readVerifiedAttestations, verifiedStateOf } from './verified-state.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const key = generateEd25519NoteKey('archive.example/offchannel');
const T0 = Date.parse('2026-11-21T10:00:00Z');

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Three attestations of host cap-1 over demo:alice (3, 5, 5 records) and demo:bob (2 records throughout). */
async function archive(): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 1000 } });
  const alice = recorder.writer({ channel: 'demo', account: 'alice', source });
  const bob = recorder.writer({ channel: 'demo', account: 'bob', source });
  let now = T0;
  const attestor = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(now) });
  const attest = async (): Promise<void> => {
    const lines: StreamAttestation[] = recorder.merkleHeads().map((head) => ({ stream: head.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' }));
    await attestor.attest(lines);
    now += 300_000;
  };
  for (let i = 0; i < 3; i++) await alice.capture(message(i));
  for (let i = 0; i < 2; i++) await bob.capture(message(i));
  await attest();
  for (let i = 3; i < 5; i++) await alice.capture(message(i));
  await attest();
  await attest();
  await recorder.checkpoint();
  await recorder.close();
  return storage;
}

const KEY = (seq: number): string => `cap-1/2026-11-21/${String(seq).padStart(16, '0')}`;

async function verify(storage: MemoryStorage, verifiers = [key.verifier]) {
  return verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers, workers: 0 });
}

describe('host attestations in verify', () => {
  it('passes an intact archive and reports each host chain', async () => {
    const storage = await archive();
    const report = await verify(storage);
    expect(report.failures).toEqual([]);
    expect(report.attestations).toEqual([{ host: 'cap-1', verified: 3, last: { seq: 3, hash: expect.stringMatching(/^[0-9a-f]{64}$/) as string, time: '2026-11-21T10:10:00Z' } }]);
    // Without keys nothing about attestations is claimed.
    expect((await verifyArchive(createMemorySink(storage, { readOnly: true }), { workers: 0 })).attestations).toBeUndefined();
  });

  it('catches an attestation altered after signing, forged with another key, or deleted', async () => {
    const altered = await archive();
    const text = decoder.decode(altered.attestations.get(KEY(2)));
    altered.attestations.set(KEY(2), encoder.encode(text.replace(' connected', ' restarting')));
    expect((await verify(altered)).failures.map((failure) => [failure.code, failure.severity])).toEqual([['ATTESTATION_FORGED', 'critical']]);

    const forged = await archive();
    const other = generateEd25519NoteKey('archive.example/offchannel');
    const parsedPrev = /prev ([0-9a-f]{64})/.exec(decoder.decode(forged.attestations.get(KEY(2))))?.[1] as string;
    forged.attestations.set(KEY(2), encoder.encode(signNote(formatAttestation(key.name, { host: 'cap-1', time: new Date(T0 + 300_000).toISOString(), seq: 2, prev: parsedPrev, streams: [] }), [other])));
    const forgedReport = await verify(forged);
    expect(forgedReport.ok).toBe(false);
    expect(forgedReport.failures.map((failure) => failure.code)).toEqual(['ATTESTATION_UNTRUSTED']);

    const deleted = await archive();
    deleted.attestations.delete(KEY(2));
    const deletedReport = await verify(deleted);
    expect(deletedReport.failures.map((failure) => [failure.code, failure.severity])).toEqual([['ATTESTATION_MISSING', 'critical']]);
    expect(deletedReport.failures[0]?.message).toContain('cap-1 #2 is missing before #3');

    // Replaced by a validly signed note that breaks the chain (the signer itself rewrote history).
    const replaced = await archive();
    const original = decoder.decode(replaced.attestations.get(KEY(3)));
    const body = original.slice(0, original.lastIndexOf('\n\n') + 1).replace(/prev [0-9a-f]{64}/, `prev ${'e'.repeat(64)}`);
    replaced.attestations.set(KEY(3), encoder.encode(signNote(body, [key])));
    expect((await verify(replaced)).failures.map((failure) => failure.code)).toEqual(['ATTESTATION_CHAIN']);
  });

  it('checks every attested head against the records: a rewrite, a truncation, a fork', async () => {
    // An attestation (validly signed) of a head the records do not have.
    const wrongRoot = await archive();
    const original = decoder.decode(wrongRoot.attestations.get(KEY(3)));
    const body = original.slice(0, original.lastIndexOf('\n\n') + 1);
    const bobLine = /^demo:bob 2 (\S+) connected$/m.exec(body);
    const aliceLine = /^demo:alice 5 (\S+) connected$/m.exec(body);
    expect(bobLine && aliceLine).toBeTruthy();
    wrongRoot.attestations.set(KEY(3), encoder.encode(signNote(body.replace(`demo:bob 2 ${bobLine?.[1] ?? ''}`, `demo:bob 2 ${aliceLine?.[1] ?? ''}`), [key])));
    const codes = (await verify(wrongRoot)).failures.map((failure) => failure.code);
    expect(codes).toContain('ATTESTATION_ROOT_MISMATCH');
    expect(codes).toContain('ATTESTATION_EQUIVOCATION');

    // Records removed after they were attested (and the checkpoint with them).
    const truncated = await archive();
    const entry = truncated.streams.get('demo:alice');
    if (!entry) throw new Error('no stream');
    truncated.streams.set('demo:alice', { records: entry.records.slice(0, 4), head: entry.head });
    for (const name of [...truncated.checkpoints.keys()]) if (name.startsWith('demo:alice/')) truncated.checkpoints.delete(name);
    const truncatedCodes = (await verify(truncated)).failures.map((failure) => failure.code);
    expect(truncatedCodes).toContain('ATTESTATION_BEYOND_STREAM');

    // A whole stream removed: its attestations still name it.
    const removed = await archive();
    removed.streams.delete('demo:bob');
    for (const name of [...removed.checkpoints.keys()]) if (name.startsWith('demo:bob/')) removed.checkpoints.delete(name);
    for (const name of [...removed.tiles.keys()]) if (name.startsWith('demo:bob/')) removed.tiles.delete(name);
    expect((await verify(removed)).failures.map((failure) => failure.code)).toEqual(['ATTESTED_STREAM_MISSING']);
  });

  it('incremental: reads only attestations after the saved ones, and catches one deleted since', async () => {
    const storage = await archive();
    const first = await verify(storage);
    const saved = readVerifiedAttestations(verifiedStateOf(first, new Date(T0)));
    expect(saved.get('cap-1')?.seq).toBe(3);
    const again = await verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier], workers: 0, sinceAttestations: saved });
    expect(again.failures).toEqual([]);
    expect(again.attestations).toEqual([{ host: 'cap-1', verified: 0, last: { seq: 3, hash: saved.get('cap-1')?.hash } }]);
    storage.attestations.delete(KEY(3));
    const after = await verifyArchive(createMemorySink(storage, { readOnly: true }), { verifiers: [key.verifier], workers: 0, sinceAttestations: saved });
    expect(after.failures.map((failure) => failure.code)).toEqual(['ATTESTATION_MISSING']);
  });

  it('a clock set back over midnight is a time-order finding, not a hole in the chain', async () => {
    const storage = new MemoryStorage();
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: key } });
    await recorder.writer({ channel: 'demo', account: 'alice', source }).capture(message(0));
    const times = [Date.parse('2026-11-21T23:58:00Z'), Date.parse('2026-11-22T00:01:00Z')];
    let index = 0;
    const attestor = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(times[index] as number) });
    const streams: StreamAttestation[] = recorder.merkleHeads().map((head) => ({ stream: head.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' }));
    for (; index < times.length; index++) await attestor.attest(streams);
    await recorder.close();
    // The third as an earlier version wrote it after the clock was set back (this one holds the
    // time at the previous attestation's instead): before midnight, filed under that day.
    const text = formatAttestation(key.name, { host: 'cap-1', time: '2026-11-21T23:59:00.000Z', seq: 3, prev: attestor.last?.hash ?? '', streams });
    await createMemorySink(storage).putAttestation?.({ host: 'cap-1', day: '2026-11-21', seq: 3 }, new TextEncoder().encode(signNote(text, [key])));
    expect([...storage.attestations.keys()].sort()).toEqual(['cap-1/2026-11-21/0000000000000001', 'cap-1/2026-11-21/0000000000000003', 'cap-1/2026-11-22/0000000000000002']);
    const report = await verify(storage);
    expect(report.failures.map((failure) => [failure.code, failure.severity])).toEqual([['ATTESTATION_TIME_ORDER', undefined]]);
  });
});
