import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, decodeRecord } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { demoExchange } from '../demo/demo-exchange.ts';
import { runCli } from '../testing/run-cli.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let work: string;
beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-demo-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function records(dir: string): Promise<ArchiveRecord[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  const out: ArchiveRecord[] = [];
  for await (const stored of sink.read('demo:alice@firm.example')) out.push(decodeRecord(stored.bytes).record);
  await sink.close();
  return out;
}

describe('offchannel demo', () => {
  it('records the exchange, verifies it, and records nothing new when run again', async () => {
    const first = await runCli(['demo', '--archive', 'demo-archive'], work);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('recorded 16 new records (0 already archived) from 3 conversations into stream demo:alice@firm.example');
    // The generated exchange, then each installed connector's script through the real connector.
    expect(first.stdout).toContain('imessage: played 13 scripted steps through the real connector → stream imessage:alice@firm.example (13 records)');
    expect(first.stdout).toContain('whatsapp: played 7 scripted steps through the real connector → stream whatsapp:alice@firm.example (9 records)'); // the document's file follows its message as its own record; the linked identity is recorded first
    // Telegram's 9 records plus its completeness signals: telegram-session and the catch-up records.
    expect(first.stdout).toContain('telegram: played 9 scripted steps through the real connector → stream telegram:alice@firm.example (12 records)');
    expect(first.stdout).toMatch(/verify: OK — 4 streams, 53 records/);
    expect(first.stdout).toMatch(/export: \d+ RSMF files \(Relativity\) and \d+ HTML transcripts → \.\/demo-export/);
    const again = await runCli(['demo', '--archive', 'demo-archive'], work);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('recorded 0 new records (16 already archived)');
    expect(again.stdout).toContain('imessage: already played into this archive (stream imessage:alice@firm.example, 13 records)');
    expect(again.stdout).toContain('whatsapp: already played into this archive');
    expect(again.stdout).toContain('telegram: already played into this archive');
    expect(again.stdout).toMatch(/verify: OK — 4 streams, 53 records/);
    expect((await runCli(['verify', path.join(work, 'demo-archive')])).code).toBe(0);
  });

  it('archives edits, deletes and reactions as new records, keeping every original', async () => {
    await runCli(['demo', '--archive', 'a'], work);
    const stored = await records(path.join(work, 'a'));
    const byKey = new Map(stored.map((record) => [record.key, record]));
    expect(stored.map((record) => record.kind).sort()).toEqual(
      ['delete', 'delete', 'edit', 'membership', 'message', 'message', 'message', 'message', 'message', 'message', 'message', 'message', 'message', 'message', 'policy', 'reaction', 'system', 'system', 'system'].sort(),
    );
    expect(byKey.get('message:c3')?.text).toBe('Could you do 4.15% fixed instead of 4.25%?');
    expect(byKey.get('edit:c3:1')).toMatchObject({ target: { id: 'c3' }, text: 'Could you do 4.10% fixed instead of 4.25%?' });
    expect(byKey.get('message:g3')?.text).toBe('Take this one off the record, call me on my personal phone.');
    expect(byKey.get('delete:g3')).toMatchObject({ deletion: { scope: 'everyone' }, target: { id: 'g3' } });
    expect(byKey.get('delete:p2:me')).toMatchObject({ deletion: { scope: 'me' }, direction: 'outbound' });
    expect(byKey.get('reaction:c2:bob:add')).toMatchObject({ reaction: { value: '👍', action: 'add' }, target: { id: 'c2' } });
    const attachment = byKey.get('message:c2')?.attachments?.[0];
    expect(attachment).toMatchObject({ status: 'stored', mime: 'application/pdf', name: 'term-sheet-5y-usd-irs.pdf' });
    const pdf = await readFile(path.join(work, 'a', 'blobs', 'sha256', attachment?.status === 'stored' ? attachment.sha256 : ''));
    expect(pdf.subarray(0, 8).toString('latin1')).toBe('%PDF-1.4');
    expect(stored.filter((record) => record.kind !== 'system').every((record) => record.raw?.format === 'offchannel.demo-event.json')).toBe(true);
    expect(byKey.get('demo-played:whatsapp')).toMatchObject({ kind: 'system', system: { event: 'demo-script-played', fields: { channel: 'whatsapp', steps: '7' } } });
    expect(byKey.get('demo-played:imessage')).toMatchObject({ kind: 'system', system: { event: 'demo-script-played', fields: { channel: 'imessage', steps: '13' } } });
  });

  it('prints JSON with --json', async () => {
    const { code, stdout } = await runCli(['demo', '--archive', 'j', '--json'], work);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ stream: 'demo:alice@firm.example', recorded: 16, duplicates: 0, conversations: 3, verification: { ok: true } });
  });

  it('never writes message text to its logs, even at debug level', () => {
    const bin = path.join(import.meta.dirname, '..', 'bin.ts');
    const result = spawnSync(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', bin, 'demo', '--archive', path.join(work, 'logged'), '--log-level', 'debug'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stderr.split('\n').filter(Boolean).length).toBeGreaterThan(5);
    for (const event of demoExchange()) {
      if (event.text) expect(result.stderr).not.toContain(event.text);
      if (event.conversation?.title) expect(result.stderr).not.toContain(`"${event.conversation.title}"`);
    }
    expect(result.stderr).not.toContain('4.10%');
    expect(result.stderr).not.toContain('Term sheet');
    // …nor the iMessage script's texts, captured through the real relay.
    for (const text of ['share block at 101.25', 'Also buy 500 more', 'booking it now', 'trade-ticket', '10y Bund', 'keep it quiet', 'allocation.pdf', 'EUR/USD', 'off the record', 'booked at 1.0911']) expect(result.stderr).not.toContain(text);
  });

  it('rejects unknown options with exit 2', async () => {
    const { code, stderr } = await runCli(['demo', '--archvie', 'x'], work);
    expect(code).toBe(2);
    expect(stderr).toContain('Usage: offchannel demo');
  });
});
