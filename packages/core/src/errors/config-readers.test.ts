import { describe, expect, it } from 'vitest';
import { ConfigError } from './config-error.ts';
import { configObject, optionalConfigInteger } from './config-readers.ts';

function failure(read: () => unknown): ConfigError {
  try {
    read();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('connector config readers', () => {
  it('accept what is allowed and spread optional integers', () => {
    const fields = configObject({ a: 1, b: 2 }, 'connectors[0]', ['a', 'b', 'c'], 'an Acme setting');
    expect({ ...optionalConfigInteger(fields, 'a', 'connectors[0].a', 0, 5), ...optionalConfigInteger(fields, 'c', 'connectors[0].c', 0, 5) }).toEqual({ a: 1 });
  });

  it('name the offending key and never echo the value', () => {
    expect(failure(() => configObject(['x'], 'connectors[0]', [], 'an Acme setting')).message).toBe('connectors[0] must be an object.');
    const unknown = failure(() => configObject({ token: 'secret-value' }, 'connectors[0]', ['a'], 'an Acme setting'));
    expect(unknown.key).toBe('connectors[0].token');
    expect(unknown.message).toBe('connectors[0].token is not an Acme setting (allowed: a).');
    const bad = failure(() => optionalConfigInteger({ n: 'secret-value' }, 'n', 'connectors[0].n', 1, 9));
    expect(bad.message).toBe('connectors[0].n must be an integer from 1 to 9.');
    expect(failure(() => optionalConfigInteger({ n: 10 }, 'n', 'connectors[0].n', 1, 9)).key).toBe('connectors[0].n');
    expect(failure(() => optionalConfigInteger({ n: 1.5 }, 'n', 'connectors[0].n', 1, 9)).key).toBe('connectors[0].n');
  });
});
