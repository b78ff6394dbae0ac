import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { MerkleLevels, RECORD_PROOF_FORMAT, type RecordProof, inclusionProof, leafHash } from '@offchannel/core';
import { conversationKey } from '../index-db/archive-index.ts';
import { sortableTime } from '../index-db/sortable-time.ts';
import type { ExportJob } from '../export-job.ts';
import { writeStreamingFile } from '../written-file.ts';

/** Line format for a record not yet covered by a signed checkpoint. */
export const UNPROVEN_RECORD_FORMAT = 'offchannel-record';

/**
 * `jsonl/<stream>.jsonl`: the selected records of each stream in seq order, one JSON object per
 * line. A record covered by the stream's newest verified checkpoint is written as a complete
 * record proof (`format: "offchannel-record-proof"`: the record's exact canonical bytes as a
 * string, its RFC 9162 inclusion path and the signed checkpoint note) — each line can be
 * checked on its own with `offchannel verify-proof`. A newer record is written as
 * `{format: "offchannel-record", v: 1, stream, seq, record, unproven}`.
 */
export async function exportJsonl(job: ExportJob): Promise<number> {
  const dir = path.join(job.out, 'jsonl');
  await mkdir(dir, { recursive: true });
  const selected = new Set(job.conversations.map((conversation) => conversation.key));
  const streams = [...new Set(job.conversations.map((conversation) => conversation.stream))];
  const from = job.range.from ?? '';
  const to = job.range.to ?? '\uffff';
  let lines = 0;
  for (const stream of streams) {
    const checkpoint = job.checkpoints.get(stream);
    const note = checkpoint?.note;
    const levels = new MerkleLevels();
    if (checkpoint) {
      for (const entry of job.index.streamRecords(stream)) {
        if (entry.seq > checkpoint.size) break;
        levels.append(leafHash(Buffer.from(entry.text, 'utf8')));
      }
    }
    const written = await writeStreamingFile(path.join(dir, `${stream.replace(':', '_')}.jsonl`), async (write) => {
      for (const entry of job.index.streamRecords(stream)) {
        const at = sortableTime(entry.record.sentAt ?? entry.record.capturedAt);
        if (!selected.has(conversationKey(entry.record)) || at < from || at >= to) continue;
        const { text } = entry;
        let line: RecordProof | { format: string; v: 1; stream: string; seq: number; record: string; unproven: string };
        if (checkpoint && note && entry.seq <= checkpoint.size) {
          const proof = await inclusionProof(levels, entry.seq - 1, checkpoint.size);
          line = { format: RECORD_PROOF_FORMAT, v: 1, stream, seq: entry.seq, record: text, treeSize: checkpoint.size, inclusion: proof.map((hash) => Buffer.from(hash).toString('base64')), checkpoint: note };
        } else {
          line = { format: UNPROVEN_RECORD_FORMAT, v: 1, stream, seq: entry.seq, record: text, unproven: checkpoint ? `after the newest signed checkpoint (size ${checkpoint.size})` : 'the stream has no verified signed checkpoint' };
        }
        await write(`${JSON.stringify(line)}\n`);
        lines += 1;
        if (lines % 10_000 === 0) job.progress('jsonl', lines);
      }
    });
    job.written(written);
  }
  job.progress('jsonl', lines);
  return lines;
}

