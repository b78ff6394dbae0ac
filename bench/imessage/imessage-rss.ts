/**
 * bench/imessage/imessage-rss — memory per connected iMessage account: N relays in one process,
 * each reading its own chat.db (built beforehand, in the parent process, with the fixtures'
 * schema and writer, `--messages` each),
 * one Recorder into an fsync'd file-system archive. After every relay has caught up and is
 * idle-polling, the process's RSS (after a GC). Runs itself once per count in a fresh process.
 *
 * Usage: node --expose-gc --conditions=@offchannel/source bench/imessage/imessage-rss.ts [--counts 1,50] [--messages 200]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Recorder, createConnectorContext, generateStateKey, openStateStore, parseStateKey } from '@offchannel/core';
import { createIMessageConnector } from '@offchannel/imessage';
import { ChatDbWriter, chatDbSchemaSql } from '@offchannel/imessage/testing';
import { openFsSink } from '@offchannel/sink-fs';

const { values } = parseArgs({ options: { counts: { type: 'string', default: '1,50' }, messages: { type: 'string', default: '200' }, accounts: { type: 'string' }, macs: { type: 'string' } } });

/** Builds `count` chat.db files of `messages` each with the fixtures' schema and writer (in the parent: the measured process only reads them). */
function buildMacs(dir: string, count: number, messages: number): void {
  for (let n = 0; n < count; n++) {
    const file = path.join(dir, `mac-${n}`, 'chat.db');
    mkdirSync(path.dirname(file), { recursive: true });
    const db = new DatabaseSync(file);
    db.exec(chatDbSchemaSql('macos26'));
    db.exec('PRAGMA synchronous = OFF');
    const writer = new ChatDbWriter(db, 'me@firm.example', path.join(path.dirname(file), 'Attachments'));
    for (let i = 0; i < messages; i++) writer.apply({ op: 'message', fromMe: i % 4 === 0, peer: `+1555010${i % 20}`, text: `message ${i} of account ${n}`, bodyOnly: i % 3 === 0 });
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    db.close();
  }
}

if (values.accounts === undefined) {
  const rows: { accounts: number; rssMiB: number; heapMiB: number; externalMiB: number }[] = [];
  const counts = values.counts.split(',').map(Number);
  const macs = await mkdtemp(path.join(tmpdir(), 'offchannel-imessage-rss-macs-'));
  try {
    buildMacs(macs, Math.max(...counts), Number(values.messages));
    for (const count of counts) {
      const out = execFileSync(process.execPath, ['--expose-gc', '--conditions=@offchannel/source', fileURLToPath(import.meta.url), '--accounts', String(count), '--messages', values.messages, '--macs', macs], { encoding: 'utf8' });
      rows.push(JSON.parse(out) as { accounts: number; rssMiB: number; heapMiB: number; externalMiB: number });
    }
  } finally {
    await rm(macs, { recursive: true, force: true });
  }
  for (const row of rows) console.log(`${row.accounts} accounts: RSS ${row.rssMiB} MiB (JS heap ${row.heapMiB} MiB, external ${row.externalMiB} MiB)`);
  const [first, last] = [rows[0], rows.at(-1)];
  if (first && last && last.accounts > first.accounts) {
    const per = (field: 'rssMiB' | 'heapMiB' | 'externalMiB') => ((last[field] - first[field]) / (last.accounts - first.accounts)).toFixed(2);
    console.log(`per account: RSS ${per('rssMiB')} MiB (JS heap ${per('heapMiB')} MiB, external ${per('externalMiB')} MiB; the rest is native: SQLite connection, allocator)`);
  }
} else {
  const count = Number(values.accounts);
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-imessage-rss-'));
  try {
    const sink = await openFsSink({ dir: path.join(dir, 'archive') });
    const recorder = new Recorder({ sink });
    const state = await openStateStore({ dir: path.join(dir, 'state'), key: parseStateKey(generateStateKey()) });
    const controller = new AbortController();
    const connectors = [];
    for (let n = 0; n < count; n++) {
      const file = path.join(values.macs ?? '', `mac-${n}`, 'chat.db');
      const connector = createIMessageConnector({ account: `custodian-${n}@firm.example`, chatDb: file, attachmentsDir: path.join(path.dirname(file), 'Attachments'), pollMs: 1000 });
      await connector.start(createConnectorContext({ recorder, connector, state, signal: controller.signal }));
      connectors.push(connector);
    }
    while (connectors.some((c) => c.status().captured < Number(values.messages))) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 3000)); // idle polling
    (globalThis as { gc?: () => void }).gc?.();
    const memory = process.memoryUsage();
    const rssMiB = Number((memory.rss / 2 ** 20).toFixed(1));
    const heapMiB = Number((memory.heapUsed / 2 ** 20).toFixed(1));
    const externalMiB = Number((memory.external / 2 ** 20).toFixed(1));
    for (const c of connectors) await c.stop();
    controller.abort();
    await recorder.close();
    await sink.close();
    console.log(JSON.stringify({ accounts: count, rssMiB, heapMiB, externalMiB }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
