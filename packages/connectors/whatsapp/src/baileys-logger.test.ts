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
