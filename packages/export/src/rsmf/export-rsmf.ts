import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { accountOf, channelOf, collectionId, conversationFileName, custodianId, type ExportJob } from '../export-job.ts';
import { transcriptEvents } from '../model/transcript-events.ts';
import { RsmfSlice } from './rsmf-slice.ts';
import { writeRsmf } from './write-rsmf.ts';

/** `rsmf/<conversation>-<part>.rsmf`: one file per conversation, split every 10,000 events. */
export async function exportRsmf(job: ExportJob): Promise<number> {
  const dir = path.join(job.out, 'rsmf');
  await mkdir(dir, { recursive: true });
  let events = 0;
  for (const conversation of job.conversations) {
    const base = conversationFileName(conversation);
    const custodian = custodianId(job, conversation);
    const newSlice = (): Promise<RsmfSlice> =>
      RsmfSlice.create({ conversation, channel: channelOf(conversation.stream), account: accountOf(conversation.stream), custodianId: custodian, checkpoint: job.checkpoints.get(conversation.stream), collectionId: collectionId(conversation), dir: job.temp });
    let slice = await newSlice();
    let part = 0;
    const flush = async (next: boolean): Promise<void> => {
      if (slice.count > 0) {
        part += 1;
        job.written(await writeRsmf(path.join(dir, `${base}-${String(part).padStart(3, '0')}.rsmf`), slice, job.sink, job.generator, job.temp));
      }
      await slice.remove();
      if (next) slice = await newSlice();
    };
    try {
      for await (const event of transcriptEvents(job.index, job.sink, conversation.key, job.range)) {
        slice.add(event);
        events += 1;
        if (slice.full) await flush(true);
        if (events % 1000 === 0) job.progress('rsmf', events);
      }
    } catch (error) {
      await slice.remove();
      throw error;
    }
    await flush(false);
    job.progress('rsmf', events);
  }
  return events;
}
