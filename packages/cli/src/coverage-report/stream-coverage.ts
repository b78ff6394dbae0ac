/**
 * The coverage of one stream over a period, built by feeding it the stream's records in `seq`
 * order and the host's attestations of it, once each. Holds a few numbers per day and per gap,
 * never the records (1,000 streams × 30 days fit in a few MB).
 *
 * How a gap is found (docs/coverage.md explains each cause for a compliance officer):
 * - **State records** (`capture-*` from `offchannel capture`, `connector-*` transitions, the
 *   connectors' own `logged-out` / `device-unlinked`) open a gap with their cause and close
 *   it on `capture-started` or `connector-connected`.
 * - **Process down**: a `capture-started` of a new run while the previous run never recorded
 *   `capture-stopped` means the process ended without stopping (crash, kill, power loss). The
 *   gap runs from the last evidence of the old run to the new start. When the stream is
 *   attested, silence (no record, no attestation) longer than the tolerance is a gap too, also
 *   at the end of the period.
 * - **Platform-reported loss**: each `gap` record, with its reason, window and count; what
 *   reconciliation did about it comes from the `gap-backfilled` / `gap-not-recovered` records
 *   that name the gap record's key (`fields.gap`).
 * Coverage starts at the stream's first evidence: an account not yet captured has no gap.
 */
import type { ArchiveRecord } from '@offchannel/core';

export type GapCause = 'process down' | 'disconnected' | 'logged out' | 'unlinked' | 'failed' | 'platform-reported loss';

export interface CoverageGap {
  /** Start and end, ISO 8601 UTC, clipped to the period. */
  readonly from: string;
  readonly to: string;
  readonly cause: GapCause;
  /** The state event or platform reason behind it, e.g. `capture-logged-out (CONNECTOR_LOGGED_OUT)`. */
  readonly detail: string;
  /** Still open at the end of the period. */
  readonly open?: true;
  /** `gap` records: the platform's positions, the count it announced missing, the record's seq. */
  readonly positions?: { readonly from?: string; readonly to?: string };
  readonly missing?: number;
  readonly seq?: number;
  /**
   * `gap` records: what reconciliation did about it — from the `gap-backfilled` records naming
   * this gap (`"3 recovered (fetchMessageHistory)"`), or the last `gap-not-recovered` one
   * (`"not recovered: phone-did-not-answer (attempt 1)"`), or the gap's own `meta.recovered`.
   */
  readonly recovered?: string;
}

export interface DailyCounts {
  /** UTC day of the records' `capturedAt`, `YYYY-MM-DD`. */
  readonly day: string;
  messages: number;
  edits: number;
  deletes: number;
  /** Events the capture policy did not store (`conversation-excluded` counts). */
  excluded: number;
  undecryptable: number;
  unsupported: number;
  /** Gaps starting that day, of any cause. */
  gaps: number;
  /** Records reconciliation added (history fetch, sweeps). */
  recovered: number;
  /** Reactions, receipts, memberships, state and policy records. */
  other: number;
}

export interface StreamCoverageReport {
  readonly stream: string;
  readonly channel: string;
  readonly account: string;
  /** The period covered for this stream: from its first evidence (or the period start) to the end. */
  readonly from: string;
  readonly to: string;
  /** No gap in the period. */
  readonly covered: boolean;
  /**
   * Where the stream stood at the end of the period: `live`, a gap cause, `not captured yet`
   * (no evidence up to the end: the account was added later), or `unverified` (with --key: the
   * stream has records but none under a verified signed checkpoint; never covered).
   */
  readonly state: string;
  /** Whether host attestations of this stream were found (liveness between records). */
  readonly attested: boolean;
  readonly liveMs: number;
  readonly live: readonly { readonly from: string; readonly to: string }[];
  readonly gaps: readonly CoverageGap[];
  readonly daily: readonly DailyCounts[];
  /** Records read as evidence (with --key: only those under a verified checkpoint). */
  readonly records: number;
  readonly lastEvidenceAt?: string;
  /** How this channel can look back after a gap, when it cannot (Signal) or how it does. */
  readonly reconciliation?: string;
}

/** What reconciliation can do per channel, for the report (a channel not listed: see its docs). */
export const RECONCILIATION: Readonly<Record<string, string>> = {
  signal: 'not possible: Signal gives a linked device no message history; a gap cannot be recovered by offchannel',
  telegram: 'history fetch (messages.getHistory): offchannel reconcile telegram, or scheduled in capture',
  whatsapp: 'on-demand history fetch from the phone (fetchMessageHistory) for each offline-count gap: offchannel reconcile whatsapp, or by capture after each gap and hourly; needs the phone online',
  imessage: 'chat.db sweep: offchannel reconcile imessage, or by the relay after each start and hourly',
};

/**
 * State events: what each one means for coverage (`live`, or the cause of a gap).
 * `connector-stopped` is not one: the supervisor's record beside it says why (stopped, logged
 * out, restarting).
 */
const STATE_EVENTS: Readonly<Record<string, GapCause | 'live'>> = {
  'capture-started': 'live',
  'connector-connected': 'live',
  'capture-stopped': 'process down',
  'capture-restarting': 'disconnected',
  'connector-disconnected': 'disconnected',
  'connector-reconnecting': 'disconnected',
  'connector-replaced': 'disconnected',
  'capture-logged-out': 'logged out',
  'connector-logged-out': 'logged out',
  'connector-banned': 'logged out',
  'logged-out': 'logged out',
  'capture-not-linked': 'unlinked',
  'device-unlinked': 'unlinked',
  'capture-failed': 'failed',
};

type State = { readonly kind: 'unknown' } | { readonly kind: 'live'; readonly since: number } | { readonly kind: 'down'; readonly since: number; readonly cause: GapCause; readonly detail: string };

export class StreamCoverage {
  readonly stream: string;
  readonly #from: number;
  readonly #to: number;
  readonly #toleranceMs: number;
  #attested = false;
  #state: State = { kind: 'unknown' };
  #firstEvidence: number | undefined;
  #lastAlive = Number.NEGATIVE_INFINITY;
  #run: string | undefined;
  #runStopped = false;
  #records = 0;
  #channel: string | undefined;
  #account: string | undefined;
  readonly #gaps: CoverageGap[] = [];
  /** Platform gaps by their record's key, and records recovered for each (from `gap-backfilled`). */
  readonly #gapByKey = new Map<string, { readonly gap: CoverageGap; recorded: number }>();
  readonly #live: { from: number; to: number }[] = [];
  readonly #daily = new Map<string, DailyCounts>();

  /** `toleranceMs`: silence longer than this, on an attested stream, is a `process down` gap. */
  constructor(stream: string, period: { readonly from: number; readonly to: number }, toleranceMs: number) {
    this.stream = stream;
    this.#from = period.from;
    this.#to = period.to;
    this.#toleranceMs = toleranceMs;
  }

  /** The host attested this stream continuously from `from` to `to` (ms); call in time order with records. */
  attested(from: number, to: number): void {
    this.#attested = true;
    this.#alive(from);
    this.#lastAlive = Math.max(this.#lastAlive, to);
  }

  /** Whether attestations were seen before the next record: decides tail silence too. */
  get isAttested(): boolean {
    return this.#attested;
  }

  /** Feeds the next record (in seq order). */
  record(record: ArchiveRecord): void {
    const at = Date.parse(record.capturedAt);
    if (Number.isNaN(at)) return;
    this.#channel ??= record.channel;
    this.#account ??= record.account;
    if (at <= this.#to) this.#records++;
    const event = record.kind === 'system' ? record.system?.event : undefined;
    const run = event?.startsWith('capture-') ? record.system?.fields?.run : undefined;
    if (event === 'capture-started' && run !== undefined && this.#run !== undefined && run !== this.#run && !this.#runStopped) {
      // The previous process never said it stopped: it died after its last sign of life.
      this.#crashed(at);
    }
    this.#alive(at);
    if (run !== undefined) {
      if (run !== this.#run) this.#runStopped = false;
      this.#run = run;
    }
    if (event === 'capture-stopped') this.#runStopped = true;
    const meaning = event === undefined ? undefined : STATE_EVENTS[event];
    if (meaning === 'live') this.#goLive(at);
    else if (meaning !== undefined) this.#goDown(at, meaning, describeEvent(record));
    if (record.kind === 'gap') this.#platformGap(record, at);
    if (event === 'gap-backfilled' || event === 'gap-not-recovered') this.#reconciled(record, event);
    this.#count(record, at);
  }

  /** The report, with gaps still open at the end of the period closed there. */
  finish(): StreamCoverageReport {
    const end = this.#to;
    if (this.#state.kind === 'live' && this.#attested && end - this.#lastAlive > this.#toleranceMs) {
      this.#goDown(this.#lastAlive, 'process down', `no attestation or record since ${iso(this.#lastAlive)}`);
    }
    const state = this.#state;
    if (state.kind === 'live') this.#pushLive(state.since, end);
    if (state.kind === 'down') this.#pushGap({ from: state.since, to: end, cause: state.cause, detail: state.detail, open: true });
    const gaps = this.#gaps.sort((a, b) => a.from.localeCompare(b.from));
    for (const gap of gaps) this.#day(Date.parse(gap.from)).gaps++;
    const [channel, account] = this.#channel === undefined ? splitStream(this.stream) : [this.#channel, this.#account];
    const start = this.#firstEvidence === undefined ? this.#from : Math.max(this.#from, this.#firstEvidence);
    return {
      stream: this.stream,
      channel,
      account: account ?? '',
      from: iso(Math.min(start, end)),
      to: iso(end),
      covered: gaps.length === 0,
      state: state.kind === 'unknown' ? 'not captured yet' : state.kind === 'live' ? 'live' : state.cause,
      attested: this.#attested,
      liveMs: this.#live.reduce((sum, span) => sum + (span.to - span.from), 0),
      live: this.#live.map((span) => ({ from: iso(span.from), to: iso(span.to) })),
      gaps,
      daily: [...this.#daily.values()].sort((a, b) => a.day.localeCompare(b.day)),
      records: this.#records,
      ...(Number.isFinite(this.#lastAlive) ? { lastEvidenceAt: iso(Math.min(this.#lastAlive, end)) } : {}),
      ...(RECONCILIATION[channel] === undefined ? {} : { reconciliation: RECONCILIATION[channel] }),
    };
  }

  /** Evidence that the capture process was alive at `at`. */
  #alive(at: number): void {
    this.#firstEvidence ??= at;
    const state = this.#state;
    if (state.kind === 'unknown') this.#state = { kind: 'live', since: at };
    else if (state.kind === 'live' && this.#attested && at - this.#lastAlive > this.#toleranceMs) {
      this.#goDown(this.#lastAlive, 'process down', `no attestation or record for ${Math.round((at - this.#lastAlive) / 1000)}s`);
      this.#goLive(at);
    }
    this.#lastAlive = Math.max(this.#lastAlive, at);
  }

  #crashed(at: number): void {
    const since = Math.min(this.#lastAlive, at);
    const detail = 'the capture process ended without recording capture-stopped (crash, kill or power loss)';
    const state = this.#state;
    if (state.kind === 'live') this.#goDown(since, 'process down', detail);
    // Already in a gap (logged out, disconnected…): the stream was not captured either way.
  }

  #goLive(at: number): void {
    const state = this.#state;
    if (state.kind === 'live') return;
    if (state.kind === 'down') this.#pushGap({ from: state.since, to: at, cause: state.cause, detail: state.detail });
    this.#state = { kind: 'live', since: at };
  }

  #goDown(at: number, cause: GapCause, detail: string): void {
    const state = this.#state;
    if (state.kind === 'down') {
      if (state.cause === cause) return;
      this.#pushGap({ from: state.since, to: at, cause: state.cause, detail: state.detail });
    } else if (state.kind === 'live') this.#pushLive(state.since, at);
    this.#state = { kind: 'down', since: at, cause, detail };
  }

  #platformGap(record: ArchiveRecord, at: number): void {
    const gap = record.gap;
    if (!gap) return;
    const from = isoInstant(gap.from) ?? at;
    const to = Math.max(from, isoInstant(gap.to) ?? at);
    const recovered = record.meta?.recovered;
    const before = this.#gaps.length;
    this.#pushGap({
      from,
      to,
      cause: 'platform-reported loss',
      detail: gap.reason,
      ...(gap.from === undefined && gap.to === undefined ? {} : { positions: { ...(gap.from === undefined ? {} : { from: gap.from }), ...(gap.to === undefined ? {} : { to: gap.to }) } }),
      ...(gap.missing === undefined ? {} : { missing: gap.missing }),
      seq: record.seq,
      ...(recovered === undefined ? {} : { recovered: String(recovered) }),
    });
    const pushed = this.#gaps.length > before ? this.#gaps.at(-1) : undefined;
    if (pushed) this.#gapByKey.set(record.key, { gap: pushed, recorded: 0 });
  }

  /** A reconciliation outcome for the gap record whose key it names. */
  #reconciled(record: ArchiveRecord, event: 'gap-backfilled' | 'gap-not-recovered'): void {
    const fields = record.system?.fields ?? {};
    const entry = fields['gap'] === undefined ? undefined : this.#gapByKey.get(fields['gap']);
    if (!entry) return;
    const index = this.#gaps.indexOf(entry.gap);
    if (index < 0) return;
    let recovered: string;
    if (event === 'gap-backfilled') {
      const n = Number(fields['recorded']);
      entry.recorded += Number.isSafeInteger(n) && n >= 0 ? n : 0;
      // WhatsApp: messages in chats the limits left unasked at this attempt (asked at a later one).
      const notAsked = Number(fields['notAsked']);
      const unasked = Number.isSafeInteger(notAsked) && notAsked > 0 ? `; ${notAsked} messages in chats not asked` : '';
      recovered = `${entry.recorded} recovered (${fields['method'] ?? 'reconciliation'}${fields['reason'] === undefined ? '' : `, partial: ${fields['reason']}`}${unasked})`;
    } else {
      if (entry.recorded > 0) return;
      recovered = `not recovered: ${fields['reason'] ?? 'unknown'}${fields['attempt'] === undefined ? '' : ` (attempt ${fields['attempt']})`}`;
    }
    const updated = { ...entry.gap, recovered };
    this.#gaps[index] = updated;
    this.#gapByKey.set(fields['gap'] as string, { gap: updated, recorded: entry.recorded });
  }

  #pushGap(gap: Omit<CoverageGap, 'from' | 'to'> & { readonly from: number; readonly to: number }): void {
    const from = Math.max(gap.from, this.#from);
    const to = Math.min(gap.to, this.#to);
    // A loss the platform reported at one instant is kept as a zero-length gap; other gaps must overlap the period.
    if (from > to || (from === to && gap.cause !== 'platform-reported loss')) return;
    // One outage seen twice (an attestation, stamped to the second, just before the new
    // process's capture-started) stays one gap.
    const last = this.#gaps.at(-1);
    if (last && last.cause === gap.cause && gap.cause !== 'platform-reported loss' && Date.parse(last.to) >= from) {
      this.#gaps[this.#gaps.length - 1] = { ...last, to: iso(Math.max(Date.parse(last.to), to)), detail: last.detail === gap.detail ? last.detail : `${gap.detail}; ${last.detail}` };
      return;
    }
    this.#gaps.push({ ...gap, from: iso(from), to: iso(to) });
  }

  #pushLive(fromMs: number, toMs: number): void {
    const from = Math.max(fromMs, this.#from);
    const to = Math.min(toMs, this.#to);
    if (from >= to) return;
    const last = this.#live.at(-1);
    if (last && last.to >= from) last.to = Math.max(last.to, to);
    else this.#live.push({ from, to });
  }

  #count(record: ArchiveRecord, at: number): void {
    if (at < this.#from || at > this.#to) return;
    const day = this.#day(at);
    if (isRecovered(record)) day.recovered++;
    switch (record.kind) {
      case 'message':
        day.messages++;
        break;
      case 'edit':
        day.edits++;
        break;
      case 'delete':
        day.deletes++;
        break;
      case 'undecryptable':
        day.undecryptable++;
        break;
      case 'unsupported':
        day.unsupported++;
        break;
      case 'gap':
        break;
      case 'policy': {
        const count = record.system?.event === 'conversation-excluded' ? Number(record.system.fields?.count) : Number.NaN;
        if (Number.isSafeInteger(count) && count > 0) day.excluded += count;
        else day.other++;
        break;
      }
      default:
        day.other++;
    }
  }

  #day(at: number): DailyCounts {
    const key = iso(at).slice(0, 10);
    let day = this.#daily.get(key);
    if (!day) {
      day = { day: key, messages: 0, edits: 0, deletes: 0, excluded: 0, undecryptable: 0, unsupported: 0, gaps: 0, recovered: 0, other: 0 };
      this.#daily.set(key, day);
    }
    return day;
  }
}

/**
 * A record reconciliation added rather than live delivery: the connectors mark them
 * `meta.recoveredBy` (any sweep or history fetch), `meta.detectedBy: "reconcile"` or, for
 * Telegram's history fetch, `meta.source: "messages.getHistory"`.
 */
export function isRecovered(record: ArchiveRecord): boolean {
  const meta = record.meta;
  if (!meta) return false;
  return typeof meta.recoveredBy === 'string' || meta.detectedBy === 'reconcile' || meta.source === 'messages.getHistory';
}

function describeEvent(record: ArchiveRecord): string {
  const fields = record.system?.fields ?? {};
  const why = fields.code ?? fields.reason;
  return `${record.system?.event ?? record.kind}${why === undefined ? '' : ` (${why})`}`;
}

/** A gap record's `from` / `to` when it is an ISO 8601 UTC instant (platform positions are not). */
function isoInstant(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

function splitStream(stream: string): [string, string] {
  const at = stream.indexOf(':');
  return at < 0 ? [stream, ''] : [stream.slice(0, at), stream.slice(at + 1)];
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
