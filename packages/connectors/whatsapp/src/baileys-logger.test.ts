import { createRecordingLogger } from '@offchannel/core/testing';
import { makeEventBuffer } from '@whiskeysockets/baileys';
import { describe, expect, it } from 'vitest';
import { baileysLogger } from './baileys-logger.ts';
import { tapEmitter } from './emit-tap.ts';

describe('baileysLogger', () => {
  it('drops Baileys’ structured fields and debug output, keeping only the message and error codes', () => {
    const recording = createRecordingLogger();
    const logger = baileysLogger(recording);
    const message = { key: { id: 'X' }, message: { conversation: 'Sell everything at the open' } };
    logger.debug({ msg: message }, 'recv message');
    logger.trace({ node: message }, 'trace');
    logger.warn({ msg: message }, 'failed to process message');
    logger.error({ err: Object.assign(new Error('Bad MAC: Sell everything'), { output: { statusCode: 500 } }), message }, 'failed to decrypt message');
    logger.child({ class: 'baileys' }).info('connected to WA');
    const text = recording.text();
    expect(text).not.toContain('Sell everything');
    expect(text).toContain('failed to decrypt message');
    expect(text).toContain('connected to WA');
    expect(text).not.toContain('recv message');
  });
});

describe('baileysLogger allowlist', () => {
  const phone = '15551234567';
  const jid = `${phone}@s.whatsapp.net`;
  const lid = '100000000000001@lid';

  it('withholds message strings that are not on the allowlist: JIDs, phone numbers, LIDs, key ids never pass', () => {
    const recording = createRecordingLogger();
    const logger = baileysLogger(recording);
    // Baileys 7's own templates, as they are logged
    logger.warn(`Invalid LID-PN mapping: ${lid}, ${jid}`);
    logger.info(`Invalid or empty LID user for PN ${jid}: lidUser = "${lid}"`);
    logger.error({ err: new Error('x') }, `Skipping deletion of non-existent pre-key: ${phone}`);
    logger.info(`Uploading PreKeys due to: ${jid}`);
    logger.info({ jid }, `handled 3 offline messages/notifications ${phone}`); // a number pattern with something appended
    logger.warn(`synced regular_high to v12 ${jid}`);
    logger.warn(`Error in uploading to ${phone}.evil.example , retrying...`);
    const text = recording.text();
    for (const secret of [phone, lid, 'evil.example', 'lidUser']) expect(text).not.toContain(secret);
    expect(recording.lines.filter((line) => line.message === 'baileys log line withheld (not on the allowlist)')).toHaveLength(7);
  });

  it('passes fixed messages and number-only templates, and only identifier-like error names and codes', () => {
    const recording = createRecordingLogger();
    const logger = baileysLogger(recording);
    logger.info('opened connection to WA');
    logger.info('handled 12 offline messages/notifications');
    logger.info('synced critical_block to v42');
    const boom = Object.assign(new Error(`Connection Failure ${jid}`), { name: `Boom ${phone}`, code: jid, output: { statusCode: 428 } });
    logger.error({ err: boom }, 'stream errored out');
    const plain = Object.assign(new Error('x'), { code: 'ECONNRESET' });
    logger.warn({ error: plain, node: { attrs: { from: jid } } }, 'error in handling message');
    expect(recording.lines.map((line) => line.message)).toEqual(['opened connection to WA', 'handled 12 offline messages/notifications', 'synced critical_block to v42', 'stream errored out', 'error in handling message']);
    const text = recording.text();
    expect(text).not.toContain(phone);
    expect(text).toContain('428');
    expect(text).toContain('ECONNRESET');
  });
});

describe('tapEmitter', () => {
  it('runs the tap before listeners, survives a throwing tap, and uninstalls cleanly', () => {
    const ev = makeEventBuffer(baileysLogger(createRecordingLogger()));
    const order: string[] = [];
    const errors: unknown[] = [];
    ev.on('connection.update', () => order.push('listener'));
    const untap = tapEmitter(
      ev,
      () => {
        order.push('tap');
        throw new Error('tap bug');
      },
      (error) => errors.push(error),
    );
    ev.emit('connection.update', { connection: 'open' });
    expect(order).toEqual(['tap', 'listener']);
    expect(errors).toHaveLength(1);
    untap();
    ev.emit('connection.update', { connection: 'close' });
    expect(order).toEqual(['tap', 'listener', 'listener']);
  });
});
