/**
 * `message.message_summary_info`: a binary plist Messages writes when a message is edited or
 * unsent (and on some other updates). The keys that matter for the archive:
 *
 * - `ec` (edited content): `{ "<part>": [ {d, t, bcg?}, … ] }`, entry 0 the original, the last
 *   the current text; `d` is seconds since 2001-01-01 (float), `t` an attributedBody typedstream;
 * - `rp` (retracted parts): part indexes the sender unsent;
 * - `otr` (original text ranges): `{ "<part>": {lo, le} }`, one per original part.
 */
import { PlistUid, parseBplist, type PlistDict, type PlistValue } from './bplist/bplist-reader.ts';
import { BplistError } from './errors.ts';

/** One version of one edited part. */
export interface EditVersion {
  /** Index of this version in the part's history (0 = the original). */
  readonly index: number;
  /** When the version was written: seconds since 2001-01-01 UTC (`d`). */
  readonly seconds: number;
  /** The version's attributedBody typedstream (`t`). */
  readonly body: Uint8Array | undefined;
  /** `bcg`: a row holding this version as a separate message (link previews). */
  readonly backwardsCompatibilityGuid?: string;
}

/** What `message_summary_info` says about a message's edits and unsends. */
export interface SummaryInfo {
  /** Edit history per part index. */
  readonly edits: ReadonlyMap<number, readonly EditVersion[]>;
  /** Part indexes that were unsent. */
  readonly retractedParts: readonly number[];
  /** Original part indexes (from `otr`). */
  readonly originalParts: readonly number[];
}

/** Parses `message_summary_info`. Throws {@link BplistError} on malformed input. */
export function parseSummaryInfo(bytes: Uint8Array): SummaryInfo {
  const root = parseBplist(bytes);
  if (!isDict(root)) throw new BplistError('message_summary_info root is not a dictionary');
  const edits = new Map<number, EditVersion[]>();
  const ec = root['ec'];
  if (ec !== undefined) {
    if (!isDict(ec)) throw new BplistError('ec is not a dictionary');
    for (const [key, versions] of Object.entries(ec)) {
      if (!Array.isArray(versions)) throw new BplistError('ec entry is not an array');
      edits.set(
        partIndex(key),
        (versions as readonly PlistValue[]).map((version, index) => {
          if (!isDict(version) || typeof version['d'] !== 'number') throw new BplistError('ec version without a date');
          const body = version['t'];
          const bcg = version['bcg'];
          return {
            index,
            seconds: version['d'],
            body: body instanceof Uint8Array ? body : undefined,
            ...(typeof bcg === 'string' ? { backwardsCompatibilityGuid: bcg } : {}),
          };
        }),
      );
    }
  }
  const rp = root['rp'];
  const retractedParts = rp === undefined ? [] : Array.isArray(rp) ? (rp as readonly PlistValue[]).map((part) => partIndex(part)) : fail('rp is not an array');
  const otr = root['otr'];
  const originalParts = otr === undefined ? [] : isDict(otr) ? Object.keys(otr).map((key) => partIndex(key)) : fail('otr is not a dictionary');
  return { edits, retractedParts, originalParts };
}

function isDict(value: PlistValue | undefined): value is PlistDict {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array) && !(value instanceof Date) && !(value instanceof PlistUid);
}

function partIndex(value: PlistValue | string): number {
  const index = typeof value === 'string' && /^\d{1,6}$/.test(value) ? Number(value) : value;
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index > 999_999) throw new BplistError('part index is not a small non-negative integer');
  return index;
}

function fail(problem: string): never {
  throw new BplistError(problem);
}
