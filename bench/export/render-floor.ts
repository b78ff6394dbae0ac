/**
 * The render floor: the least work any RSMF writer of the bench archive must do, with every
 * check and every nicety left out — a lower bound on export's own CPU, and from it an upper
 * bound on the export/verify ratio any design could reach on this machine.
 *
 * Per record: decode the stored line (UTF-8, JSON.parse), one manifest event (compact
 * JSON.stringify of six fields; the export writes the larger pretty form) and one transcript line.
 * Per 10,000 events (one RSMF slice): deflate the manifest at level 6 (as the zip does) with its
 * CRC-32, base64 the transcript and the deflated manifest (without the 76-column lines the MIME
 * body has), and SHA-256 the result (SHA256SUMS). Left out, all of which a real export must
 * also pay: verification, the hash-chain re-check, grouping records by conversation and time
 * (a spool or an index), folding edits, deletions and reactions into their messages, blobs,
 * MIME headers and writing the files.
 *
 * Runs on the main thread only: its CPU time is one core's work.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';

const SLICE_EVENTS = 10_000;

export interface RenderFloor {
  /** Records rendered. */
  readonly records: number;
  /** CPU time (user + system) of the whole floor, ms. */
  readonly cpuMs: number;
  /** CPU time of the decode alone (UTF-8 + JSON.parse of every record), ms: what a render fused into verification's own pass could share with it. */
  readonly decodeCpuMs: number;
}

interface BenchRecord {
  readonly seq: number;
  readonly kind: string;
  readonly sentAt?: string;
  readonly direction?: string;
  readonly text?: string;
  readonly sender?: { readonly id: string; readonly name?: string };
  readonly conversation?: { readonly id: string };
}

/** Renders every record of stream `bench:alice` of the file-system archive `dir` the floor's way. */
export async function renderFloor(dir: string): Promise<RenderFloor> {
  const folder = path.join(dir, 'streams', 'bench:alice');
  let decodeMs = 0;
  let renderMs = 0;
  let decoded = 0;
  let records = 0;
  let events: string[] = [];
  let transcript: string[] = [];
  const slice = (): void => {
    const manifest = Buffer.from(`{"version":"2.0.0","events":[${events.join(',')}]}`, 'utf8');
    const zipped = deflateRawSync(manifest, { level: 6 });
    crc32(manifest);
    const body = Buffer.from(transcript.join(''), 'utf8').toString('base64') + zipped.toString('base64');
    createHash('sha256').update(body).digest('hex');
    events = [];
    transcript = [];
  };
  // A segment at a time (reading it is not timed): the decode alone, then the whole render.
  for (const name of (await readdir(folder)).filter((file) => file.endsWith('.jsonl')).sort()) {
    const data = await readFile(path.join(folder, name));
    const decodeStarted = process.cpuUsage();
    forEachLine(data, (text) => (decoded += (JSON.parse(text) as BenchRecord).seq > 0 ? 1 : 0));
    decodeMs += cpuMs(process.cpuUsage(decodeStarted));
    const renderStarted = process.cpuUsage();
    forEachLine(data, (text) => {
      const record = JSON.parse(text) as BenchRecord;
      const sender = record.sender?.name ?? record.sender?.id ?? '';
      events.push(JSON.stringify({ id: String(record.seq), type: record.kind, participant: record.sender?.id, conversation: record.conversation?.id, timestamp: record.sentAt, direction: record.direction, body: record.text ?? '' }));
      transcript.push(`[${record.sentAt ?? ''}] ${sender}: ${record.text ?? ''}\n`);
      if (++records % SLICE_EVENTS === 0) slice();
    });
    renderMs += cpuMs(process.cpuUsage(renderStarted));
  }
  const lastStarted = process.cpuUsage();
  if (events.length > 0) slice();
  renderMs += cpuMs(process.cpuUsage(lastStarted));
  if (decoded !== records) throw new Error(`render floor: decoded ${decoded} records, rendered ${records}`);
  return { records, cpuMs: renderMs, decodeCpuMs: decodeMs };
}

function cpuMs(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000;
}

function forEachLine(data: Buffer, line: (text: string) => void): void {
  let start = 0;
  for (let at = data.indexOf(10); at !== -1; at = data.indexOf(10, start)) {
    line(data.toString('utf8', start, at));
    start = at + 1;
  }
}
