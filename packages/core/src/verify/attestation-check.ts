/**
 * Internal: the host-attestation half of `verifyArchive` (with verifier keys).
 *
 * Before the streams are read: every stored attestation must be a well-formed note signed by a
 * given key (a failing signature by a given key is forgery: critical), filed under the host,
 * day and seq it states; each host's chain must run 1, 2, 3… without a hole (a deleted
 * attestation) and each note must name the SHA-256 of the one before it (an altered or
 * replaced one); times must not go backwards. Each attested `(stream, size, root)` is kept —
 * once per distinct size, so an idle stream attested every five minutes costs one entry — and
 * two attestations of one size with different roots are a forked log (critical). A size-0
 * attestation must carry the empty tree's root.
 *
 * While each stream is read, `CheckpointCheck` compares the recomputed root at every attested
 * size (see `attested` there); after, a size beyond the stream's last record means records were
 * removed after they were attested, and a stream attested with records that the archive does
 * not hold at all fails.
 *
 * Incremental (`since`): per host, the newest attestation an earlier audit verified; only later
 * ones are read, and the first must name its hash.
 */
import { NoteError } from '../errors/note-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import { EMPTY_ROOT, sameHash } from '../merkle/merkle-hash.ts';
import type { NoteVerifier } from '../note/ed25519-key.ts';
import type { Sink } from '../sink/sink.ts';
import type { HostAttestation } from '../attest/attestation.ts';
import { openAttestation } from '../attest/read-attestations.ts';
import type { VerificationFailure } from './verify-archive.ts';

/** A stream head some attestation signed. */
export interface AttestedHead {
  readonly size: number;
  readonly root: Uint8Array;
  /** Which attestation first stated it, e.g. `cap-1 #42`. */
  readonly by: string;
}

/** Per host, the newest attestation verified (what `verify --save` keeps). */
export interface VerifiedAttestation {
  readonly seq: number;
  /** SHA-256 (hex) of its note file. */
  readonly hash: string;
}

/** What the attestation check found, for the report. */
export interface AttestationSummary {
  readonly host: string;
  /** Attestations verified in this run. */
  readonly verified: number;
  /** The newest one verified (or the earlier audit's, when nothing newer was stored). */
  readonly last?: { readonly seq: number; readonly hash: string; readonly time?: string };
}

export interface AttestationCheckResult {
  readonly heads: ReadonlyMap<string, readonly AttestedHead[]>;
  readonly hosts: readonly AttestationSummary[];
}

export async function checkAttestations(
  sink: Sink,
  verifiers: readonly NoteVerifier[],
  report: (failure: VerificationFailure) => void,
  since?: ReadonlyMap<string, VerifiedAttestation>,
): Promise<AttestationCheckResult> {
  /** Per stream and size, the distinct roots attested (one, unless the log forked). */
  const heads = new Map<string, Map<number, AttestedHead[]>>();
  const hosts: AttestationSummary[] = [];
  if (!sink.attestationHosts || !sink.attestations || !sink.getAttestation) return { heads: new Map(), hosts };
  const fail = (code: string, message: string, critical: boolean): void => report({ code, message, ...(critical ? { severity: 'critical' as const } : {}) });
  const listed = new Set(await sink.attestationHosts());
  for (const host of since?.keys() ?? []) {
    if (!listed.has(host)) fail('ATTESTATION_MISSING', `attestations of host ${host}: none are stored, but an earlier audit verified up to #${since?.get(host)?.seq ?? 0}: they were deleted`, true);
  }
  for (const host of listed) {
    const saved = since?.get(host);
    const ids = await sink.attestations(host);
    let expected = 1;
    let prev: string | undefined;
    let lastTime: string | undefined;
    let verified = 0;
    let last: AttestationSummary['last'] = saved ? { seq: saved.seq, hash: saved.hash } : undefined;
    if (saved) {
      const kept = ids.find((id) => id.seq === saved.seq);
      if (!kept) fail('ATTESTATION_MISSING', `attestation ${host} #${saved.seq}, verified by an earlier audit, is no longer stored: it was deleted`, true);
      else {
        const bytes = await sink.getAttestation(kept);
        if (!bytes || sha256Hex(bytes) !== saved.hash) fail('ATTESTATION_CHAIN', `attestation ${host} #${saved.seq} is not the note an earlier audit verified: it was replaced`, true);
      }
      expected = saved.seq + 1;
      prev = saved.hash;
    }
    for (const id of ids) {
      if (saved && id.seq <= saved.seq) continue;
      const where = `attestation ${host} #${id.seq} (attestations/${host}/${id.day})`;
      if (id.seq < expected) {
        fail('ATTESTATION_DUPLICATE', `${where}: seq ${id.seq} is stored under more than one day`, true);
        continue;
      }
      if (id.seq > expected) {
        fail('ATTESTATION_MISSING', `attestation${id.seq - expected > 1 ? `s ${host} #${expected}–#${id.seq - 1} are` : ` ${host} #${expected} is`} missing before #${id.seq}: deleted from the chain`, true);
        prev = undefined;
      }
      expected = id.seq + 1;
      const bytes = await sink.getAttestation(id);
      if (!bytes) continue;
      const hash = sha256Hex(bytes);
      let attestation: HostAttestation;
      try {
        attestation = openWithAny(bytes, id, verifiers);
      } catch (error) {
        if (!(error instanceof NoteError)) throw error;
        const code = error.code === 'NOTE_BAD_SIGNATURE' ? 'ATTESTATION_FORGED' : error.code === 'NOTE_UNVERIFIED' ? 'ATTESTATION_UNTRUSTED' : error.code === 'NOTE_MISFILED' ? 'ATTESTATION_MISFILED' : 'ATTESTATION_MALFORMED';
        fail(code, `${where}: ${error.message}`, code !== 'ATTESTATION_MALFORMED');
        // Reported once: the next note's link to this one is not judged.
        prev = undefined;
        continue;
      }
      if (prev !== undefined && attestation.prev !== prev) {
        fail('ATTESTATION_CHAIN', `${where} names ${attestation.prev.slice(0, 16)}… as the previous attestation, but #${id.seq - 1} hashes to ${prev.slice(0, 16)}…: an attestation was altered or replaced`, true);
      }
      if (lastTime !== undefined && attestation.time < lastTime) fail('ATTESTATION_TIME_ORDER', `${where} is dated ${attestation.time}, before the attestation before it (${lastTime})`, false);
      prev = hash;
      lastTime = attestation.time;
      verified++;
      last = { seq: id.seq, hash, time: attestation.time };
      for (const line of attestation.streams) {
        const root = Uint8Array.from(Buffer.from(line.root, 'base64'));
        if (line.size === 0 && !sameHash(root, EMPTY_ROOT)) fail('ATTESTATION_ROOT_MISMATCH', `${where}: stream ${line.stream} is attested empty with a root that is not the empty tree's`, true);
        const sizes = heads.get(line.stream) ?? new Map<number, AttestedHead[]>();
        heads.set(line.stream, sizes);
        const known = sizes.get(line.size) ?? [];
        if (known.some((head) => sameHash(head.root, root))) continue;
        const first = known[0];
        if (first) fail('ATTESTATION_EQUIVOCATION', `${where}: stream ${line.stream} at size ${line.size} has a different root than in attestation ${first.by}: the log forked`, true);
        sizes.set(line.size, [...known, { size: line.size, root, by: `${host} #${id.seq}` }]);
      }
    }
    hosts.push({ host, verified, ...(last ? { last } : {}) });
  }
  return { heads: new Map([...heads].map(([stream, sizes]) => [stream, [...sizes.values()].flat().sort((a, b) => a.size - b.size)])), hosts };
}

function openWithAny(bytes: Uint8Array, id: Parameters<typeof openAttestation>[1], verifiers: readonly NoteVerifier[]): HostAttestation {
  let failure: NoteError | undefined;
  for (const verifier of verifiers) {
    try {
      return openAttestation(bytes, id, verifier);
    } catch (error) {
      if (!(error instanceof NoteError)) throw error;
      // A bad signature by a trusted key is forgery whatever the other keys say.
      if (error.code === 'NOTE_BAD_SIGNATURE') throw error;
      if (failure === undefined || failure.code === 'NOTE_UNVERIFIED') failure = error;
    }
  }
  throw failure ?? new NoteError('NOTE_UNVERIFIED', 'no verifier key was given');
}
