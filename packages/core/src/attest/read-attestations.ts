/**
 * Reading host attestations back from an archive — the public reader `offchannel coverage` and
 * other tools build on. This API is stable: fields may be added, none removed or changed.
 */
import { NoteError } from '../errors/note-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { NoteVerifier } from '../note/ed25519-key.ts';
import { openNote, parseNote } from '../note/signed-note.ts';
import type { Sink } from '../sink/sink.ts';
import { type AttestationId, type HostAttestation, attestationDay, attestationOrigin, parseAttestation } from './attestation.ts';

/** An attestation as stored: where, and the SHA-256 of its note file (what the next one's `prev` names). */
export interface StoredAttestation extends HostAttestation {
  readonly id: AttestationId;
  /** SHA-256 (hex) of the note file. */
  readonly hash: string;
}

export interface ReadAttestationsOptions {
  /** Only attestations made at or after this time. */
  readonly from?: Date;
  /** Only attestations made at or before this time. */
  readonly to?: Date;
  /**
   * The archive's verifier key. When given, only attestations whose signature by this key
   * verifies (and whose origin names this key and the host they are filed under) are yielded;
   * the others go to `onInvalid`. Without it, notes are parsed but not authenticated.
   */
  readonly verifier?: NoteVerifier;
  /** Only this host's attestations. */
  readonly host?: string;
  /** Called for each stored attestation that is not yielded because it is malformed, misfiled or unverified. */
  readonly onInvalid?: (id: AttestationId, error: NoteError) => void;
}

/**
 * Every stored host attestation in the period, host by host (sorted by host id), each host's in
 * chain order (seq ascending). Yields nothing for a sink that does not store attestations.
 * Reads only the days the period touches. A stored note that is malformed, filed under another
 * host, seq or day, or (with `verifier`) not signed by that key is skipped and reported to
 * `onInvalid`; it never ends the iteration. Storage errors reject.
 *
 * ```ts
 * for await (const attestation of readAttestations(sink, { from, to, verifier })) {
 *   for (const line of attestation.streams) console.log(attestation.time, line.stream, line.state);
 * }
 * ```
 */
export async function* readAttestations(sink: Sink, options: ReadAttestationsOptions = {}): AsyncIterable<StoredAttestation> {
  if (!sink.attestationHosts || !sink.attestations || !sink.getAttestation) return;
  const hosts = options.host === undefined ? await sink.attestationHosts() : [options.host];
  const range = { ...(options.from ? { fromDay: attestationDay(options.from) } : {}), ...(options.to ? { toDay: attestationDay(options.to) } : {}) };
  for (const host of hosts) {
    for (const id of await sink.attestations(host, range)) {
      const bytes = await sink.getAttestation(id);
      if (!bytes) continue;
      let attestation: HostAttestation;
      try {
        attestation = openAttestation(bytes, id, options.verifier);
      } catch (error) {
        if (!(error instanceof NoteError)) throw error;
        options.onInvalid?.(id, error);
        continue;
      }
      const time = Date.parse(attestation.time);
      if ((options.from && time < options.from.getTime()) || (options.to && time > options.to.getTime())) continue;
      yield { ...attestation, id, hash: sha256Hex(bytes) };
    }
  }
}

/**
 * Opens one stored attestation note filed under `id`: with `verifier`, its signature must verify
 * and its origin name that key; its host, seq and day must be the ones it is filed under.
 * Throws `NoteError` (NOTE_MALFORMED, NOTE_BAD_SIGNATURE, NOTE_UNVERIFIED, NOTE_MISFILED).
 */
export function openAttestation(bytes: Uint8Array, id: AttestationId, verifier?: NoteVerifier): HostAttestation {
  const text = verifier ? openNote(bytes, [verifier]).text : parseNote(bytes).text;
  const { keyName, attestation } = parseAttestation(text);
  if (verifier && keyName !== verifier.name) {
    throw new NoteError('NOTE_MALFORMED', `attestation: its origin names key "${keyName}", not the verifier's "${verifier.name}"`);
  }
  if (attestation.host !== id.host || attestation.seq !== id.seq || attestationDay(attestation.time) !== id.day) {
    throw new NoteError('NOTE_MISFILED', `attestation: it says ${attestationOrigin(keyName, attestation.host)} seq ${attestation.seq} of ${attestationDay(attestation.time)}, but is filed as attestations/${id.host}/${id.day}/${id.seq}`);
  }
  return attestation;
}
