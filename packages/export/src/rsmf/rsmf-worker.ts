/**
 * The RSMF worker thread (started by rsmf-worker-thread.ts): writes the conversations the main
 * thread gives it, one at a time, with the same code as the main thread (export-rsmf.ts).
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { ExportError } from '../export-error.ts';
import { ArchiveIndex } from '../index-db/archive-index.ts';
import { type RsmfContext, exportConversationRsmf } from './export-rsmf.ts';
import type { FromRsmfWorker, RsmfWorkerData, ToRsmfWorker } from './rsmf-worker-thread.ts';

/** Events are reported to the main thread (progress) in batches of this many. */
const REPORT_EVERY = 250;

if (!parentPort) throw new Error('rsmf-worker.ts runs as a worker thread');
const port: MessagePort = parentPort;
const data = workerData as RsmfWorkerData;
const index = ArchiveIndex.open(data.indexFile);
const send = (message: FromRsmfWorker): void => {
  port.postMessage(message);
};
const blobs = new Map<number, { resolve: (bytes: Uint8Array | undefined) => void; reject: (error: Error) => void }>();
let nextBlob = 0;
let stopping = false;
let unreported = 0;

const context: RsmfContext = {
  index,
  blobs: {
    getBlob: (sha256) =>
      new Promise((resolve, reject) => {
        const id = nextBlob++;
        blobs.set(id, { resolve, reject });
        send({ type: 'blob', id, sha256 });
      }),
  },
  dir: data.dir,
  temp: data.temp,
  range: data.range,
  checkpoints: new Map(data.checkpoints),
  generator: data.generator,
  written: (file) => {
    send({ type: 'written', file });
  },
  event: () => {
    if (stopping) throw new ExportError('EXPORT_ABORTED', 'the export stopped');
    if (++unreported === REPORT_EVERY) report();
  },
};

function report(): void {
  if (unreported > 0) send({ type: 'events', count: unreported });
  unreported = 0;
}

/** The conversation being written, if any. */
let current: Promise<void> | undefined;

async function write(conversation: ToRsmfWorker & { type: 'conversation' }): Promise<void> {
  try {
    await exportConversationRsmf(context, conversation.conversation);
    report();
    send({ type: 'done' });
  } catch (error) {
    const code = error instanceof ExportError ? error.code : (error as { code?: unknown }).code;
    send({ type: 'failed', code: typeof code === 'string' ? code : undefined, message: error instanceof Error ? error.message : String(error) });
  }
}

/** Closes the index and the port, after the conversation being written (if any) has settled: the thread then exits. */
function finish(): void {
  void (async () => {
    await current;
    await index.close();
    port.close();
  })();
}

port.on('message', (message: ToRsmfWorker) => {
  switch (message.type) {
    case 'conversation':
      current = write(message);
      break;
    case 'blob': {
      const pending = blobs.get(message.id);
      blobs.delete(message.id);
      if (message.failed) pending?.reject(new Error('the archive could not be read'));
      else pending?.resolve(message.bytes ?? undefined);
      break;
    }
    case 'stop':
      // Nothing more is written: a conversation in progress fails at its next event (or blob) and removes its working files.
      stopping = true;
      for (const pending of blobs.values()) pending.reject(new ExportError('EXPORT_ABORTED', 'the export stopped'));
      blobs.clear();
      finish();
      break;
    case 'end':
      finish();
      break;
  }
});
