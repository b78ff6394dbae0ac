import { describe, expect, it } from 'vitest';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { redactForLog, redactingLogger } from './redacting-logger.ts';

describe('redactingLogger', () => {
  it('redacts content and secret fields at any depth, keeps ids and counters', () => {
    const inner = createRecordingLogger();
    const logger = redactingLogger(inner).child({ component: 'test' });
    logger.info(
      {
        stream: 'whatsapp:alice',
        seq: 7,
        text: 'SECRET-TEXT',
        message: { conversation: 'SECRET-CONV', caption: 'SECRET-CAPTION' },
        nested: [{ body: 'SECRET-BODY', raw: new Uint8Array([1, 2, 3]) }],
        signingKey: 'SECRET-KEY',
        apiToken: 'SECRET-TOKEN',
        sessionSecret: 'SECRET-SESSION',
        bytes: Buffer.from('SECRET-BYTES'),
        err: Object.assign(new Error('boom'), { code: 'E_X', extra: 'SECRET-EXTRA' }),
      },
      'event',
    );
    const text = inner.text();
    expect(text).not.toMatch(/SECRET-/);
    expect(text).toContain('whatsapp:alice');
    expect(text).toContain('"seq":7');
    expect(text).toContain('E_X');
    expect(inner.lines[0]?.bindings).toEqual({ component: 'test' });
  });

  it('turns bytes into sizes and cuts long strings and deep nesting', () => {
    expect(redactForLog(new Uint8Array(10))).toBe('[10 bytes]');
    expect(String(redactForLog('x'.repeat(2000)))).toMatch(/\[2000 chars\]$/);
    let deep: unknown = { leaf: 1 };
    for (let index = 0; index < 20; index++) deep = { deep };
    expect(JSON.stringify(redactForLog(deep))).toContain('[nested]');
  });

  it('passes plain string messages through', () => {
    const inner = createRecordingLogger();
    redactingLogger(inner).warn('plain message');
    expect(inner.lines[0]).toMatchObject({ level: 'warn', message: 'plain message' });
  });
});
