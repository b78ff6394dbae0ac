import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { type StreamHead, ZERO_HASH, sha256Hex } from '@offchannel/core';
import { batchAfter } from '@offchannel/core/testing';
import { describe, expect, it } from 'vitest';
import { adminClient, createBucket, sinkOptions } from './__fixtures__/buckets.ts';
import { type S3Sink, openS3Sink } from './s3-sink.ts';

const stream = 'demo:race';

async function readAll(sink: S3Sink): Promise<{ seq: number; bytes: Uint8Array }[]> {
  const out = [];
  for await (const stored of sink.read(stream)) out.push(stored);
  return out;
}

/** The stored stream is one chain: seq 1, 2, 3… and each record's prev is its predecessor's hash. */
function assertOneChain(records: readonly { seq: number; bytes: Uint8Array }[]): void {
  let prev = ZERO_HASH;
  records.forEach((stored, index) => {
    const record = JSON.parse(Buffer.from(stored.bytes).toString('utf8')) as { seq: number; prev: string };
    expect(stored.seq).toBe(index + 1);
    expect(record.seq).toBe(index + 1);
    expect(record.prev).toBe(prev);
    prev = sha256Hex(stored.bytes);
  });
}

/** Delays this sink's PUTs (after they were built, before they are sent) by `ms`. */
function slowPuts(sink: S3Sink, ms: () => number): void {
  sink.client.middlewareStack.add(
    (next) => async (args) => {
      if ((args.request as { method: string }).method === 'PUT') await new Promise((resolve) => setTimeout(resolve, ms()));
      return next(args);
    },
    { step: 'finalizeRequest', name: 'slowPuts', priority: 'low' },
  );
}

describe('compare-and-append on a store that ignores If-None-Match (Ceph RGW 16)', () => {
  it('two writers racing on one stream: exactly one wins every round, the loser gets SINK_CONFLICT, the chain never forks', async () => {
    const bucket = await createBucket();
    const writers = [await openS3Sink(sinkOptions(bucket)), await openS3Sink(sinkOptions(bucket))];
    // Random delays make either writer's upload start or finish first.
    for (const writer of writers) slowPuts(writer, () => Math.floor(Math.random() * 12));
    let head: StreamHead = { seq: 0, hash: ZERO_HASH };
    const wins = [0, 0];
    for (let round = 0; round < 40; round++) {
      // Both start the round knowing the head (a loser would otherwise re-read it first and lose again).
      for (const writer of writers) expect(await writer.head(stream)).toEqual(head);
      const batches = writers.map((_, index) => batchAfter(stream, head, 1 + ((round + index) % 3), `round-${round}-writer-${index}`));
      const results = await Promise.allSettled(writers.map((writer, index) => writer.appendBatch(batches[index] as (typeof batches)[number])));
      const won = results.flatMap((result, index) => (result.status === 'fulfilled' ? [index] : []));
      expect(won, `round ${round}`).toHaveLength(1);
      const loser = results.find((result) => result.status === 'rejected');
      expect(loser?.reason, `round ${round}`).toMatchObject({ code: 'SINK_CONFLICT' });
      const winner = won[0] as number;
      wins[winner] = (wins[winner] ?? 0) + 1;
      head = (results[winner] as PromiseFulfilledResult<StreamHead>).value;
      // Every later reader agrees on the winner's bytes.
      const stored = await readAll(writers[1 - winner] as S3Sink);
      expect(stored.slice(-(batches[winner]?.records.length ?? 0)).map((entry) => Buffer.from(entry.bytes).toString())).toEqual(batches[winner]?.records.map((bytes) => Buffer.from(bytes).toString()));
    }
    expect(wins.every((count) => count > 0), `both writers won some rounds: ${wins.join('/')}`).toBe(true);
    const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
    const stored = await readAll(reader);
    assertOneChain(stored);
    expect(await reader.head(stream)).toEqual(head);
    // The losers' uploads remain as newer versions: reported as warnings, never read.
    const findings = [];
    for await (const finding of reader.audit()) findings.push(finding);
    expect(findings.length).toBeGreaterThanOrEqual(40);
    expect(findings.every((finding) => finding.code === 'S3_EXTRA_VERSION' && finding.severity === 'warning')).toBe(true);
    for (const sink of [...writers, reader]) await sink.close();
  });

  it('an upload that started first but finished last loses: the oldest stored version wins', async () => {
    const bucket = await createBucket();
    const slow = await openS3Sink(sinkOptions(bucket));
    const fast = await openS3Sink(sinkOptions(bucket));
    const head = await fast.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 1));
    await slow.head(stream);
    slowPuts(slow, () => 300);
    const slowAppend = slow.appendBatch(batchAfter(stream, head, 2, 'slow'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const fastHead = await fast.appendBatch(batchAfter(stream, head, 1, 'fast'));
    await expect(slowAppend).rejects.toMatchObject({ code: 'SINK_CONFLICT' });
    expect(await slow.head(stream)).toEqual(fastHead);
    await slow.close();
    await fast.close();
  });

  it('settles an append whose answer was lost: stored → success; never sent → SINK_UNAVAILABLE with nothing stored', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket, { maxAttempts: 1 }));
    let mode: 'lose-answer' | 'refuse' | 'pass' = 'lose-answer';
    sink.client.middlewareStack.add(
      (next) => async (args) => {
        if ((args.request as { method: string }).method !== 'PUT' || mode === 'pass') return next(args);
        if (mode === 'refuse') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        await next(args); // the store has it…
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }); // …but the answer is lost
      },
      { step: 'finalizeRequest', name: 'faults', priority: 'low' },
    );
    const first = batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 2);
    const head = await sink.appendBatch(first);
    expect(head).toEqual({ seq: 2, hash: sha256Hex(first.records[1] as Uint8Array) });
    mode = 'refuse';
    await expect(sink.appendBatch(batchAfter(stream, head, 1))).rejects.toMatchObject({ code: 'SINK_UNAVAILABLE' });
    mode = 'pass';
    expect(await sink.head(stream)).toEqual(head);
    expect((await sink.appendBatch(batchAfter(stream, head, 1))).seq).toBe(3);
    await sink.close();
  });

  it('settles an upload whose answer was lost and that the store commits only later: sent again, acknowledged once', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket, { maxAttempts: 1 }));
    let late: Promise<unknown> | undefined;
    sink.client.middlewareStack.add(
      (next) => async (args) => {
        if ((args.request as { method: string }).method !== 'PUT' || late) return next(args);
        // The request reaches the store half a second after the client gave up on it.
        late = new Promise((resolve) => setTimeout(resolve, 500)).then(() => next(args));
        late.catch(() => undefined);
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      },
      { step: 'finalizeRequest', name: 'latePut', priority: 'low' },
    );
    const batch = batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 3);
    expect(await sink.appendBatch(batch)).toEqual({ seq: 3, hash: sha256Hex(batch.records[2] as Uint8Array) });
    await late;
    const stored = await readAll(sink);
    expect(stored.map((entry) => Buffer.from(entry.bytes).toString())).toEqual(batch.records.map((bytes) => Buffer.from(bytes).toString()));
    expect((await sink.appendBatch(batchAfter(stream, { seq: 3, hash: sha256Hex(batch.records[2] as Uint8Array) }, 1))).seq).toBe(4);
    await sink.close();
  });

  it('finds the head of a stream of more than a thousand batches, past stray keys and losers', async () => {
    const bucket = await createBucket();
    const client = adminClient();
    const prefix = 'big/';
    const put = (key: string, body: string) =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${key}`, Body: body, ContentMD5: createHash('md5').update(body).digest('base64'), ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000) }));
    // 1,203 one-record batches written straight into the bucket, eight at a time.
    let head: StreamHead = { seq: 0, hash: ZERO_HASH };
    const bodies: [string, string][] = [];
    for (let seq = 1; seq <= 1203; seq++) {
      const record = batchAfter(stream, head, 1, `r${seq}`).records[0] as Uint8Array;
      bodies.push([`streams/${stream}/${String(seq).padStart(16, '0')}.jsonl`, `${Buffer.from(record).toString()}\n`]);
      head = { seq, hash: sha256Hex(record) };
    }
    for (let index = 0; index < bodies.length; index += 8) await Promise.all(bodies.slice(index, index + 8).map(([key, body]) => put(key, body)));
    await put(`streams/${stream}/0000000000001203.jsonl.bak`, 'stray');
    await put(`streams/${stream}/9999999999999999.jsonl`, 'beyond the largest safe seq: not a batch name');
    await put(`streams/${stream}/notes.txt`, 'stray');
    await put(`streams/${stream}/0000000000001203.jsonl`, 'a losing upload: newer, ignored\n');
    client.destroy();
    const sink = await openS3Sink(sinkOptions(bucket, { prefix }));
    expect(await sink.head(stream)).toEqual(head);
    const next = await sink.appendBatch(batchAfter(stream, head, 2));
    expect(next.seq).toBe(1205);
    let count = 0;
    for await (const stored of sink.read(stream, { fromSeq: 1200 })) {
      expect(stored.seq).toBe(1200 + count);
      count++;
    }
    expect(count).toBe(6);
    await sink.close();
  });
});
