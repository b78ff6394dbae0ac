import { defineConfig } from 'vitest/config';
export default defineConfig({ resolve: { conditions: ['@offchannel/source'] }, ssr: { resolve: { conditions: ['@offchannel/source'] } }, test: { projects: ['packages/*/vitest.config.ts', 'packages/*/*/vitest.config.ts'] } });
