import { createRequire } from 'node:module';

const packageJson = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

/** This CLI's package name and version, stamped on the records it makes. */
export const CLI_PACKAGE = { name: packageJson.name, version: packageJson.version } as const;
