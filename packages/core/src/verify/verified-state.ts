/**
 * What an auditor keeps between audits: per stream, the newest signed checkpoint the last audit
 * verified (size and root). `offchannel verify --save <file>` writes it after a verification
 * that passed; `--since <file>` reads it so that the next audit proves the archive only grew
 * from there (an RFC 9162 consistency proof to each newer checkpoint) and reads only what came
 * after. The file holds no secret and no message content; keep it where the audited party
 * cannot change it (it is the auditor's own memory of the log, like a witness's).
 *
 * Format (JSON, `format` first):
 *   { "format": "offchannel-verified-state/1",
 *     "verifiedAt": "<ISO 8601, when it was written>",
 *     "streams": { "<stream>": { "size": <records>, "root": "<64 hex>" }, … },
 *     "attestations": { "<host>": { "seq": <n>, "hash": "<64 hex>" }, … } }
 *
 * `attestations` (optional; absent in files of earlier versions): per capture host, the newest
 * host attestation verified, so the next audit reads only later ones.
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { isStreamName } from '../record/stream-name.ts';
import { isHostId } from '../attest/attestation.ts';
import type { VerifiedAttestation } from './attestation-check.ts';
import type { VerifiedCheckpoint } from './checkpoint-check.ts';
import type { VerificationReport } from './verify-archive.ts';

export const VERIFIED_STATE_FORMAT = 'offchannel-verified-state/1';

/** Thrown for a state file that is not one (code `VERIFIED_STATE_INVALID`). */
export class VerifiedStateError extends OffchannelError {
  constructor(problem: string) {
    super('VERIFIED_STATE_INVALID', `the saved verification state ${problem}; give the file written by \`offchannel verify --save\`, or verify in full without --since.`);
  }
}

/** Parses a saved state. Throws {@link VerifiedStateError}. */
export function readVerifiedState(text: string): Map<string, VerifiedCheckpoint> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new VerifiedStateError('is not JSON');
  }
  const value = parsed as { format?: unknown; streams?: unknown };
  if (typeof parsed !== 'object' || parsed === null || value.format !== VERIFIED_STATE_FORMAT) throw new VerifiedStateError(`is not of format ${VERIFIED_STATE_FORMAT}`);
  if (typeof value.streams !== 'object' || value.streams === null || Array.isArray(value.streams)) throw new VerifiedStateError('has no "streams" object');
  const state = new Map<string, VerifiedCheckpoint>();
  for (const [stream, entry] of Object.entries(value.streams as Record<string, unknown>)) {
    const { size, root } = (entry ?? {}) as { size?: unknown; root?: unknown };
    if (!isStreamName(stream)) throw new VerifiedStateError(`names an invalid stream (${JSON.stringify(String(stream).slice(0, 80))})`);
    if (!Number.isSafeInteger(size) || (size as number) < 1) throw new VerifiedStateError(`has no valid size for stream ${stream}`);
    if (typeof root !== 'string' || !/^[0-9a-f]{64}$/.test(root)) throw new VerifiedStateError(`has no valid root for stream ${stream}`);
    state.set(stream, { size: size as number, root: Uint8Array.from(Buffer.from(root, 'hex')) });
  }
  return state;
}

/** The host attestations part of a saved state (empty for files without one). Throws {@link VerifiedStateError}. */
export function readVerifiedAttestations(text: string): Map<string, VerifiedAttestation> {
  readVerifiedState(text);
  const { attestations } = JSON.parse(text) as { attestations?: unknown };
  const state = new Map<string, VerifiedAttestation>();
  if (attestations === undefined) return state;
  if (typeof attestations !== 'object' || attestations === null || Array.isArray(attestations)) throw new VerifiedStateError('has an "attestations" entry that is not an object');
  for (const [host, entry] of Object.entries(attestations as Record<string, unknown>)) {
    const { seq, hash } = (entry ?? {}) as { seq?: unknown; hash?: unknown };
    if (!isHostId(host)) throw new VerifiedStateError(`names an invalid attestation host (${JSON.stringify(String(host).slice(0, 80))})`);
    if (!Number.isSafeInteger(seq) || (seq as number) < 1) throw new VerifiedStateError(`has no valid seq for attestation host ${host}`);
    if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) throw new VerifiedStateError(`has no valid hash for attestation host ${host}`);
    state.set(host, { seq: seq as number, hash });
  }
  return state;
}

/**
 * The state to save after `report` passed: for each stream, its newest checkpoint that verified
 * against the records (signed by a given key, or the earlier audit's own). Streams that were
 * not verified keep what `previous` held. Throws if the report did not pass.
 */
export function verifiedStateOf(report: VerificationReport, at: Date, previous?: ReadonlyMap<string, VerifiedCheckpoint>): string {
  if (!report.ok) throw new OffchannelError('VERIFICATION_FAILED', 'a verification that failed is not saved as the state to continue from; fix or report the failures first.');
  const streams: Record<string, { size: number; root: string }> = {};
  for (const [stream, checkpoint] of previous ?? []) streams[stream] = { size: checkpoint.size, root: Buffer.from(checkpoint.root).toString('hex') };
  for (const summary of report.streams) {
    const newest = (summary.checkpoints ?? []).filter((checkpoint) => checkpoint.size <= summary.head.seq).at(-1);
    if (newest) streams[summary.stream] = { size: newest.size, root: newest.root };
  }
  const sorted = Object.fromEntries(Object.entries(streams).sort(([a], [b]) => (a < b ? -1 : 1)));
  const attestations: Record<string, VerifiedAttestation> = {};
  for (const host of report.attestations ?? []) if (host.last) attestations[host.host] = { seq: host.last.seq, hash: host.last.hash };
  const hosts = Object.keys(attestations).length > 0 ? { attestations: Object.fromEntries(Object.entries(attestations).sort(([a], [b]) => (a < b ? -1 : 1))) } : {};
  return `${JSON.stringify({ format: VERIFIED_STATE_FORMAT, verifiedAt: at.toISOString(), streams: sorted, ...hosts }, null, 2)}\n`;
}
