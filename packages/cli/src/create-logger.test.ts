import { redactingLogger } from '@offchannel/core';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

describe('the CLI logger (pino behind redaction), wrapped again as the recorder and state store wrap it', () => {
  it('neither redacts nor writes a line below the level, and follows a level changed later', () => {
    const lines: Record<string, unknown>[] = [];
    const base = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const cli = redactingLogger(base);
    const recorder = redactingLogger(cli);
    let reads = 0;
    const fields = {
      get stream() {
        reads++;
        return 'telegram:desk';
      },
      text: 'confidential',
    };
    recorder.debug(fields, 'batch durable');
    recorder.child({ stream: 'telegram:desk' }).info(fields, 'state written');
    expect(reads).toBe(0);
    expect(lines).toEqual([]);
    recorder.warn(fields, 'kept');
    base.level = 'debug';
    recorder.debug(fields, 'now kept');
    base.level = 'error';
    recorder.warn(fields, 'dropped again');
    expect(lines.map((line) => [line['level'], line['msg'], line['stream'], line['text']])).toEqual([
      [40, 'kept', 'telegram:desk', '[redacted]'],
      [20, 'now kept', 'telegram:desk', '[redacted]'],
    ]);
    expect(JSON.stringify(lines)).not.toContain('confidential');
    // The fields of each written line were read once (by the outer wrapper); never for a dropped one.
    expect(reads).toBe(2);
  });
});
