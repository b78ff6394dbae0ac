import type { Sink } from './sink.ts';

/** Internal: the stored bytes of record `seq` of `stream`, or `undefined` when the sink does not return it. */
export async function readRecordAt(sink: Sink, stream: string, seq: number): Promise<Uint8Array | undefined> {
  for await (const stored of sink.read(stream, { fromSeq: seq })) return stored.seq === seq ? stored.bytes : undefined;
  return undefined;
}
