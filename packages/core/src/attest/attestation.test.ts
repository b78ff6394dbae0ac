import { describe, expect, it } from 'vitest';
import { SinkConflictError } from '../errors/sink-errors.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { leafHash } from '../merkle/merkle-hash.ts';
import { CompactRange } from '../merkle/merkle-proofs.ts';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { signNote } from '../note/signed-note.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { noteErrorCode as code } from '../testing/note-error-code.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { type AttestationId, type StreamAttestation, formatAttestation, parseAttestation } from './attestation.ts';
import { HostAttestor } from './host-attestor.ts';
import { readAttestations } from './read-attestations.ts';

const T0 = Date.parse('2026-03-01T23:50:00Z');

function rootOf(count: number): string {
  const range = new CompactRange();
  for (let index = 0; index < count; index++) range.append(leafHash(new TextEncoder().encode(`record ${index}`)));
  return Buffer.from(range.root()).toString('base64');
}

const lines: StreamAttestation[] = [
  { stream: 'whatsapp:alice', size: 3, root: rootOf(3), state: 'connected', lastEventAt: '2026-03-01T23:49:10Z' },
  { stream: 'signal:bob', size: 0, root: rootOf(0), state: 'logged-out' },
];

describe('attestation format', () => {
  it('formats one line per stream, sorted, and parses back', () => {
    const text = formatAttestation('archive.example', { host: 'cap-1', time: new Date(T0).toISOString(), seq: 1, prev: ZERO_HASH, streams: lines });
    expect(text).toBe(
      [
        'archive.example/attestations/cap-1',
        'seq 1',
        `time ${T0 / 1000}`,
        `prev ${ZERO_HASH}`,
        `signal:bob 0 ${rootOf(0)} logged-out`,
        `whatsapp:alice 3 ${rootOf(3)} connected ${Date.parse('2026-03-01T23:49:10Z') / 1000}`,
        '',
      ].join('\n'),
    );
    const { keyName, attestation } = parseAttestation(text);
    expect(keyName).toBe('archive.example');
    expect(attestation).toEqual({ host: 'cap-1', time: '2026-03-01T23:50:00Z', seq: 1, prev: ZERO_HASH, streams: [lines[1], lines[0]] });
  });

  it('refuses hostile or malformed text with NOTE_MALFORMED', () => {
    const good = formatAttestation('k', { host: 'h', time: new Date(T0).toISOString(), seq: 2, prev: 'a'.repeat(64), streams: lines });
    const variants = [
      good.replace('k/attestations/h', 'k/attestations/../h'),
      good.replace('k/attestations/h', 'k/attestations/H'),
      good.replace('seq 2', 'seq 02'),
      good.replace('seq 2', 'seq 1'), // seq 1 must have a zero prev
      good.replace(/time \d+/, 'time -5'),
      good.replace(/prev a+/, 'prev xyz'),
      good.replace('signal:bob 0', 'signal:bob -1'),
      good.replace('signal:bob', '../etc:passwd'),
      good.replace('logged-out', 'Logged Out'),
      `${good}signal:bob 0 ${rootOf(0)} connected\n`, // unsorted / twice
      good.replace(rootOf(3), 'AAAA'),
      good.slice(0, -1),
    ];
    for (const text of variants) expect(code(() => parseAttestation(text)), text).toBe('NOTE_MALFORMED');
    expect(code(() => formatAttestation('k', { host: 'h/../x', time: new Date(T0).toISOString(), seq: 1, prev: ZERO_HASH, streams: [] }))).toBe('NOTE_MALFORMED');
    expect(code(() => formatAttestation('k', { host: 'h', time: new Date(T0).toISOString(), seq: 1, prev: ZERO_HASH, streams: [lines[0] as StreamAttestation, lines[0] as StreamAttestation] }))).toBe('NOTE_MALFORMED');
  });
});

describe('HostAttestor and readAttestations', () => {
  it('chains attestations per host across days and restarts, and reads them back verified', async () => {
    const key = generateEd25519NoteKey('archive.example');
    const storage = new MemoryStorage();
    let now = T0;
    const clock = (): Date => new Date(now);
    const first = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock });
    await first.attest(lines);
    now += 300_000;
    await first.attest(lines);
    // A restarted process continues the chain.
    const second = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock });
    expect(second.last?.id).toEqual({ host: 'cap-1', day: '2026-03-01', seq: 2 });
    now += 300_000; // 00:00 UTC: the next day's directory
    await second.attest([]);
    const read = [];
    for await (const attestation of readAttestations(createMemorySink(storage), { verifier: key.verifier })) read.push(attestation);
    expect(read.map((entry) => [entry.id.day, entry.seq, entry.time])).toEqual([
      ['2026-03-01', 1, '2026-03-01T23:50:00Z'],
      ['2026-03-01', 2, '2026-03-01T23:55:00Z'],
      ['2026-03-02', 3, '2026-03-02T00:00:00Z'],
    ]);
    expect(read[1]?.prev).toBe(read[0]?.hash);
    expect(read[2]?.prev).toBe(read[1]?.hash);
    expect(read[0]?.streams.map((line) => line.stream)).toEqual(['signal:bob', 'whatsapp:alice']);
    // The period limits what is read.
    const later = [];
    for await (const attestation of readAttestations(createMemorySink(storage), { from: new Date(T0 + 1000), to: new Date(T0 + 300_000) })) later.push(attestation.seq);
    expect(later).toEqual([2]);
  });

  it('skips and reports notes forged with another key, altered, or misfiled', async () => {
    const key = generateEd25519NoteKey('archive.example');
    const other = generateEd25519NoteKey('archive.example');
    const storage = new MemoryStorage();
    const sink = createMemorySink(storage);
    const attestor = await HostAttestor.open({ sink, host: 'cap-1', signer: key, clock: () => new Date(T0) });
    await attestor.attest(lines);
    const forged = signNote(formatAttestation('archive.example', { host: 'cap-1', time: new Date(T0).toISOString(), seq: 2, prev: attestor.last?.hash ?? '', streams: [] }), [other]);
    await sink.putAttestation?.({ host: 'cap-1', day: '2026-03-01', seq: 2 }, new TextEncoder().encode(forged));
    const genuine = storage.attestations.get('cap-1/2026-03-01/0000000000000001') as Uint8Array;
    const altered = new TextEncoder().encode(new TextDecoder().decode(genuine).replace('connected', 'restarting'));
    await sink.putAttestation?.({ host: 'cap-1', day: '2026-03-01', seq: 3 }, altered);
    await sink.putAttestation?.({ host: 'cap-2', day: '2026-03-01', seq: 1 }, genuine);
    const invalid: [AttestationId, string][] = [];
    const read = [];
    for await (const attestation of readAttestations(sink, { verifier: key.verifier, onInvalid: (id, error) => invalid.push([id, error.code]) })) read.push(attestation.seq);
    expect(read).toEqual([1]);
    expect(invalid).toEqual([
      [{ host: 'cap-1', day: '2026-03-01', seq: 2 }, 'NOTE_UNVERIFIED'],
      [{ host: 'cap-1', day: '2026-03-01', seq: 3 }, 'NOTE_BAD_SIGNATURE'],
      [{ host: 'cap-2', day: '2026-03-01', seq: 1 }, 'NOTE_MISFILED'],
    ]);
    expect(sha256Hex(genuine)).toBe(attestor.last?.hash);
  });

  it('reports a second writer under the same host id as a conflict and continues after it', async () => {
    const key = generateEd25519NoteKey('archive.example');
    const storage = new MemoryStorage();
    const a = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(T0) });
    const b = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(T0 + 1000) });
    await a.attest(lines);
    await expect(b.attest(lines)).rejects.toBeInstanceOf(SinkConflictError);
    expect((await b.attest(lines)).id.seq).toBe(2);
  });

  it('refuses an attestation too large for a note, saying to shard, and stores nothing', async () => {
    const key = generateEd25519NoteKey('archive.example');
    const storage = new MemoryStorage();
    const attestor = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(T0) });
    const many = Array.from({ length: 15_000 }, (_, index) => ({ stream: `whatsapp:custodian-${String(index).padStart(6, '0')}`, size: 1_000_000, root: rootOf(1), state: 'connected' }));
    await expect(attestor.attest(many)).rejects.toThrow(/over the 1048576-byte note limit: split the streams over more capture processes \(--shard\)/);
    expect(storage.attestations.size).toBe(0);
    expect((await attestor.attest(many.slice(0, 10_000))).id.seq).toBe(1);
  });

  it('continues a chain of 400 days reading only its recent days at open; one left long ago is still found', async () => {
    const key = generateEd25519NoteKey('archive.example');
    const storage = new MemoryStorage();
    let now = T0;
    const writer = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(now) });
    for (let day = 0; day < 400; day++) {
      for (let slot = 0; slot < 4; slot++) {
        now = T0 + day * 86_400_000 + slot * 3_600_000;
        await writer.attest(lines);
      }
    }
    const last = writer.last;
    expect(last?.id.seq).toBe(1600);
    // Every attestation id a listing returns is counted.
    let listed = 0;
    const inner = createMemorySink(storage);
    const list = inner.attestations?.bind(inner);
    if (!list) throw new Error('the memory sink stores attestations');
    const sink = Object.assign(Object.create(inner) as typeof inner, {
      attestations: async (host: string, range?: { readonly fromDay?: string; readonly toDay?: string }) => {
        const ids = await list(host, range);
        listed += ids.length;
        return ids;
      },
    });
    const reopened = await HostAttestor.open({ sink, host: 'cap-1', signer: key, clock: () => new Date(now + 3_600_000) });
    expect(reopened.last).toEqual(last);
    expect(listed).toBeLessThanOrEqual(8);
    // Three years later: the recent days hold none, so wider spans and then every day are listed.
    listed = 0;
    const late = await HostAttestor.open({ sink, host: 'cap-1', signer: key, clock: () => new Date(now + 3 * 366 * 86_400_000) });
    expect(late.last).toEqual(last);
    expect(listed).toBe(1600);
    expect((await late.attest(lines)).id.seq).toBe(1601);
  });

  it('a clock set back does not file an attestation under an earlier day: the next start finds it and the chain does not fork', async () => {
    const key = generateEd25519NoteKey('archive.example');
    const storage = new MemoryStorage();
    let now = T0;
    const logger = createRecordingLogger();
    const first = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(now), logger });
    await first.attest(lines);
    // A boot before NTP: the clock says 2024-01-01.
    now = Date.parse('2024-01-01T00:00:10Z');
    const second = await first.attest(lines);
    expect(second.id).toEqual({ host: 'cap-1', day: '2026-03-01', seq: 2 });
    expect(second.time).toBe(new Date(T0).toISOString().replace('.000Z', 'Z'));
    await first.attest(lines);
    // Said once while it lasts, and once when the clock passes it again.
    expect(logger.lines.filter((line) => line.level === 'warn').map((line) => line.message)).toEqual([expect.stringMatching(/^the clock is behind the previous attestation/) as unknown]);
    now = T0 + 60_000;
    await first.attest(lines);
    expect(logger.lines.filter((line) => line.level === 'info').map((line) => line.message)).toEqual([expect.stringMatching(/^the clock has passed the previous attestation/) as unknown]);
    // NTP corrects the clock, the process restarts: it continues after seq 2.
    now = T0 + 86_400_000;
    const restarted = await HostAttestor.open({ sink: createMemorySink(storage), host: 'cap-1', signer: key, clock: () => new Date(now) });
    expect(restarted.last?.id.seq).toBe(4);
    expect((await restarted.attest(lines)).id.seq).toBe(5);
    // Each note is filed under the day it states (readers check that).
    const read: number[] = [];
    const invalid: string[] = [];
    for await (const attestation of readAttestations(createMemorySink(storage), { verifier: key.verifier, onInvalid: (_id, error) => invalid.push(error.code) })) read.push(attestation.seq);
    expect(invalid).toEqual([]);
    expect(read).toEqual([1, 2, 3, 4, 5]);
  });
});
