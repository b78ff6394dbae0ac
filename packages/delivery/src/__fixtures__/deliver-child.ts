/**
 * One `deliverPending` pass in its own process, for the SIGKILL trials. Settings come as JSON in
 * OFFCHANNEL_TEST_DELIVERY; prints `delivered <stream> <seq>` after each durable receipt, and
 * `done <sent>` at the end. Run with `node --conditions=@offchannel/source`.
 */
import { parseVerifierKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { Deliverer } from '../deliverer.ts';

const settings = JSON.parse(process.env.OFFCHANNEL_TEST_DELIVERY ?? '{}') as { archive: string; state: string; smtp: string; ca: string; verifier: string; now: string };
const archive = await openFsSink({ dir: settings.archive, readOnly: true });
const receipts = await openFsSink({ dir: settings.archive });
const deliverer = await Deliverer.open({
  archive,
  receipts,
  stateDir: settings.state,
  target: { name: 'journal', smtp: settings.smtp, to: 'journal@archive.test', from: 'offchannel@firm.example', ca: settings.ca },
  verifiers: [parseVerifierKey(settings.verifier)],
  clock: () => new Date(settings.now),
  retry: { attempts: 5, initialMs: 50 },
  onDelivered: ({ stream, seqs }) => process.stdout.write(`delivered ${stream} ${seqs.join(',')}\n`),
});
const report = await deliverer.deliverPending();
await deliverer.close();
await archive.close();
await receipts.close();
process.stdout.write(`done ${report.sent}\n`);
