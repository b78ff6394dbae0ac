import { createHash } from 'node:crypto';
import path from 'node:path';
import { type Party, type Sink, parseStreamName } from '@offchannel/core';
import type { ArchiveIndex, ConversationSummary } from './index-db/archive-index.ts';
import type { CheckpointRef } from './rsmf/rsmf-slice.ts';
import type { WrittenFile } from './written-file.ts';

/** What every format writer gets: the verified archive, its index, the selection and where to write. */
export interface ExportJob {
  readonly sink: Sink;
  readonly index: ArchiveIndex;
  /** Output directory (exists, was empty). */
  readonly out: string;
  /** The export's private working directory (0700, beside `out`, removed at the end): for temporary files. */
  readonly temp: string;
  readonly conversations: readonly ConversationSummary[];
  /** `sortableTime` bounds: from inclusive, to exclusive. */
  readonly range: { readonly from?: string; readonly to?: string };
  /** Newest verified signed checkpoint per stream (absent: none verified). */
  readonly checkpoints: ReadonlyMap<string, CheckpointRef>;
  /** One-line verification outcome per stream, for the human-readable formats. */
  readonly verificationLines: (stream: string) => readonly string[];
  readonly generator: string;
  readonly emlMode: 'message' | 'day';
  /** EML: per stream, the first seq whose e-mails are written (see `ExportOptions.emlFromSeq`). */
  readonly emlFromSeq: ReadonlyMap<string, number>;
  /** Records a file written (for SHA256SUMS and the summary). */
  readonly written: (file: WrittenFile) => void;
  readonly progress: (phase: string, done: number, total?: number) => void;
}

export function channelOf(stream: string): string {
  return parseStreamName(stream).channel;
}

export function accountOf(stream: string): string {
  return parseStreamName(stream).account;
}

/** Deterministic, file-system-safe base name for a conversation's files. */
export function conversationFileName(conversation: ConversationSummary): string {
  const label = conversation.id === undefined ? 'account-events' : (conversation.title ?? conversation.id);
  const safe = (text: string, max: number): string =>
    text
      .normalize('NFKD')
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^[._]+|_+$/g, '')
      .slice(0, max) || 'x';
  return `${safe(conversation.stream.replace(':', '_'), 60)}--${safe(label, 40)}--${createHash('sha256').update(conversation.key).digest('hex')}`;
}

/** Stable id linking every file of one conversation (RSMF `eventcollectionid`). */
export function collectionId(conversation: ConversationSummary): string {
  return createHash('sha256').update(`offchannel-conversation\n${conversation.key}`).digest('hex');
}

/** Everyone who appears in the conversation's selected records (senders, members, reactors), by first appearance. */
export function conversationParties(job: ExportJob, conversation: ConversationSummary): Party[] {
  const parties = new Map<string, Party>();
  const see = (party: Party | undefined): void => {
    if (party) parties.set(party.id, { ...parties.get(party.id), ...party });
  };
  for (const entry of job.index.events(conversation.key, job.range.from, job.range.to)) {
    see(entry.record.sender);
    for (const member of entry.record.membership?.members ?? []) see(member);
    if (entry.record.kind === 'message') for (const modifier of job.index.modifiersOf(entry)) see(modifier.record.sender);
  }
  return [...parties.values()];
}

/** The custodian's own party id in a conversation: who sent its outbound records, else the account name. */
export function custodianId(job: ExportJob, conversation: ConversationSummary): string {
  // An index lookup: a conversation the custodian never wrote in is not read through.
  return job.index.firstOutboundSender(conversation.key) ?? accountOf(conversation.stream);
}

export function relative(job: ExportJob, file: string): string {
  return path.relative(job.out, file).split(path.sep).join('/');
}
