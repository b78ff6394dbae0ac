import { defineConfig } from 'tsup';
import { packageBuild } from '../../../tsup.base.ts';

// The fixture writer runs as its own process (a separate writer, as Messages is), so it is an entry of its own.
export default defineConfig(
  packageBuild({
    index: 'src/index.ts',
    'testing/index': 'src/testing/index.ts',
    'testing/fixture-writer-process': 'src/testing/fixture-writer-process.ts',
  }),
);
