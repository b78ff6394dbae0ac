/**
 * One RSMF 2.0 manifest: a slice of one conversation (Relativity recommends at most 10,000
 * events per file). Maps transcript events to RSMF as follows:
 * - participants: every party seen (senders, editors, reactors, members), `display` = the
 *   newest name, `email` when the platform id is an e-mail address, aliases in `custom`;
 *   the custodian is the party who sent the conversation's outbound messages, else the account
 *   (`custodianId` in export-job.ts, decided once per conversation: every slice and the HTML
 *   transcript name the same one).
 * - conversation: `direct` for one-to-one, `channel` for groups and broadcast channels;
 *   `platform` = the channel (`whatsapp`, `signal`…).
 * - events: `message` with `body` = the text as last edited, `edits[]` (previous → new, the
 *   original text is the first `previous`), `deleted: true` with the body kept, `reactions`
 *   in force at the end, `read_receipts`, `parent` for replies, `direction`; `join`/`leave`;
 *   everything else `unknown` with a description as body.
 * - provenance in `custom[]` of every event: stream, seq, record SHA-256, the latest signed
 *   checkpoint covering it, and the stream/seq/SHA-256 of every edit, deletion and reaction
 *   record folded into it — so a reviewer can prove any line with `offchannel prove`.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Party } from '@offchannel/core';
import { SpoolFile } from '../spool-file.ts';
import { plainEventParts } from '../text/plain-transcript.ts';
import { type ConversationSummary } from '../index-db/archive-index.ts';
import type { TranscriptAttachment, TranscriptEvent } from '../model/transcript-event.ts';
import { displayName } from '../model/attachment-file-name.ts';
import { partyName } from '../model/transcript-events.ts';

export interface RsmfCustom {
  readonly name: string;
  readonly value: string;
}

/** The signed checkpoint a stream's records are proven against, if any. */
export interface CheckpointRef {
  readonly size: number;
  readonly root: string;
  readonly signedBy: string;
  /** The signed note itself, read again after verification and checked to be the one verified. */
  readonly note: string;
}

export interface RsmfManifest {
  readonly version: '2.0.0';
  readonly eventcollectionid: string;
  readonly participants: readonly Record<string, unknown>[];
  readonly conversations: readonly Record<string, unknown>[];
  readonly events: readonly Record<string, unknown>[];
}

export const RSMF_MAX_EVENTS = 10_000;

export interface RsmfSliceOptions {
  readonly conversation: ConversationSummary;
  readonly channel: string;
  readonly account: string;
  readonly custodianId: string;
  readonly checkpoint: CheckpointRef | undefined;
  readonly collectionId: string;
  /** Where the slice's events are spooled (the export's private working directory). */
  readonly dir: string;
}

/** What `JSON.stringify({ events: [event] }, null, 2)` puts around the event's (indented) lines. */
const EVENT_PREFIX = '{\n  "events": [\n';
const EVENT_SUFFIX = '\n  ]\n}';

/** Spooled files are read back in whole base64 lines (57 bytes encode to 76 characters). */
export const SPOOL_CHUNK = 57 * 4096;

/**
 * One slice as it is built: each event is mapped when added and spooled to two temporary files
 * (its manifest JSON, its plain-text transcript block); only the participants, the attachment
 * list and counters stay in memory, so a 10,000-event slice costs what one event does.
 */
export class RsmfSlice {
  readonly conversation: ConversationSummary;
  readonly channel: string;
  readonly account: string;
  readonly checkpoint: CheckpointRef | undefined;
  readonly collectionId: string;
  readonly custodianId: string;
  readonly #parties = new Map<string, Party>();
  readonly #attachments = new Map<string, TranscriptAttachment>();
  readonly #manifestEvents: SpoolFile;
  readonly #transcript: SpoolFile;
  #count = 0;
  #attachmentCount = 0;
  #firstAt: string | undefined;
  #lastAt: string | undefined;
  #firstId: string | undefined;

  private constructor(options: RsmfSliceOptions, manifestEvents: SpoolFile, transcript: SpoolFile) {
    this.conversation = options.conversation;
    this.custodianId = options.custodianId;
    this.channel = options.channel;
    this.account = options.account;
    this.checkpoint = options.checkpoint;
    this.collectionId = options.collectionId;
    this.#manifestEvents = manifestEvents;
    this.#transcript = transcript;
  }

  static async create(options: RsmfSliceOptions): Promise<RsmfSlice> {
    const id = randomBytes(8).toString('hex');
    const events = await SpoolFile.create(path.join(options.dir, `rsmf-${id}-events.json`));
    try {
      return new RsmfSlice(options, events, await SpoolFile.create(path.join(options.dir, `rsmf-${id}-transcript.txt`)));
    } catch (error) {
      await events.remove();
      throw error;
    }
  }

  get count(): number {
    return this.#count;
  }

  get full(): boolean {
    return this.#count >= RSMF_MAX_EVENTS;
  }

  get firstAt(): string {
    return this.#firstAt ?? this.conversation.firstAt;
  }

  get lastAt(): string {
    return this.#lastAt ?? this.conversation.lastAt;
  }

  /** Id of the slice's first event. */
  get firstId(): string {
    return this.#firstId ?? '';
  }

  /** Stored attachments of all events, counted once per event (`X-RSMF-AttachmentCount`). */
  get attachmentCount(): number {
    return this.#attachmentCount;
  }

  add(event: TranscriptEvent): void {
    this.#see(event.sender);
    for (const member of event.record.membership?.members ?? []) this.#see(member);
    for (const change of [...event.edits, ...event.deletions, ...event.reactions, ...event.receipts]) this.#see(change.by);
    for (const attachment of event.attachments) {
      if (!attachment.fileName) continue;
      this.#attachmentCount += 1;
      if (!this.#attachments.has(attachment.fileName)) this.#attachments.set(attachment.fileName, attachment);
    }
    // Formatted exactly as JSON.stringify(manifest, null, 2) formats an element of `events`: the
    // event stringified at that depth (its lines indented by four spaces), without the wrapper.
    const json = JSON.stringify({ events: [this.#event(event, this.conversation.key)] }, null, 2).slice(EVENT_PREFIX.length, -EVENT_SUFFIX.length);
    this.#manifestEvents.append(this.#count === 0 ? json : `,\n${json}`);
    const [heading, rest] = plainEventParts(event);
    this.#transcript.append(this.#count === 0 ? heading : `\n${heading}`);
    this.#transcript.append(rest);
    this.#count += 1;
    this.#firstAt ??= event.at;
    this.#firstId ??= event.id;
    this.#lastAt = event.at;
  }

  #see(party: Party | undefined): void {
    if (party) this.#parties.set(party.id, { ...this.#parties.get(party.id), ...party });
  }

  /** Stored attachments of the slice, once each, in order of first appearance. */
  attachments(): TranscriptAttachment[] {
    return [...this.#attachments.values()];
  }

  /** `rsmf_manifest.json`, in chunks: the same bytes as `JSON.stringify(manifest, null, 2)` and a newline. */
  async *manifest(): AsyncGenerator<string | Uint8Array> {
    const head = JSON.stringify({ ...this.#manifestHead(), events: [] }, null, 2);
    yield `${head.slice(0, -'[]\n}'.length)}[\n`;
    yield* this.#manifestEvents.chunks(SPOOL_CHUNK);
    yield '\n  ]\n}\n';
  }

  /** The plain-text transcript of the slice's events, in chunks of whole base64 lines. */
  transcript(): AsyncGenerator<Uint8Array> {
    return this.#transcript.chunks(SPOOL_CHUNK);
  }

  /** Deletes the spooled files. */
  async remove(): Promise<void> {
    await this.#manifestEvents.remove();
    await this.#transcript.remove();
  }

  participants(): Party[] {
    const parties = new Map(this.#parties);
    if (!parties.has(this.custodianId)) parties.set(this.custodianId, { id: this.custodianId, name: this.account });
    return [...parties.values()];
  }

  get title(): string {
    const { conversation } = this;
    if (conversation.id === undefined) return `Account events of ${conversation.stream}`;
    if (conversation.title) return conversation.title;
    const others = this.participants().filter((party) => party.id !== this.custodianId);
    return others.length > 0 ? others.map(partyName).join(', ') : conversation.id;
  }

  #manifestHead(): Omit<RsmfManifest, 'events'> {
    const conversationId = this.conversation.key;
    return {
      version: '2.0.0',
      eventcollectionid: this.collectionId,
      participants: this.participants().map((party) => ({
        id: party.id,
        display: partyName(party),
        ...(/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(party.id) ? { email: party.id } : {}),
        ...(party.aliases && party.aliases.length > 0 ? { custom: party.aliases.map((alias) => ({ name: 'alias', value: alias })) } : {}),
      })),
      conversations: [
        {
          id: conversationId,
          display: this.title,
          platform: this.channel,
          type: this.conversation.type === 'direct' ? 'direct' : 'channel',
          participants: this.participants().map((party) => party.id),
          custodian: this.custodianId,
          custom: nonEmpty([
            { name: 'offchannel.stream', value: this.conversation.stream },
            { name: 'offchannel.conversation_id', value: this.conversation.id ?? '' },
            { name: 'offchannel.conversation_type', value: this.conversation.type ?? 'account' },
          ]),
        },
      ],
    };
  }

  #event(event: TranscriptEvent, conversation: string): Record<string, unknown> {
    const stored = event.attachments.filter((attachment) => attachment.fileName !== undefined);
    return {
      id: event.id,
      type: event.type === 'notice' ? 'unknown' : event.type,
      ...(event.parent ? { parent: event.parent } : {}),
      body: event.type === 'message' ? (event.currentText ?? '') : (event.notice ?? ''),
      ...(event.sender ? { participant: event.sender.id } : {}),
      conversation,
      timestamp: event.at,
      ...(event.deletions.length > 0 ? { deleted: true } : {}),
      ...(event.reactionState.length > 0 ? { reactions: event.reactionState.map((reaction) => ({ value: reaction.value, count: reaction.participants.length, participants: reaction.participants.map((party) => party.id) })) } : {}),
      ...(stored.length > 0 ? { attachments: stored.map((attachment) => ({ id: attachment.fileName, display: attachment.label, size: attachment.size })) } : {}),
      ...(event.edits.length > 0 ? { edits: event.edits.map((edit) => ({ participant: edit.by?.id ?? event.sender?.id ?? 'unknown', timestamp: edit.at, previous: edit.previous ?? '', new: edit.text ?? '' })) } : {}),
      ...(event.direction ? { direction: event.direction === 'outbound' ? 'outgoing' : 'incoming' } : {}),
      ...(event.receipts.some((receipt) => receipt.status !== 'played') ? { read_receipts: event.receipts.filter((receipt) => receipt.status !== 'played').map((receipt) => ({ participant: receipt.by?.id ?? 'unknown', timestamp: receipt.at, action: receipt.status })) } : {}),
      custom: this.#provenance(event),
    };
  }

  #provenance(event: TranscriptEvent): RsmfCustom[] {
    const proof = (seq: number): string => (this.checkpoint && seq <= this.checkpoint.size ? `size ${this.checkpoint.size} root ${this.checkpoint.root} signed by ${this.checkpoint.signedBy}` : 'not yet covered by a signed checkpoint');
    const custom: RsmfCustom[] = [
      { name: 'offchannel.stream', value: event.stream },
      { name: 'offchannel.seq', value: String(event.seq) },
      { name: 'offchannel.record_sha256', value: event.hash },
      { name: 'offchannel.kind', value: event.record.kind },
      { name: 'offchannel.checkpoint', value: proof(event.seq) },
      { name: 'offchannel.native_id', value: event.record.native?.id ?? '' },
      { name: 'offchannel.forwarded', value: event.forwarded ? 'true' : '' },
      { name: 'offchannel.reply_to_missing', value: event.replyToMissing?.id ?? '' },
    ];
    event.edits.forEach((edit, index) => custom.push({ name: `offchannel.edit.${index + 1}`, value: `${edit.id} sha256 ${edit.hash}` }));
    event.deletions.forEach((deletion, index) => custom.push({ name: `offchannel.deletion.${index + 1}`, value: `${deletion.id} sha256 ${deletion.hash} scope ${deletion.scope}${deletion.admin ? ' admin' : ''} by ${deletion.by?.id ?? 'unknown'} at ${deletion.at}` }));
    event.reactions.forEach((reaction, index) => custom.push({ name: `offchannel.reaction.${index + 1}`, value: `${reaction.id} sha256 ${reaction.hash} ${reaction.action} ${reaction.value} by ${reaction.by?.id ?? 'unknown'} at ${reaction.at}` }));
    event.receipts.forEach((receipt, index) => custom.push({ name: `offchannel.receipt.${index + 1}`, value: `${receipt.id} sha256 ${receipt.hash} ${receipt.status} by ${receipt.by?.id ?? 'unknown'} at ${receipt.at}` }));
    event.attachments
      .filter((attachment) => attachment.status === 'unavailable')
      .forEach((attachment, index) => custom.push({ name: `offchannel.attachment_unavailable.${index + 1}`, value: [attachment.reason, attachment.name === undefined ? undefined : attachment.label, attachment.mime === undefined ? undefined : displayName(attachment.mime)].filter(Boolean).join('; ') }));
    event.attachments
      .filter((attachment) => attachment.status === 'stored')
      .forEach((attachment, index) => custom.push({ name: `offchannel.attachment.${index + 1}`, value: `${attachment.fileName ?? ''} sha256 ${attachment.sha256 ?? ''} ${displayName(attachment.mime ?? '')}${attachment.addedBy ? ` added by ${attachment.addedBy}` : ''}` }));
    return nonEmpty(custom);
  }
}

/** RSMF `custom` values must be non-empty strings: drop the empty ones. */
function nonEmpty(custom: readonly RsmfCustom[]): RsmfCustom[] {
  return custom.filter((entry) => entry.value !== '');
}
