/**
 * Host attestations written to the spool reach every forward target, in seq order per host, and
 * a target that was down receives the ones it missed — verifiable there with the key alone.
 */
import { describe, expect, it } from 'vitest';
import { HostAttestor } from '../attest/host-attestor.ts';
import { readAttestations } from '../attest/read-attestations.ts';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { outageSink } from './__fixtures__/outage-sink.ts';
import { Forwarder } from './forwarder.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const T0 = Date.UTC(2026, 11, 6, 23, 50);
const EMPTY_ROOT = '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';

async function seqs(sink: Sink): Promise<number[]> {
  const out: number[] = [];
  for await (const attestation of readAttestations(sink, { verifier: key.verifier })) out.push(attestation.seq);
  return out;
}

describe('Forwarder and host attestations', () => {
  it('copies every attestation to every target, across days, and catches up a target that was down', { timeout: 30_000 }, async () => {
    const spool = createMemorySink(new MemoryStorage());
    const up = createMemorySink(new MemoryStorage());
    const down = { value: true };
    const laggingStorage = new MemoryStorage();
    const lagging = outageSink(createMemorySink(laggingStorage), down);
    let now = T0;
    const attestor = await HostAttestor.open({ sink: spool, host: 'h-test', signer: key, clock: () => new Date(now) });
    const forwarder = new Forwarder({ spool, targets: [{ name: 'up', sink: up }, { name: 'lagging', sink: lagging }], pollMs: 20 });
    forwarder.start();
    // Four intervals that cross midnight UTC: two days' folders.
    for (let index = 0; index < 4; index++) {
      await attestor.attest([{ stream: 'demo:alice', size: 0, root: EMPTY_ROOT, state: 'connected' }]);
      now += 5 * 60_000;
    }
    await forwarder.drain({ timeoutMs: 10_000 });
    expect(await seqs(up)).toEqual([1, 2, 3, 4]);
    expect(await seqs(createMemorySink(laggingStorage))).toEqual([]);
    down.value = false;
    await attestor.attest([{ stream: 'demo:alice', size: 0, root: EMPTY_ROOT, state: 'stopped' }]);
    await forwarder.drain({ timeoutMs: 10_000 });
    await forwarder.stop();
    expect(await seqs(up)).toEqual([1, 2, 3, 4, 5]);
    expect(await seqs(createMemorySink(laggingStorage))).toEqual([1, 2, 3, 4, 5]);
    // Byte for byte the spool's notes.
    for (const id of await spool.attestations?.('h-test') ?? []) {
      expect(Buffer.from((await up.getAttestation?.(id)) ?? []).equals(Buffer.from((await spool.getAttestation?.(id)) ?? [1]))).toBe(true);
    }
  });
});
