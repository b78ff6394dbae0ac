/**
 * The fixture writer process: a separate OS process holding its own read-write connection to
 * the fixture chat.db, as Messages does on a Mac, so the relay under test only ever sees
 * changes committed by another process (WAL, data_version, directory events).
 *
 * Protocol: one JSON request per stdin line, `{id, op…}`; one JSON answer per stdout line,
 * `{id, result}` or `{id, error}`. The first request is `{id, op: "init", path, schema, self,
 * attachmentsDir}`; stdin closing ends the process.
 */
import { mkdirSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { createInterface } from 'node:readline';
import { chatDbSchemaSql, type ChatDbSchema } from './chat-db-schema.ts';
import { ChatDbWriter, type WriterOp } from './chat-db-writer.ts';

let db: DatabaseSync | undefined;
let writer: ChatDbWriter | undefined;

type Request = { id: number } & (WriterOp | { op: 'init'; path: string; schema: ChatDbSchema; self: string; attachmentsDir: string; create: boolean });

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const request = JSON.parse(line) as Request;
  try {
    if (request.op === 'init') {
      mkdirSync(request.attachmentsDir, { recursive: true });
      db = new DatabaseSync(request.path, { readBigInts: true, timeout: 5000 });
      if (request.create) db.exec(chatDbSchemaSql(request.schema));
      writer = new ChatDbWriter(db, request.self, request.attachmentsDir);
      answer({ id: request.id, result: {} });
      return;
    }
    if (writer === undefined) throw new Error('init first');
    answer({ id: request.id, result: writer.apply(request) });
  } catch (error) {
    answer({ id: request.id, error: error instanceof Error ? error.message : 'failed' });
  }
});
lines.on('close', () => {
  db?.close();
});

function answer(message: unknown): void {
  process.stdout.write(`${JSON.stringify(message, (_key, value: unknown) => (typeof value === 'bigint' ? Number(value) : value))}\n`);
}
