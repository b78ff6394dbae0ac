/**
 * Host attestations: one signed note per capture host and interval stating, for every stream
 * the host captures, its current Merkle head (size and root) and connector state. They are the
 * archive's evidence that capture was running while nothing was recorded — an idle stream and a
 * dead one no longer look the same — at a cost of one object per host and interval.
 *
 * The note (a C2SP signed note, c2sp.org/signed-note, signed with the archive's checkpoint key):
 *
 * ```
 * <key name>/attestations/<host>
 * seq <n>
 * time <unix seconds>
 * prev <sha256 hex of attestation n−1's note file, or 64 zeros for n = 1>
 * <stream> <size> <base64 root> <state> [<last event, unix seconds>]
 * …one line per stream, sorted by stream name
 *
 * — <key name> <base64(key id ‖ Ed25519 signature)>
 * ```
 *
 * `<size> <root>` is the stream's Merkle head (RFC 9162, as in checkpoints): the attestation is
 * itself a signed statement of that head, and `verify --key` checks it against the records.
 * `seq` and `prev` chain a host's attestations, so a deleted one leaves a hole that shows.
 * Stored as `attestations/<host>/<yyyy-mm-dd>/<seq:16>.note` (UTC day of `time`). See
 * docs/storage-format.md.
 */
import { NoteError } from '../errors/note-errors.ts';
import { ZERO_HASH, isSha256Hex } from '../hash/sha256.ts';
import { HASH_BYTES } from '../merkle/merkle-hash.ts';
import { isStreamName } from '../record/stream-name.ts';

/** One stream's line in an attestation. */
export interface StreamAttestation {
  readonly stream: string;
  /** Records in the stream when attested (its Merkle tree size). */
  readonly size: number;
  /** Merkle root of the first `size` records, base64 (as in checkpoints). */
  readonly root: string;
  /** The connector's state, e.g. `connected`, `disconnected`, `logged-out`, `restarting`. */
  readonly state: string;
  /** When the stream last recorded anything, ISO 8601 UTC (second precision), if known. */
  readonly lastEventAt?: string;
}

/** One host's attestation for one interval. */
export interface HostAttestation {
  /** The capture host's id (config `coverage.host`). */
  readonly host: string;
  /** When it was made, ISO 8601 UTC (second precision). */
  readonly time: string;
  /** Position in the host's chain: 1, 2, 3… (a new chain per host id). */
  readonly seq: number;
  /** SHA-256 (hex) of the previous attestation's note file; 64 zeros for seq 1. */
  readonly prev: string;
  readonly streams: readonly StreamAttestation[];
}

/** Where an attestation is stored: `attestations/<host>/<day>/<seq:16>.note`. */
export interface AttestationId {
  readonly host: string;
  /** The UTC day of its `time`, `yyyy-mm-dd`. */
  readonly day: string;
  readonly seq: number;
}

const HOST = /^[a-z0-9][a-z0-9.-]{0,62}$/;
const STATE = /^[a-z][a-z0-9-]{0,31}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** True for a valid host id: 1–63 of `a-z 0-9 . -`, starting with a letter or digit. */
export function isHostId(host: unknown): host is string {
  return typeof host === 'string' && HOST.test(host) && !host.includes('..');
}

/** True for a valid connector state word in an attestation line. */
export function isAttestedState(state: unknown): state is string {
  return typeof state === 'string' && STATE.test(state);
}

/** The origin line of `host`'s attestations for a key named `keyName`. */
export function attestationOrigin(keyName: string, host: string): string {
  return `${keyName}/attestations/${host}`;
}

/** The UTC day (`yyyy-mm-dd`) of `time`. */
export function attestationDay(time: Date | string): string {
  return new Date(time).toISOString().slice(0, 10);
}

/** True for a `yyyy-mm-dd` day that is a real date. */
export function isAttestationDay(day: unknown): day is string {
  return typeof day === 'string' && DAY.test(day) && !Number.isNaN(Date.parse(`${day}T00:00:00Z`)) && new Date(`${day}T00:00:00Z`).toISOString().startsWith(day);
}

const malformed = (message: string): NoteError => new NoteError('NOTE_MALFORMED', `attestation: ${message}`);

/** The note text of an attestation (sign it with `signNote`). Throws `NoteError` NOTE_MALFORMED. */
export function formatAttestation(keyName: string, attestation: HostAttestation): string {
  if (!isHostId(attestation.host)) throw malformed('a host id is 1–63 characters of a-z, 0-9, "." and "-"');
  if (!Number.isSafeInteger(attestation.seq) || attestation.seq < 1) throw malformed('seq is an integer ≥ 1');
  if (!isSha256Hex(attestation.prev) || (attestation.seq === 1) !== (attestation.prev === ZERO_HASH)) throw malformed('prev is the previous note\'s SHA-256 (64 zeros exactly for seq 1)');
  const ms = Date.parse(attestation.time);
  if (Number.isNaN(ms) || ms < 0) throw malformed('time is an ISO 8601 time after 1970');
  const lines = [attestationOrigin(keyName, attestation.host), `seq ${attestation.seq}`, `time ${Math.floor(ms / 1000)}`, `prev ${attestation.prev}`];
  const sorted = [...attestation.streams].sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0));
  for (const [index, line] of sorted.entries()) {
    if (!isStreamName(line.stream)) throw malformed(`"${String(line.stream as unknown).slice(0, 80)}" is not a stream name`);
    if (index > 0 && sorted[index - 1]?.stream === line.stream) throw malformed(`stream ${line.stream} is attested twice`);
    if (!Number.isSafeInteger(line.size) || line.size < 0) throw malformed(`stream ${line.stream}: size is an integer ≥ 0`);
    if (Buffer.from(line.root, 'base64').length !== HASH_BYTES || Buffer.from(line.root, 'base64').toString('base64') !== line.root) throw malformed(`stream ${line.stream}: root is base64 of 32 bytes`);
    if (!isAttestedState(line.state)) throw malformed(`stream ${line.stream}: state is a lowercase word`);
    const last = line.lastEventAt === undefined ? undefined : Date.parse(line.lastEventAt);
    if (last !== undefined && (Number.isNaN(last) || last < 0)) throw malformed(`stream ${line.stream}: lastEventAt is an ISO 8601 time after 1970`);
    lines.push(`${line.stream} ${line.size} ${line.root} ${line.state}${last === undefined ? '' : ` ${Math.floor(last / 1000)}`}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Parses attestation note text (already verified with `openNote`): returns the key name its
 * origin names and the attestation. Throws `NoteError` NOTE_MALFORMED.
 */
export function parseAttestation(text: string): { readonly keyName: string; readonly attestation: HostAttestation } {
  if (!text.endsWith('\n')) throw malformed('the text ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  const [origin = '', seqLine = '', timeLine = '', prevLine = '', ...streamLines] = lines;
  const marker = origin.lastIndexOf('/attestations/');
  const keyName = origin.slice(0, marker);
  const host = origin.slice(marker + '/attestations/'.length);
  if (marker <= 0 || !isHostId(host)) throw malformed('the first line is "<key name>/attestations/<host>"');
  const seq = /^seq ([1-9][0-9]{0,15})$/.exec(seqLine);
  if (!seq || !Number.isSafeInteger(Number(seq[1]))) throw malformed('the second line is "seq <n>"');
  const time = /^time (0|[1-9][0-9]{0,11})$/.exec(timeLine);
  if (!time) throw malformed('the third line is "time <unix seconds>"');
  const prev = /^prev ([0-9a-f]{64})$/.exec(prevLine);
  if (!prev) throw malformed('the fourth line is "prev <sha256 hex>"');
  const streams: StreamAttestation[] = [];
  for (const line of streamLines) {
    const match = /^(\S+) (0|[1-9][0-9]{0,15}) (\S+) ([a-z][a-z0-9-]{0,31})(?: (0|[1-9][0-9]{0,11}))?$/.exec(line);
    if (!match) throw malformed('each stream line is "<stream> <size> <base64 root> <state> [<unix seconds>]"');
    const [, stream = '', size = '', root = '', state = '', last] = match;
    if (!isStreamName(stream)) throw malformed(`"${line.slice(0, 80)}" does not start with a stream name`);
    const previous = streams.at(-1);
    if (previous && previous.stream >= stream) throw malformed('stream lines are sorted by name, each stream once');
    const rootBytes = Buffer.from(root, 'base64');
    if (rootBytes.length !== HASH_BYTES || rootBytes.toString('base64') !== root) throw malformed(`stream ${stream}: root is base64 of 32 bytes`);
    if (!Number.isSafeInteger(Number(size))) throw malformed(`stream ${stream}: size is too large`);
    streams.push({ stream, size: Number(size), root, state, ...(last === undefined ? {} : { lastEventAt: isoSeconds(Number(last)) }) });
  }
  const attestation: HostAttestation = { host, time: isoSeconds(Number(time[1])), seq: Number(seq[1]), prev: prev[1] as string, streams };
  if ((attestation.seq === 1) !== (attestation.prev === ZERO_HASH)) throw malformed('prev is 64 zeros exactly for seq 1');
  return { keyName, attestation };
}

function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}
