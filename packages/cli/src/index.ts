/**
 * `offchannel` — the command line. The `offchannel` binary is the main entry; `run` runs it
 * in-process (for tests and for embedding the CLI in other tools).
 */
export { run, USAGE } from './run.ts';
export type { CliIo } from './cli-io.ts';
export { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from './cli-io.ts';
export { demoExchange, termSheetPdf, DEMO_ACCOUNT, DEMO_CHANNEL } from './demo/demo-exchange.ts';
