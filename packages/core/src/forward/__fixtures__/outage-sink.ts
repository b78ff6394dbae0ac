import type { Sink } from '../../sink/sink.ts';

/**
 * `sink`, but every call except `close` fails with `SINK_UNAVAILABLE` while `down.value` is
 * true (a forward target that is down). With `stream`, only the calls about that stream fail:
 * those whose first argument is its name, or a batch of it.
 */
export function outageSink(sink: Sink, down: { value: boolean }, stream?: string): Sink {
  return new Proxy(sink, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function' || property === 'close') return value;
      return (...args: unknown[]) => {
        const about = stream === undefined || args[0] === stream || (args[0] as { stream?: unknown } | undefined)?.stream === stream;
        return down.value && about ? Promise.reject(Object.assign(new Error('down'), { code: 'SINK_UNAVAILABLE' })) : (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
