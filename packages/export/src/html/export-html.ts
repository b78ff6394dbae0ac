import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Sink } from '@offchannel/core';
import { accountOf, channelOf, conversationFileName, conversationParties, custodianId, type ExportJob } from '../export-job.ts';
import { writeFileDurably, writeStreamingFile } from '../written-file.ts';
import { isInlineImage } from '../model/attachment-file-name.ts';
import { readVerifiedBlob } from '../verified-blob.ts';
import type { TranscriptAttachment } from '../model/transcript-event.ts';
import { transcriptEvents } from '../model/transcript-events.ts';
import { HTML_EMBED_MAX_BYTES, htmlEvent, htmlFoot, htmlHead } from './html-transcript.ts';

/**
 * `html/<conversation>.html`: one self-contained page per conversation. PNG, JPEG, GIF and WebP
 * images up to 8 MiB are embedded; other stored attachments are written once to
 * `html/attachments/<sha256>.<inert ext>` and linked.
 */
export async function exportHtml(job: ExportJob): Promise<number> {
  const dir = path.join(job.out, 'html');
  await mkdir(dir, { recursive: true });
  const attachmentsDir = path.join(dir, 'attachments');
  const copied = new Set<string>();
  let events = 0;
  for (const conversation of job.conversations) {
    const participants = conversationParties(job, conversation);
    const custodian = custodianId(job, conversation);
    const title = conversation.id === undefined ? `Account events of ${conversation.stream}` : (conversation.title ?? (participants.filter((party) => party.id !== custodian).map((party) => party.name ?? party.id).join(', ') || conversation.id));
    const file = path.join(dir, `${conversationFileName(conversation)}.html`);
    const written = await writeStreamingFile(file, async (write) => {
      await write(
        htmlHead({
          title,
          channel: channelOf(conversation.stream),
          stream: conversation.stream,
          custodian: `${accountOf(conversation.stream)}${custodian === accountOf(conversation.stream) ? '' : ` (${custodian})`}`,
          participants,
          firstAt: conversation.firstAt.replace(/\.?0*Z$/, 'Z'),
          lastAt: conversation.lastAt.replace(/\.?0*Z$/, 'Z'),
          verification: { ok: true, lines: job.verificationLines(conversation.stream) },
          generator: job.generator,
        }),
      );
      for await (const event of transcriptEvents(job.index, job.sink, conversation.key, job.range)) {
        const sources = new Map<TranscriptAttachment, string | undefined>();
        for (const attachment of event.attachments) sources.set(attachment, await attachmentSource(job.sink, attachment, attachmentsDir, copied, job));
        await write(htmlEvent(event, (attachment) => sources.get(attachment)));
        events += 1;
      }
      await write(htmlFoot(job.generator));
    });
    job.written(written);
    job.progress('html', events);
  }
  return events;
}

/**
 * Inline raster images (PNG, JPEG, GIF, WebP up to 8 MiB) become `data:` URIs of exactly that
 * type; every other stored attachment is written once as `attachments/<sha256>.<inert ext>`
 * (see attachment-file-name.ts: never the sender's name or extension) and linked.
 */
async function attachmentSource(sink: Sink, attachment: TranscriptAttachment, dir: string, copied: Set<string>, job: ExportJob): Promise<string | undefined> {
  if (attachment.status !== 'stored' || !attachment.sha256 || !attachment.fileName) return undefined;
  const embed = isInlineImage(attachment.mime) && (attachment.size ?? Infinity) <= HTML_EMBED_MAX_BYTES;
  if (embed || !copied.has(attachment.fileName)) {
    const bytes = await readVerifiedBlob(sink, attachment.sha256, attachment.size);
    if (embed) return `data:${attachment.fileType ?? 'application/octet-stream'};base64,${Buffer.from(bytes).toString('base64')}`;
    await mkdir(dir, { recursive: true });
    job.written(await writeFileDurably(path.join(dir, attachment.fileName), bytes));
    copied.add(attachment.fileName);
  }
  return `attachments/${encodeURIComponent(attachment.fileName)}`;
}
