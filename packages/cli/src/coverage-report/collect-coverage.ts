/**
 * Reads an archive once and builds its coverage report: the host attestations first (folded
 * into a few continuous spans per stream), then each stream's records in seq order. Reads
 * only; needs only the archive (and, for verified evidence, what `verifyArchive` found).
 */
import { type ArchiveRecord, type Sink, isStreamName, validateRecord } from '@offchannel/core';
import { type StreamCoverageReport, StreamCoverage } from './stream-coverage.ts';

/** What coverage needs of one host attestation (the shape `readAttestations` yields). */
export interface AttestationEvidence {
  readonly host: string;
  /** ISO 8601. */
  readonly time: string;
  readonly streams: readonly { readonly stream: string; readonly state?: string }[];
}

export interface CoverageOptions {
  /** The period, ms since the epoch. */
  readonly from: number;
  readonly to: number;
  /** Only these streams (default: every stream but `delivery:` receipts). */
  readonly streams?: readonly string[];
  /** The capture hosts' attestation interval (`coverage.attestEveryMs`). */
  readonly attestEveryMs: number;
  /** Host attestations, in time order. */
  readonly attestations?: AsyncIterable<AttestationEvidence>;
  /**
   * Verified evidence only: per stream, the highest seq under a verified signed checkpoint
   * (records after it are not evidence). A stream missing from the map has no verified record.
   * Absent: every readable record counts.
   */
  readonly verifiedThrough?: ReadonlyMap<string, number>;
}

export interface CoverageReport {
  readonly from: string;
  readonly to: string;
  /** `verified`: only records under verified checkpoints and attestations that verified counted. */
  readonly evidence: 'verified' | 'unverified';
  readonly attestEveryMs: number;
  /** Silence longer than this on an attested stream is a `process down` gap. */
  readonly toleranceMs: number;
  readonly streams: readonly StreamCoverageReport[];
  /** Records that could not be read as records (damaged archive); never evidence. */
  readonly unreadable: number;
}

/** Tolerance for scheduling jitter: one more interval, and at least a minute more. */
export function toleranceFor(attestEveryMs: number): number {
  return attestEveryMs + Math.max(attestEveryMs, 60_000);
}

export async function collectCoverage(sink: Sink, options: CoverageOptions): Promise<CoverageReport> {
  const toleranceMs = toleranceFor(options.attestEveryMs);
  const wanted = options.streams === undefined ? undefined : new Set(options.streams);
  const include = (stream: string) => (wanted ? wanted.has(stream) : !stream.startsWith('delivery:'));
  const spans = await attestedSpans(options, toleranceMs, include);
  const names = new Set([...(await sink.streams()).filter(include), ...spans.keys()]);
  for (const stream of wanted ?? []) names.add(stream);
  const period = { from: options.from, to: options.to };
  const reports: StreamCoverageReport[] = [];
  let unreadable = 0;
  for (const stream of [...names].sort()) {
    const coverage = new StreamCoverage(stream, period, toleranceMs);
    const pending = spans.get(stream) ?? [];
    let next = 0;
    const limit = options.verifiedThrough ? (options.verifiedThrough.get(stream) ?? 0) : Number.POSITIVE_INFINITY;
    if (limit > 0 && (await hasStream(sink, stream))) {
      for await (const stored of sink.read(stream)) {
        if (stored.seq > limit) break;
        const record = readRecord(stored.bytes, stream);
        if (!record) {
          unreadable++;
          continue;
        }
        const at = Date.parse(record.capturedAt);
        if (at > options.to) break;
        for (; next < pending.length && (pending[next]?.from ?? 0) <= at; next++) coverage.attested(pending[next]?.from ?? 0, pending[next]?.to ?? 0);
        coverage.record(record);
      }
    }
    for (; next < pending.length; next++) coverage.attested(pending[next]?.from ?? 0, pending[next]?.to ?? 0);
    const report = coverage.finish();
    // With --key, a stream whose records are not under a verified checkpoint proves nothing.
    reports.push(limit === 0 && (await hasStream(sink, stream)) ? { ...report, state: 'unverified', covered: false } : report);
  }
  return { from: iso(options.from), to: iso(options.to), evidence: options.verifiedThrough ? 'verified' : 'unverified', attestEveryMs: options.attestEveryMs, toleranceMs, streams: reports, unreadable };
}

/** Per stream, the spans over which attestations followed each other within the tolerance. */
async function attestedSpans(options: CoverageOptions, toleranceMs: number, include: (stream: string) => boolean): Promise<Map<string, { from: number; to: number }[]>> {
  const spans = new Map<string, { from: number; to: number }[]>();
  if (!options.attestations) return spans;
  for await (const attestation of options.attestations) {
    const at = Date.parse(attestation.time);
    if (Number.isNaN(at) || at < options.from - toleranceMs || at > options.to) continue;
    for (const { stream } of attestation.streams) {
      // Names come from a signed object of the archive, still checked like any stream name.
      if (!isStreamName(stream) || !include(stream)) continue;
      let list = spans.get(stream);
      if (!list) spans.set(stream, (list = []));
      const last = list.at(-1);
      if (last && at >= last.from && at - last.to <= toleranceMs) last.to = Math.max(last.to, at);
      else list.push({ from: at, to: at });
    }
  }
  // Several hosts (or keys) may attest one stream: their spans are sorted and merged.
  for (const [stream, list] of spans) {
    list.sort((a, b) => a.from - b.from);
    const merged: { from: number; to: number }[] = [];
    for (const span of list) {
      const last = merged.at(-1);
      if (last && span.from - last.to <= toleranceMs) last.to = Math.max(last.to, span.to);
      else merged.push({ ...span });
    }
    spans.set(stream, merged);
  }
  return spans;
}

async function hasStream(sink: Sink, stream: string): Promise<boolean> {
  try {
    return (await sink.head(stream)).seq > 0;
  } catch {
    return false;
  }
}

/** The record in `bytes` if it is one, of this stream; `undefined` for damaged bytes. */
function readRecord(bytes: Uint8Array, stream: string): ArchiveRecord | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'));
    validateRecord(value);
    return value.stream === stream ? value : undefined;
  } catch {
    return undefined;
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
