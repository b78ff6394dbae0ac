import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ConversationSummary, ArchiveIndex } from '../index-db/archive-index.ts';
import { accountOf, channelOf, collectionId, conversationFileName, custodianId, type ExportJob } from '../export-job.ts';
import { transcriptEvents } from '../model/transcript-events.ts';
import type { BlobSource } from '../verified-blob.ts';
import type { WrittenFile } from '../written-file.ts';
import { type CheckpointRef, RsmfSlice } from './rsmf-slice.ts';
import { RsmfWorker } from './rsmf-worker-thread.ts';
import { writeRsmf } from './write-rsmf.ts';

/** What writing one conversation's RSMF files needs, on the main thread or in the RSMF worker thread. */
export interface RsmfContext {
  readonly index: ArchiveIndex;
  readonly blobs: BlobSource;
  /** `<out>/rsmf`. */
  readonly dir: string;
  readonly temp: string;
  readonly range: ExportJob['range'];
  readonly checkpoints: ReadonlyMap<string, CheckpointRef>;
  readonly generator: string;
  readonly written: (file: WrittenFile) => void;
  /** Called after each event written; throws to stop (an abort). */
  readonly event: () => void;
}

/**
 * `rsmf/<conversation>-<part>.rsmf`: one file per conversation, split every 10,000 events.
 * Conversations are written by two threads when the machine has two cores — this one and an
 * RSMF worker thread (rsmf-worker-thread.ts) — each taking the largest conversation left. A
 * conversation's files depend on that conversation alone, so they are the same bytes whichever
 * thread writes them.
 */
export async function exportRsmf(job: ExportJob): Promise<number> {
  const dir = path.join(job.out, 'rsmf');
  await mkdir(dir, { recursive: true });
  let events = 0;
  let helperError: unknown;
  const count = (added: number): void => {
    const before = events;
    events += added;
    if (Math.floor(events / 1000) > Math.floor(before / 1000)) job.progress('rsmf', events);
  };
  const context: RsmfContext = {
    index: job.index,
    blobs: job.sink,
    dir,
    temp: job.temp,
    range: job.range,
    checkpoints: job.checkpoints,
    generator: job.generator,
    written: job.written,
    event: () => {
      if (helperError !== undefined) throw helperError;
      count(1);
    },
  };
  const queue = [...job.conversations].sort((a, b) => b.records - a.records);
  const take = (): ConversationSummary | undefined => (helperError === undefined ? queue.shift() : undefined);
  const helper = queue.length > 1 ? RsmfWorker.start(job, dir) : undefined;
  const helped = helper?.run(take, count).catch((error: unknown) => {
    helperError ??= error;
  });
  try {
    for (let conversation = take(); conversation; conversation = take()) {
      await exportConversationRsmf(context, conversation);
      job.progress('rsmf', events);
    }
    await helped;
    if (helperError !== undefined) throw helperError;
  } catch (error) {
    await helper?.stop();
    throw error;
  }
  job.progress('rsmf', events);
  return events;
}

/** Writes one conversation's `.rsmf` files; returns its number of events. */
export async function exportConversationRsmf(context: RsmfContext, conversation: ConversationSummary): Promise<number> {
  const base = conversationFileName(conversation);
  const custodian = custodianId(context, conversation);
  const newSlice = (): Promise<RsmfSlice> =>
    RsmfSlice.create({ conversation, channel: channelOf(conversation.stream), account: accountOf(conversation.stream), custodianId: custodian, checkpoint: context.checkpoints.get(conversation.stream), collectionId: collectionId(conversation), dir: context.temp });
  let slice = await newSlice();
  let part = 0;
  let events = 0;
  const flush = async (next: boolean): Promise<void> => {
    if (slice.count > 0) {
      part += 1;
      context.written(await writeRsmf(path.join(context.dir, `${base}-${String(part).padStart(3, '0')}.rsmf`), slice, context.blobs, context.generator, context.temp));
    }
    await slice.remove();
    if (next) slice = await newSlice();
  };
  try {
    for await (const event of transcriptEvents(context.index, context.blobs, conversation.key, context.range)) {
      await slice.add(event);
      events += 1;
      context.event();
      if (slice.full) await flush(true);
    }
  } catch (error) {
    await slice.remove();
    throw error;
  }
  await flush(false);
  return events;
}
