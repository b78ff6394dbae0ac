/** A real archive (fs sink), a real encrypted state store, and helpers to read records back. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, type Logger, Recorder, type StateStore, canonicalize, decodeRecord, openStateStore, prepareCapture } from '@offchannel/core';
import { rederiveSignalRecord } from '@offchannel/signal';
import { type FsSink, openFsSink } from '@offchannel/sink-fs';

export interface TestArchive {
  readonly dir: string;
  readonly sink: FsSink;
  readonly recorder: Recorder;
  readonly state: StateStore;
  records(stream: string): Promise<ArchiveRecord[]>;
  close(): Promise<void>;
}

export async function openTestArchive(logger?: Logger): Promise<TestArchive> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-'));
  const sink = await openFsSink({ dir: path.join(dir, 'archive') });
  const recorder = new Recorder({ sink, ...(logger === undefined ? {} : { logger }) });
  const state = await openStateStore({ dir: path.join(dir, 'state'), key: randomBytes(32) });
  return {
    dir,
    sink,
    recorder,
    state,
    async records(stream) {
      const out: ArchiveRecord[] = [];
      for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
      return out;
    },
    async close() {
      await recorder.close();
      await sink.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Re-derivation over a whole test archive: every record with raw evidence is made again by the
 * exported mapping from its raw blob plus what the archive records (the stream's
 * `linked-device` record), and must equal the stored record (all but seq, prev, capturedAt).
 * Returns how many records were re-derived; throws naming the first one that differs.
 */
export async function rederiveAll(archive: TestArchive, stream: string): Promise<number> {
  const records = await archive.records(stream);
  const linked = records.find((record) => record.kind === 'system' && record.system?.event === 'linked-device');
  const selfAci = linked?.system?.fields?.aci;
  if (selfAci === undefined) throw new Error(`${stream}: no linked-device record names the device's ACI`);
  const [channel, account] = stream.split(':') as [string, string];
  let derived = 0;
  for (const record of records) {
    if (record.raw === undefined) continue;
    const raw = await archive.sink.getBlob(record.raw.sha256);
    if (raw === undefined) throw new Error(`${stream} seq ${record.seq}: raw blob missing`);
    const input = rederiveSignalRecord(record, raw, { selfAci });
    if (input === undefined) throw new Error(`${stream} seq ${record.seq} (${record.kind}, ${record.raw.format}): the mapping does not make this record from its raw bytes`);
    const { template } = prepareCapture(input, { stream, channel, account }, record.source);
    const strip = ({ seq: _seq, prev: _prev, capturedAt: _capturedAt, ...rest }: ArchiveRecord) => rest;
    const [expected, actual] = [canonicalize(strip(template)), canonicalize(strip(record))];
    if (expected !== actual) throw new Error(`${stream} seq ${record.seq} (${record.key}) re-derives differently:\n  stored  ${actual}\n  derived ${expected}`);
    derived++;
  }
  return derived;
}

