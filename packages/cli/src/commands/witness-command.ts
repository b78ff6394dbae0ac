import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type CliIo, EXIT_FAILED, EXIT_OK } from '../cli-io.ts';
import { assertKeyFileName, loadVerifierKeys, loadWitnessKey } from '../keys.ts';
import { UsageError } from '../usage-error.ts';
import { isLoopback, startWitnessServer } from '../witness/witness-server.ts';
import { WitnessService } from '../witness/witness-service.ts';
import { SnapshotKey } from '../witness/witness-snapshot.ts';
import { WitnessState } from '../witness/witness-state.ts';

export const WITNESS_USAGE = `Usage: offchannel witness serve --key <witness.key> --state <dir> --listen <host:port>
                                --accept <log verifier key> [--accept …] [options]

Runs an independent witness (c2sp.org/tlog-witness): it keeps the latest checkpoint it
cosigned for each log and cosigns a new one only if a consistency proof shows it extends that
one. Run it where the capture host's operators cannot change it (a D3P, the compliance team).
It serves POST /add-checkpoint and nothing else.

Logs accepted: for each --accept key, the log whose origin is the key's name, and the
per-stream logs <key name>/<stream> that offchannel capture writes.

Options:
  --key <file>          the witness key (offchannel keygen --witness; mode 0600)
  --state <dir>         latest size and root per log (created 0700)
  --journal <file>      append-only journal of every cosigned size (default <state>/journal).
                        Never restore it from a backup: it is what stops a witness restored
                        from an old copy of its state from cosigning a rolled-back log
  --read-whole-journal  read and check every journal line at this start, not only those after
                        journal.snapshot (its sizes still count); after restoring or moving the
                        journal, or from time to time
  --listen <host:port>  address (loopback HTTP; any other address needs --tls-cert/--tls-key)
  --accept <key|file>   a log verifier key, or a file of them (repeatable, required)
  --tls-cert <file>     PEM certificate chain: serve HTTPS
  --tls-key <file>      PEM private key for --tls-cert
  --rate <n>            requests per second per client address (default 20, bursts of 100)
  -h, --help            show this help`;

export async function witnessCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '-h' || sub === '--help' || sub === undefined) {
    io.stdout.write(`${WITNESS_USAGE}\n`);
    return sub === undefined ? 2 : EXIT_OK;
  }
  if (sub !== 'serve') throw new UsageError(`unknown witness subcommand "${sub}"; the only one is "serve"`);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      key: { type: 'string' },
      state: { type: 'string' },
      journal: { type: 'string' },
      'read-whole-journal': { type: 'boolean', default: false },
      listen: { type: 'string' },
      accept: { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      rate: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout.write(`${WITNESS_USAGE}\n`);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError('witness serve takes no positional arguments');
  if (values.key === undefined) throw new UsageError('witness serve needs --key <witness.key> (offchannel keygen --witness)');
  if (values.state === undefined) throw new UsageError('witness serve needs --state <dir>');
  if (values.listen === undefined) throw new UsageError('witness serve needs --listen <host:port>, e.g. 127.0.0.1:7380');
  if (!values.accept?.length) throw new UsageError('witness serve needs at least one --accept <log verifier key>');
  const listen = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(values.listen);
  if (!listen || Number(listen[2]) > 65535) throw new UsageError('--listen is <host>:<port>, e.g. 127.0.0.1:7380');
  const host = (listen[1] as string).replace(/^\[|\]$/g, '');
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('give both --tls-cert and --tls-key, or neither');
  if (values['tls-cert'] === undefined && !isLoopback(host)) throw new UsageError(`--listen ${values.listen} is not a loopback address: serve HTTPS there (--tls-cert, --tls-key) or listen on 127.0.0.1`);
  let rate;
  if (values.rate !== undefined) {
    const perSecond = Number(values.rate);
    if (!Number.isInteger(perSecond) || perSecond < 1 || perSecond > 100_000) throw new UsageError('--rate is a whole number of requests per second, 1 to 100000');
    rate = { perSecond, burst: perSecond * 5 };
  }
  const key = await loadWitnessKey(values.key);
  const accept = await loadVerifierKeys(values.accept);
  let tls;
  if (values['tls-cert'] !== undefined && values['tls-key'] !== undefined) {
    assertKeyFileName('--tls-key', values['tls-key']);
    tls = { cert: await readFile(values['tls-cert'], 'utf8'), key: await readFile(values['tls-key'], 'utf8') };
  }
  // The snapshot key is derived from the witness key here and the key goes no further than the service.
  // A journal write that may have left part of a line stops the witness: a supervisor restarts
  // it, and the start cuts the torn line. Until then every request would fail anyway.
  let stop: ((error: Error) => void) | undefined;
  const broken = new Promise<Error>((resolve) => { stop = resolve; });
  const state = await WitnessState.open(values.state, {
    key: SnapshotKey.fromCosigner(key),
    journal: values.journal,
    readWholeJournal: values['read-whole-journal'],
    onBroken: (error) => stop?.(error),
    onSnapshotError: (error) => { io.stderr.write(`warning: the journal snapshot could not be written (${(error as Error).message}); the next start reads more of the journal\n`); },
  });
  const counts = new Map<number, number>();
  const service = new WitnessService({ key, accept, state });
  let server;
  try {
    server = await startWitnessServer({ service, host, port: Number(listen[2]), tls, rate, onAnswer: (status) => counts.set(status, (counts.get(status) ?? 0) + 1) });
  } catch (error) {
    state.close();
    throw error;
  }
  const { snapshot, reason, journalBytesRead } = state.startup;
  const read = snapshot === 'used' ? 'after its snapshot' : `whole (${reason ?? 'no snapshot yet'})`;
  io.stdout.write(`journal read ${read}: ${journalBytesRead} bytes\n`);
  const { raised = [] } = state.startup;
  if (raised.length > 0) {
    const shown = raised.slice(0, 20).join(', ') + (raised.length > 20 ? ` and ${raised.length - 20} more` : '');
    io.stderr.write(`warning: journal.snapshot (authenticated by this witness's key) holds larger sizes than the journal for ${raised.length} log(s), kept as their marks: ${shown}; was the journal restored from an older copy?\n`);
  }
  if (state.snapshotError !== undefined) io.stderr.write(`warning: the journal snapshot could not be written (${(state.snapshotError as Error).message}); the next start reads more of the journal\n`);
  io.stdout.write(`witness ${key.name} serving ${server.url}/add-checkpoint for ${accept.length} log key(s), ${state.logCount} log(s) known\n${key.verifierKey}\n`);
  const failed = await Promise.race([
    broken,
    new Promise<undefined>((resolve) => {
      if (io.signal.aborted) resolve(undefined);
      else io.signal.addEventListener('abort', () => { resolve(undefined); }, { once: true });
    }),
  ]);
  // After a journal failure, the requests in flight (failing fast) get their 500 before the stop.
  if (failed !== undefined) await new Promise((resolve) => setTimeout(resolve, 1000));
  await server.close();
  // Cosignatures still being made (their connections are gone) finish first: the journal is
  // closed, and the folder released, once none is in flight.
  state.close();
  await state.closed();
  if (failed !== undefined) {
    io.stderr.write(`error: ${failed.message}; the witness stopped (exit ${EXIT_FAILED}) so that a restart can cut the torn line\n`);
    return EXIT_FAILED;
  }
  const summary = [...counts.entries()].sort(([a], [b]) => a - b).map(([status, count]) => `${status}: ${count}`).join(', ');
  io.stdout.write(`witness stopped (answers ${summary || 'none'})\n`);
  return EXIT_OK;
}
