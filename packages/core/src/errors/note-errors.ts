import { OffchannelError } from './offchannel-error.ts';

/**
 * A signed note, checkpoint, key text, proof or timestamp token could not be accepted.
 * `code` is one of:
 * - `NOTE_MALFORMED` — not a well-formed signed note / checkpoint (the message says which rule);
 * - `NOTE_UNVERIFIED` — no signature from a trusted key verified;
 * - `NOTE_BAD_SIGNATURE` — a signature from a trusted key failed to verify (the note is rejected);
 * - `NOTE_MISFILED` — a host attestation is stored under another host, seq or day than it states;
 * - `KEY_MALFORMED` — a signer or verifier key text is not in the C2SP / Go note format;
 * - `PROOF_MALFORMED` — a proof file is not in the offchannel proof format;
 * - `TIMESTAMP_INVALID` — an RFC 3161 timestamp token is malformed or does not verify.
 */
export class NoteError extends OffchannelError {}
