import { defineConfig } from 'vitest/config';

// One Vitest project per package, named after the package: `vitest run --project @offchannel/core`.
export default defineConfig({
  test: {
    projects: ['packages/*/vitest.config.ts', 'packages/*/*/vitest.config.ts', 'examples/*/vitest.config.ts'],
  },
});
