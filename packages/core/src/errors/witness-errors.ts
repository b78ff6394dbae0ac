import { OffchannelError } from './offchannel-error.ts';

/**
 * A witness (c2sp.org/tlog-witness) refused or could not take a checkpoint. `code` is one of:
 * - `WITNESS_REQUEST_MALFORMED` — an add-checkpoint body is not "old <size>", proof lines, a
 *   blank line and a checkpoint note (HTTP 400);
 * - `WITNESS_UNKNOWN_LOG` — the witness is not configured for this origin (HTTP 404);
 * - `WITNESS_FORBIDDEN` — no signature from a key the witness trusts for the origin (HTTP 403);
 * - `WITNESS_CONFLICT` — the old size is not the witness's latest size for the log (HTTP 409);
 * - `WITNESS_INCONSISTENT` — the consistency proof does not verify, or the witness has seen a
 *   different tree at this size: a fork (HTTP 422). Never retried around;
 * - `WITNESS_UNAVAILABLE` — the witness could not be reached or answered something else (retryable);
 * - `WITNESS_STATE` — the witness's own state folder or journal cannot be used.
 */
export class WitnessError extends OffchannelError {}
